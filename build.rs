//! Link options for the `gatehouse` executable (nothing is generated).
//!
//! `--icf=all` (x86_64, where Rust links with lld): functions whose
//! machine code is identical are kept once (60 KB). Rust makes no promise
//! that two functions have different addresses, and gatehouse compares
//! none. The aarch64 build links with Debian's GNU ld, which has no such
//! option.
//!
//! Not used: packed relative relocations (`-z pack-relative-relocs`, 200
//! KB less): a binary with them needs glibc 2.36 to start (Ubuntu 22.04
//! and RHEL 9 have older), and a static one built against an older glibc
//! would start with its pointers unrelocated.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
    }
}
