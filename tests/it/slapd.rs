//! A real, throwaway OpenLDAP server for tests: one `slapd` per [`Slapd::start`], on a free loopback port,
//! with its own config and mdb database in a temp dir, killed when the handle drops.
//!
//! The directory is built like a production OpenLDAP with lockout: the `ppolicy` overlay with
//! `ppolicy_use_lockout` and a default policy, so an account whose `pwdAccountLockedTime` is set can no
//! longer bind. It is seeded (offline, with `slapadd`, before the server starts) with:
//!
//! - `uid=alice` and `uid=bob` under `ou=people` (inetOrgPerson + posixAccount, passwords [`ALICE_PW`], [`BOB_PW`]),
//!   both also reachable as `team@example.org` (an ambiguous subject);
//! - groupOfNames `cn=engineering` and `cn=vpn` (both: alice and bob), posixGroup `cn=devs` (memberUid alice, bob);
//! - AD-shaped `cn=carol` (`userAccountControl` 66048) and `cn=dave` (514, already disabled), and the
//!   groupOfNames `cn=ad-staff` (carol, bob), for the `active_directory` flavor's LDAP logic;
//! - `cn=deprovd,ou=services`: the connector's bind DN, holding exactly the least-privilege ACLs that
//!   `docs/connectors/ldap.md` documents (tests therefore prove those ACLs are sufficient);
//! - `cn=reader,ou=services`: may read but not write, to prove `insufficientAccessRights` handling.
//!
//! Needs the Debian packages `slapd` and `ldap-utils` (the system instance is never touched).

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::scim_server::free_port;

pub(crate) const SUFFIX: &str = "dc=example,dc=org";
pub(crate) const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
pub(crate) const ROOT_PW: &str = "root-secret";
pub(crate) const SERVICE_DN: &str = "cn=deprovd,ou=services,dc=example,dc=org";
pub(crate) const SERVICE_PW: &str = "deprovd-secret";
pub(crate) const READER_DN: &str = "cn=reader,ou=services,dc=example,dc=org";
pub(crate) const READER_PW: &str = "reader-secret";
pub(crate) const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";
pub(crate) const ALICE_PW: &str = "alice-pw";
pub(crate) const BOB_DN: &str = "uid=bob,ou=people,dc=example,dc=org";
pub(crate) const BOB_PW: &str = "bob-pw";
/// AD-shaped users: `userAccountControl` 66048 (NORMAL_ACCOUNT | DONT_EXPIRE_PASSWORD) and 514 (disabled).
pub(crate) const CAROL_DN: &str = "cn=carol,ou=people,dc=example,dc=org";
pub(crate) const DAVE_DN: &str = "cn=dave,ou=people,dc=example,dc=org";

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
const MODULE_PATH: &str = "/usr/lib/ldap";
const SCHEMA_DIR: &str = "/etc/ldap/schema";

/// A running slapd. Dropping it kills the process and removes its files.
pub(crate) struct Slapd {
    child: Child,
    dir: tempfile::TempDir,
    /// `ldap://127.0.0.1:PORT` (StartTLS available when started with TLS).
    pub url: String,
    pub addr: SocketAddr,
    /// With [`Slapd::start_tls`]: `ldaps://127.0.0.1:PORT` and the PEM of the CA that signed its certificate.
    pub ldaps_url: Option<String>,
    pub ca_file: Option<PathBuf>,
}

impl Slapd {
    /// Build a fresh directory and start slapd on a free loopback port; returns once it accepts connections.
    pub(crate) fn start() -> Slapd {
        Self::launch(false)
    }

    /// Like [`Slapd::start`], also serving LDAPS and StartTLS with a certificate for `127.0.0.1` signed by a
    /// throwaway CA (made with the `openssl` CLI).
    pub(crate) fn start_tls() -> Slapd {
        Self::launch(true)
    }

