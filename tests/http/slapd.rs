//! A throw-away OpenLDAP directory (Debian's `slapd`) on loopback for the
//! directory tests: its own temporary directory and config (`slapd.conf`
//! with `-f`), a plain/StartTLS listener and an `ldaps` listener with a
//! certificate made here by rcgen (for `localhost` only, so dialling
//! `127.0.0.1` is "a certificate for another name"), and two trees:
//!
//! - `dc=example,dc=org`, OpenLDAP-shaped: `inetOrgPerson` users with
//!   `uid` and `entryUUID`, `groupOfNames`/`groupOfUniqueNames` groups
//!   (found by a group search), a user locked by the password policy
//!   (`pwdAccountLockedTime`), a user under an OU whose name holds filter
//!   and DN special characters, and a service account;
//! - `dc=corp,dc=example`, Active Directory-shaped (a small schema under
//!   Microsoft's OIDs): `sAMAccountName`, a binary `objectGUID`,
//!   `userAccountControl` with a disabled user, and `memberOf` kept by the
//!   memberof overlay.
//!
//! Without slapd the tests that need it say they were skipped; under CI
//! (`CI` set) that is a failure, as for PostgreSQL and Redis.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ldap3::LdapConn;

const SLAPD: &str = "/usr/sbin/slapd";

/// The service accounts and passwords of the two trees.
pub const SERVICE_DN: &str = "cn=svc,ou=services,dc=example,dc=org";
pub const SERVICE_PASSWORD: &str = "svc-password";
pub const AD_SERVICE_DN: &str = "cn=svc,dc=corp,dc=example";

/// The OU with special characters in its name (escaped per RFC 4514 in
/// the DN): filter and DN escaping both matter for its users.
pub const ODD_OU: &str = "R(D) * Ops, Europe";

/// The objectGUID given to erin in the AD-shaped tree.
pub const ERIN_GUID: [u8; 16] = [
    0x10, 0x9a, 0x00, 0xff, 0x28, 0x29, 0x2a, 0x5c, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
];

/// A running slapd; stopped (killed) when dropped.
pub struct Slapd {
    child: Option<Child>,
    /// The config, certificates and databases; removed when dropped.
    _dir: tempfile::TempDir,
    /// The plain/StartTLS listener's port.
    pub port: u16,
    /// The ldaps listener's port.
    pub tls_port: u16,
    /// The CA certificate (PEM) that signed slapd's certificate.
    pub ca_file: PathBuf,
}

/// Whether slapd is there to test with; `false` prints why the tests that
/// need it are skipped (and fails under CI).
pub fn available(test: &str) -> bool {
    if Path::new(SLAPD).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but {SLAPD} is missing (apt-get install slapd)"
    );
    eprintln!(
        "{test}: skipped: install slapd (Debian's OpenLDAP server) to run the directory tests"
    );
    false
}

