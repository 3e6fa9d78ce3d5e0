//! Link options for the `gatehouse` executable (nothing is generated).
//!
//! - `-z pack-relative-relocs`: the executable is position-independent,
//!   and each pointer in its read-only data needs a relocation at load;
//!   packed (RELR) they take a few kilobytes instead of 24 bytes each
//!   (200 KB). glibc 2.36 and newer reads them (the static build too); GNU
//!   ld 2.38 and newer and lld write them.
//! - `--icf=all` (x86_64, where Rust links with lld): functions whose
//!   machine code is identical are kept once (60 KB). Rust makes no
//!   promise that two functions have different addresses, and gatehouse
//!   compares none. The aarch64 build links with Debian's GNU ld, which
//!   has no such option.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    if std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
    }
}