    fn launch(tls: bool) -> Slapd {
        assert!(
            Path::new(SLAPD).exists() && Path::new(SLAPADD).exists(),
            "slapd is not installed: run `DEBIAN_FRONTEND=noninteractive apt-get install -y slapd ldap-utils`"
        );
        let dir = tempfile::tempdir().expect("temp dir for slapd");
        let db = dir.path().join("db");
        std::fs::create_dir(&db).expect("create slapd db dir");
        let conf = dir.path().join("slapd.conf");
        let mut conf_text = slapd_conf(dir.path(), &db);
        if tls {
            make_certificates(dir.path());
            let d = dir.path().display();
            // TLS settings are global: they go before the first `database` line.
            conf_text = conf_text.replacen(
                "database mdb",
                &format!(
                    "TLSCACertificateFile {d}/ca.crt\nTLSCertificateFile {d}/server.crt\n\
                     TLSCertificateKeyFile {d}/server.key\ndatabase mdb"
                ),
                1,
            );
        }
        std::fs::write(&conf, conf_text).expect("write slapd.conf");
        std::fs::write(dir.path().join("ad-shaped.schema"), AD_SHAPED_SCHEMA)
            .expect("write ad-shaped.schema");
        let seed = dir.path().join("seed.ldif");
        std::fs::write(&seed, SEED).expect("write seed.ldif");
        let out = Command::new(SLAPADD)
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&seed)
            .output()
            .expect("run slapadd");
        assert!(
            out.status.success(),
            "slapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        // The free port is found by binding :0 and releasing it; another process could take it in
        // between, so a start that dies early is retried on a new port.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let url = format!("ldap://127.0.0.1:{port}");
            let tls_port = tls.then(free_port);
            let mut listen = format!("{url}/");
            if let Some(p) = tls_port {
                listen.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
            }
            let log_path = dir.path().join("slapd.log");
            let log = std::fs::File::create(&log_path).expect("slapd log file");
            let mut child = Command::new(SLAPD)
                .arg("-f")
                .arg(&conf)
                .arg("-h")
                .arg(&listen)
                // `-d 0`: stay in the foreground (so we own the process) without debug output.
                .args(["-d", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn slapd");
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let up = |a: &SocketAddr| {
                    TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok()
                };
                if up(&addr) && tls_port.is_none_or(|p| up(&([127, 0, 0, 1], p).into())) {
                    let ca_file = tls.then(|| dir.path().join("ca.crt"));
                    return Slapd {
                        child,
                        dir,
                        url,
                        addr,
                        ldaps_url: tls_port.map(|p| format!("ldaps://127.0.0.1:{p}")),
                        ca_file,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "slapd did not accept connections on {addr} within 15s; log:\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("slapd failed to start five times; last log:\n{last_log}");
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether `dn` can bind with `password` (a simple bind on a fresh connection).
    pub(crate) async fn can_bind(&self, dn: &str, password: &str) -> bool {
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(&self.url)
            .await
            .expect("connect to test slapd");
        ldap3::drive!(conn);
        let ok = ldap
            .simple_bind(dn, password)
            .await
            .expect("bind request")
            .rc
            == 0;
        let _ = ldap.unbind().await;
        ok
    }

    /// The values of `attr` on the entry `dn`, read as the root DN (sorted, for comparison).
    pub(crate) async fn values(&self, dn: &str, attr: &str) -> Vec<String> {
        self.values_as(ROOT_DN, ROOT_PW, dn, attr).await
    }

    /// The values of `attr` on `dn` as `bind_dn` may see them (ACLs applied).
    pub(crate) async fn values_as(
        &self,
        bind_dn: &str,
        pw: &str,
        dn: &str,
        attr: &str,
    ) -> Vec<String> {
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(&self.url)
            .await
            .expect("connect to test slapd");
        ldap3::drive!(conn);
        ldap.simple_bind(bind_dn, pw)
            .await
            .expect("bind request")
            .success()
            .expect("bind succeeds");
        let ldap3::SearchResult(entries, res) = ldap
            .search(dn, ldap3::Scope::Base, "(objectClass=*)", vec![attr])
            .await
            .expect("search request");
        // 32 noSuchObject: the ACLs hide the entry itself from this reader.
        assert!(
            matches!(res.rc, 0 | 32),
            "search {dn} as {bind_dn}: {res:?}"
        );
        let _ = ldap.unbind().await;
        let mut out: Vec<String> = entries
            .into_iter()
            .flat_map(|e| {
                ldap3::SearchEntry::construct(e)
                    .attrs
                    .into_iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
                    .flat_map(|(_, v)| v)
            })
            .collect();
        out.sort();
        out
    }

    /// A connection bound as the root DN, for test setup and inspection.
    pub(crate) async fn root(&self) -> ldap3::Ldap {
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(&self.url)
            .await
            .expect("connect to test slapd");
        ldap3::drive!(conn);
        ldap.simple_bind(ROOT_DN, ROOT_PW)
            .await
            .expect("root bind request")
            .success()
            .expect("root bind succeeds");
        ldap
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate for IP 127.0.0.1 (rustls refuses a self-signed leaf, so two steps).
pub(crate) fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (install the `openssl` package)");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=deprovd test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.crt",
        "-extfile",
        "server.ext",
    ]);
}

fn slapd_conf(dir: &Path, db: &Path) -> String {
    format!(
        r#"include {SCHEMA_DIR}/core.schema
include {SCHEMA_DIR}/cosine.schema
include {SCHEMA_DIR}/inetorgperson.schema
include {SCHEMA_DIR}/nis.schema
include {ad_schema}
modulepath {MODULE_PATH}
moduleload back_mdb
# OpenLDAP 2.5 ships the ppolicy schema inside the module.
moduleload ppolicy
pidfile {pid}
database mdb
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PW}
directory {db}
maxsize 10485760
overlay ppolicy
ppolicy_default "cn=default,ou=policies,{SUFFIX}"
ppolicy_use_lockout
{ACLS}"#,
        pid = dir.join("slapd.pid").display(),
        ad_schema = dir.join("ad-shaped.schema").display(),
        db = db.display(),
    )
}

/// The service account's grants, verbatim from docs/connectors/ldap.md (the four `by * break` rules), plus
/// the AD-shaped attributes for the `active_directory` flavor; everything else is denied to it. Other users
/// may read (so `cn=reader` can search but not write).
const ACLS: &str = r#"access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to dn.subtree="ou=people,dc=example,dc=org" attrs=pwdAccountLockedTime
  by dn.exact="cn=deprovd,ou=services,dc=example,dc=org" write
  by * break
access to dn.subtree="ou=people,dc=example,dc=org" attrs=entry,objectClass,uid,mail
  by dn.exact="cn=deprovd,ou=services,dc=example,dc=org" read
  by * break
access to dn.subtree="ou=groups,dc=example,dc=org" attrs=member,uniqueMember,memberUid
  by dn.exact="cn=deprovd,ou=services,dc=example,dc=org" write
  by * break
access to dn.subtree="ou=groups,dc=example,dc=org" attrs=entry,objectClass
  by dn.exact="cn=deprovd,ou=services,dc=example,dc=org" read
  by * break
access to dn.subtree="ou=people,dc=example,dc=org" attrs=userAccountControl
  by dn.exact="cn=deprovd,ou=services,dc=example,dc=org" write
  by * break
access to dn.subtree="ou=people,dc=example,dc=org" attrs=sAMAccountName,userPrincipalName
  by dn.exact="cn=deprovd,ou=services,dc=example,dc=org" read
  by * break
access to *
  by dn.exact="cn=deprovd,ou=services,dc=example,dc=org" none
  by users read
  by * none
"#;

/// The few Active Directory attributes the `active_directory` flavor uses, with AD's semantics where
/// LDAP can express them (integer `userAccountControl` with equality, so value-level modifies work as on
/// AD). OIDs are under OpenLDAP's experimental arc. Debian's `msuser.schema` cannot stand in: its
/// `userAccountControl` has no equality rule.
const AD_SHAPED_SCHEMA: &str = r#"attributetype ( 1.3.6.1.4.1.4203.666.11.901.1 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.4203.666.11.901.2 NAME 'sAMAccountName'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.4203.666.11.901.3 NAME 'userPrincipalName'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.4203.666.11.901.10 NAME 'adShapedUser' SUP top AUXILIARY
  MAY ( userAccountControl $ sAMAccountName $ userPrincipalName ) )
"#;

const SEED: &str = r#"dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: ou=services,dc=example,dc=org
objectClass: organizationalUnit
ou: services

dn: ou=policies,dc=example,dc=org
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,dc=example,dc=org
objectClass: organizationalRole
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdLockout: TRUE
pwdMaxFailure: 5

dn: cn=deprovd,ou=services,dc=example,dc=org
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: deprovd
userPassword: deprovd-secret

dn: cn=reader,ou=services,dc=example,dc=org
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: reader-secret

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: posixAccount
uid: alice
cn: Alice Example
sn: Example
mail: alice@example.org
mail: team@example.org
uidNumber: 10001
gidNumber: 10001
homeDirectory: /home/alice
userPassword: alice-pw

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: posixAccount
uid: bob
cn: Bob Example
sn: Example
mail: bob@example.org
mail: team@example.org
uidNumber: 10002
gidNumber: 10002
homeDirectory: /home/bob
userPassword: bob-pw

dn: cn=engineering,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: engineering
member: uid=alice,ou=people,dc=example,dc=org
member: uid=bob,ou=people,dc=example,dc=org

dn: cn=vpn,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: vpn
member: uid=alice,ou=people,dc=example,dc=org
member: uid=bob,ou=people,dc=example,dc=org

dn: cn=devs,ou=groups,dc=example,dc=org
objectClass: posixGroup
cn: devs
gidNumber: 20001
memberUid: alice
memberUid: bob

dn: cn=carol,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: adShapedUser
cn: carol
sn: Example
sAMAccountName: carol
userPrincipalName: carol@corp.example.org
userAccountControl: 66048

dn: cn=dave,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: adShapedUser
cn: dave
sn: Example
sAMAccountName: dave
userPrincipalName: dave@corp.example.org
userAccountControl: 514

dn: cn=ad-staff,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: ad-staff
member: cn=carol,ou=people,dc=example,dc=org
member: uid=bob,ou=people,dc=example,dc=org
"#;