impl Slapd {
    /// Starts slapd with both trees filled, or `None` when slapd is not
    /// installed (see [`available`]).
    pub fn start(test: &str) -> Option<Self> {
        if !available(test) {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = write_certificates(dir.path());
        std::fs::write(dir.path().join("ad.schema"), AD_SCHEMA).expect("schema");
        for db in ["example", "corp"] {
            std::fs::create_dir(dir.path().join(db)).expect("db dir");
        }
        std::fs::write(dir.path().join("slapd.conf"), slapd_conf(dir.path())).expect("conf");
        // slapd takes no port 0: pick free ports, and try again should
        // another process take one first.
        for _ in 0..10 {
            let (port, tls_port) = (free_port(), free_port());
            if port == tls_port {
                continue;
            }
            let mut child = Command::new(SLAPD)
                .arg("-f")
                .arg(dir.path().join("slapd.conf"))
                .arg("-h")
                .arg(format!(
                    "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
                ))
                // Debug level 0: stay in the foreground, log nothing.
                .args(["-d", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                // A file, not a pipe nobody reads while it runs.
                .stderr(std::fs::File::create(dir.path().join("slapd.log")).expect("log"))
                .spawn()
                .expect("start slapd");
            if wait_for_listener(&mut child, port) && wait_for_listener(&mut child, tls_port) {
                let mut slapd = Self {
                    child: Some(child),
                    _dir: dir,
                    port,
                    tls_port,
                    ca_file,
                };
                slapd.fill();
                return Some(slapd);
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "slapd did not start on {port}/{tls_port}, trying others: {}",
                std::fs::read_to_string(dir.path().join("slapd.log")).unwrap_or_default()
            );
        }
        panic!("slapd did not start");
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldap://localhost:PORT`, the name the certificate has.
    pub fn starttls_url(&self) -> String {
        format!("ldap://localhost:{}", self.port)
    }

    /// `ldaps://localhost:TLS_PORT`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://localhost:{}", self.tls_port)
    }

    /// The process id, to pause it.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Stops slapd and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A connection as the root DN of `suffix`, over plain LDAP on
    /// loopback (the harness's own writes).
    pub fn admin(&self, suffix: &str) -> LdapConn {
        let mut conn = LdapConn::new(&self.ldap_url()).expect("connect as admin");
        conn.simple_bind(&format!("cn=admin,{suffix}"), "secret")
            .expect("bind")
            .success()
            .expect("admin bind");
        conn
    }

    /// Adds the entry `dn` with `attrs` (values as bytes).
    pub fn add(&self, conn: &mut LdapConn, dn: &str, attrs: &[(&str, &[&[u8]])]) {
        let attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = attrs
            .iter()
            .map(|(name, values)| {
                (
                    name.as_bytes().to_vec(),
                    values.iter().map(|v| v.to_vec()).collect(),
                )
            })
            .collect();
        conn.add(dn, attrs)
            .expect("add")
            .success()
            .unwrap_or_else(|e| panic!("add {dn}: {e}"));
    }

    /// Deletes the entry `dn` (in `suffix`).
    pub fn delete(&self, suffix: &str, dn: &str) {
        let mut conn = self.admin(suffix);
        conn.delete(dn)
            .expect("delete")
            .success()
            .unwrap_or_else(|e| panic!("delete {dn}: {e}"));
    }

    fn fill(&mut self) {
        let esc = gatehouse::users::directory::escape::dn_value;
        let mut c = self.admin("dc=example,dc=org");
        let ex = |rdn: &str| format!("{rdn},dc=example,dc=org");
        self.add(
            &mut c,
            "dc=example,dc=org",
            &[
                ("objectClass", &[b"dcObject", b"organization"]),
                ("dc", &[b"example"]),
                ("o", &[b"Example"]),
            ],
        );
        for ou in ["people", "groups", "services", "policies"] {
            self.add(
                &mut c,
                &ex(&format!("ou={ou}")),
                &[
                    ("objectClass", &[b"organizationalUnit"]),
                    ("ou", &[ou.as_bytes()]),
                ],
            );
        }
        let odd_ou = format!("ou={},dc=example,dc=org", esc(ODD_OU));
        self.add(
            &mut c,
            &odd_ou,
            &[
                ("objectClass", &[b"organizationalUnit"]),
                ("ou", &[ODD_OU.as_bytes()]),
            ],
        );
        self.add(
            &mut c,
            &ex("cn=default,ou=policies"),
            &[
                ("objectClass", &[b"organizationalRole", b"pwdPolicy"]),
                ("cn", &[b"default"]),
                ("pwdAttribute", &[b"userPassword"]),
                ("pwdLockout", &[b"TRUE"]),
            ],
        );
        self.add(
            &mut c,
            SERVICE_DN,
            &[
                (
                    "objectClass",
                    &[b"organizationalRole", b"simpleSecurityObject"],
                ),
                ("cn", &[b"svc"]),
                ("userPassword", &[SERVICE_PASSWORD.as_bytes()]),
            ],
        );
        let person = |uid: &str, cn: &str| {
            (
                format!("uid={uid},ou=people,dc=example,dc=org"),
                uid.to_owned(),
                cn.to_owned(),
            )
        };
        for (dn, uid, cn) in [
            person("alice", "Alice Liddell"),
            person("bob", "Bob Builder"),
            person("carol", "Carol Locked"),
            // Two entries whose uid is "twin": the filter singles out none.
            person("twin", "Twin One"),
            (
                format!("uid=twin,{odd_ou}"),
                "twin".to_owned(),
                "Twin Two".to_owned(),
            ),
            (
                format!("uid=dave,{odd_ou}"),
                "dave".to_owned(),
                "Dave Odd".to_owned(),
            ),
        ] {
            let mail = format!("{uid}@example.org");
            let password = format!("{uid}-password");
            self.add(
                &mut c,
                &dn,
                &[
                    ("objectClass", &[b"inetOrgPerson"]),
                    ("uid", &[uid.as_bytes()]),
                    ("cn", &[cn.as_bytes()]),
                    ("sn", &[b"Test"]),
                    ("mail", &[mail.as_bytes()]),
                    ("userPassword", &[password.as_bytes()]),
                ],
            );
        }
        // Carol is locked by the password policy (for good: the special
        // time means "locked until an administrator unlocks").
        let carol = ex("uid=carol,ou=people");
        c.modify(
            &carol,
            vec![ldap3::Mod::Add(
                "pwdAccountLockedTime",
                HashSet::from(["000001010000Z"]),
            )],
        )
        .expect("modify")
        .success()
        .expect("lock carol");
        let alice = ex("uid=alice,ou=people");
        let bob = ex("uid=bob,ou=people");
        let dave = format!("uid=dave,{odd_ou}");
        self.add(
            &mut c,
            &ex("cn=staff,ou=groups"),
            &[
                ("objectClass", &[b"groupOfNames"]),
                ("cn", &[b"staff"]),
                (
                    "member",
                    &[alice.as_bytes(), bob.as_bytes(), dave.as_bytes()],
                ),
            ],
        );
        self.add(
            &mut c,
            &ex("cn=admins,ou=groups"),
            &[
                ("objectClass", &[b"groupOfNames"]),
                ("cn", &[b"admins"]),
                ("member", &[alice.as_bytes()]),
            ],
        );
        self.add(
            &mut c,
            &ex(&format!("cn={},ou=groups", esc("R&D, Europe"))),
            &[
                ("objectClass", &[b"groupOfUniqueNames"]),
                ("cn", &[b"R&D, Europe"]),
                ("uniqueMember", &[bob.as_bytes(), dave.as_bytes()]),
            ],
        );
        // A group whose member is a DN like dave's with the special
        // characters unescaped-looking: an unescaped filter would match
        // it too (or not parse).
        self.add(
            &mut c,
            &ex("cn=decoy,ou=groups"),
            &[
                ("objectClass", &[b"groupOfNames"]),
                ("cn", &[b"decoy"]),
                ("member", &[carol.as_bytes()]),
            ],
        );
        drop(c);

        let mut c = self.admin("dc=corp,dc=example");
        let corp = |rdn: &str| format!("{rdn},dc=corp,dc=example");
        self.add(
            &mut c,
            "dc=corp,dc=example",
            &[
                ("objectClass", &[b"dcObject", b"organization"]),
                ("dc", &[b"corp"]),
                ("o", &[b"Corp"]),
            ],
        );
        for ou in ["Users", "Groups"] {
            self.add(
                &mut c,
                &corp(&format!("ou={ou}")),
                &[
                    ("objectClass", &[b"organizationalUnit"]),
                    ("ou", &[ou.as_bytes()]),
                ],
            );
        }
        self.add(
            &mut c,
            AD_SERVICE_DN,
            &[
                (
                    "objectClass",
                    &[b"organizationalRole", b"simpleSecurityObject"],
                ),
                ("cn", &[b"svc"]),
                ("userPassword", &[SERVICE_PASSWORD.as_bytes()]),
            ],
        );
        let frank_guid: [u8; 16] = [0xfe; 16];
        for (cn, sam, guid, uac) in [
            ("Erin Example", "erin", &ERIN_GUID, "512"),
            ("Frank Disabled", "frank", &frank_guid, "514"),
        ] {
            let mail = format!("{sam}@corp.example");
            let password = format!("{sam}-password");
            self.add(
                &mut c,
                &corp(&format!("cn={cn},ou=Users")),
                &[
                    ("objectClass", &[b"user"]),
                    ("cn", &[cn.as_bytes()]),
                    ("sn", &[b"Test"]),
                    ("sAMAccountName", &[sam.as_bytes()]),
                    ("displayName", &[cn.as_bytes()]),
                    ("mail", &[mail.as_bytes()]),
                    ("objectGUID", &[&guid[..]]),
                    ("userAccountControl", &[uac.as_bytes()]),
                    ("userPassword", &[password.as_bytes()]),
                ],
            );
        }
        let erin = corp("cn=Erin Example,ou=Users");
        let frank = corp("cn=Frank Disabled,ou=Users");
        self.add(
            &mut c,
            &corp("cn=Domain Admins,ou=Groups"),
            &[
                ("objectClass", &[b"group"]),
                ("cn", &[b"Domain Admins"]),
                ("member", &[erin.as_bytes()]),
            ],
        );
        self.add(
            &mut c,
            &corp(&format!("cn={},ou=Groups", esc("IT, Europe"))),
            &[
                ("objectClass", &[b"group"]),
                ("cn", &[b"IT, Europe"]),
                ("member", &[erin.as_bytes(), frank.as_bytes()]),
            ],
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits (generously: slapd under load or emulation) until `port`
/// accepts, or slapd exited.
fn wait_for_listener(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A CA and a certificate for `localhost` signed by it, with its key;
/// returns the CA's file.
fn write_certificates(dir: &Path) -> PathBuf {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gatehouse test directory CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("leaf");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("ca.pem");
    std::fs::write(dir.join("cert.pem"), format!("{}{}", leaf.pem(), ca.pem())).expect("cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key");
    ca_file
}

/// A small Active Directory-shaped schema under Microsoft's own OIDs
/// (memberOf comes from the memberof overlay).
const AD_SCHEMA: &str = "\
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' EQUALITY caseIgnoreMatch \
 SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.2 NAME 'objectGUID' EQUALITY octetStringMatch \
 SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' EQUALITY integerMatch \
 SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.2.840.113556.1.5.9 NAME 'user' SUP inetOrgPerson STRUCTURAL \
 MAY ( sAMAccountName $ objectGUID $ userAccountControl ) )
objectclass ( 1.2.840.113556.1.5.8 NAME 'group' SUP groupOfNames STRUCTURAL )
";

/// slapd's configuration: both trees, TLS, the overlays, and access
/// rules as a real directory has them (only the service account reads;
/// passwords are for binding only).
fn slapd_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include {d}/ad.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload ppolicy
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
TLSCACertificateFile {d}/ca.pem
TLSCertificateFile {d}/cert.pem
TLSCertificateKeyFile {d}/key.pem

database mdb
suffix \"dc=example,dc=org\"
rootdn \"cn=admin,dc=example,dc=org\"
rootpw secret
directory {d}/example
maxsize 16777216
overlay ppolicy
ppolicy_default \"cn=default,ou=policies,dc=example,dc=org\"
access to attrs=userPassword by anonymous auth by * none
access to * by dn.exact=\"{SERVICE_DN}\" read by self read by * none

database mdb
suffix \"dc=corp,dc=example\"
rootdn \"cn=admin,dc=corp,dc=example\"
rootpw secret
directory {d}/corp
maxsize 16777216
overlay memberof
memberof-group-oc group
memberof-member-ad member
memberof-memberof-ad memberOf
access to attrs=userPassword by anonymous auth by * none
access to * by dn.exact=\"{AD_SERVICE_DN}\" read by self read by * none
"
    )
}
