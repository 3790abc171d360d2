//! A real Samba Active Directory domain controller for tests: provisioned once per test run into a temp
//! dir and shared by every AD test of the run (provisioning takes seconds; one DC per test would not).
//!
//! The DC runs only its LDAP service (`server services = ldap`), bound to loopback (`interfaces = lo`,
//! `bind interfaces only = yes`), in the foreground (`samba -i -M single`). Samba cannot move LDAP off
//! 389/636, so those two ports must be free: nothing else in the suite uses them (slapd tests take random
//! ports). LDAPS uses a certificate for `127.0.0.1` signed by a throwaway CA (as the slapd TLS tests do),
//! so the connector verifies the server exactly as in production (`ca_file`), never "accept any cert".
//!
//! Stopping: in interactive mode Samba terminates when its stdin reaches EOF. The handle keeps the write
//! end of that pipe in a process-wide static; when the test process exits — normally, by panic or killed —
//! the kernel closes it and the DC stops. A later run removes temp dirs of runs whose process is gone.
//!
//! Provisioned content, offline before the DC starts:
//! - `OU=Staff`: where tests create their users and groups (random names per test);
//! - `CN=svc-deprovd,CN=Users`: the connector's bind account, *not* an admin: it holds exactly the delegation
//!   `docs/connectors/ldap.md` documents — on `OU=Staff`, inherited to user objects Read/Write Property
//!   `userAccountControl`, to group objects Read/Write Property `member` — so the tests prove that delegation
//!   is sufficient. Every authenticated user reads the rest by AD's defaults.
//!
//! Needs the Debian packages `samba`, `samba-ad-dc`, `samba-ad-provision` (scripts/test.sh installs them).

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub(crate) const REALM: &str = "DEPROVD.TEST";
pub(crate) const DOMAIN: &str = "DEPROVD";
pub(crate) const BASE_DN: &str = "DC=deprovd,DC=test";
pub(crate) const STAFF_DN: &str = "OU=Staff,DC=deprovd,DC=test";
pub(crate) const ADMIN_PW: &str = "Admin-Pass-4711!";
pub(crate) const SERVICE_DN: &str = "CN=svc-deprovd,CN=Users,DC=deprovd,DC=test";
pub(crate) const SERVICE_PW: &str = "Svc-Pass-4711!";
/// LDAPS (Samba's fixed port; simple binds are refused without TLS).
pub(crate) const URL: &str = "ldaps://127.0.0.1:636";

const SAMBA: &str = "/usr/sbin/samba";
const SAMBA_TOOL: &str = "/usr/bin/samba-tool";
const DIR_PREFIX: &str = "deprovd-samba-";

/// `userAccountControl` attribute and the `user` / `group` classes (schemaIDGUID, the same in every AD).
const UAC_GUID: &str = "bf967a68-0de6-11d0-a285-00aa003049e2";
const MEMBER_GUID: &str = "bf9679c0-0de6-11d0-a285-00aa003049e2";
const USER_CLASS_GUID: &str = "bf967aba-0de6-11d0-a285-00aa003049e2";
const GROUP_CLASS_GUID: &str = "bf967a9c-0de6-11d0-a285-00aa003049e2";

/// The running DC of this test run.
pub(crate) struct SambaDc {
    dir: PathBuf,
    /// PEM of the CA that signed the DC's LDAPS certificate.
    pub ca_file: PathBuf,
    /// Kept only so the pipe stays open while the process lives (see the module docs).
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
    /// How long provisioning and start took.
    pub startup: Duration,
}

static DC: OnceLock<Result<SambaDc, String>> = OnceLock::new();

/// The shared DC, started on first use. Blocking (seconds, once); panics with the reason if it cannot run.
pub(crate) fn shared() -> &'static SambaDc {
    match DC.get_or_init(start) {
        Ok(dc) => dc,
        Err(e) => panic!("{e}"),
    }
}

fn start() -> Result<SambaDc, String> {
    let began = Instant::now();
    if !Path::new(SAMBA).exists() || !Path::new(SAMBA_TOOL).exists() {
        return Err(
            "Samba is not installed: run `DEBIAN_FRONTEND=noninteractive apt-get install -y \
             samba samba-ad-dc samba-ad-provision` (scripts/test.sh does)"
                .into(),
        );
    }
    remove_stale_dirs();
    for port in [389u16, 636] {
        wait_port_free(port)?;
    }
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let d = dir.display().to_string();

    // `--targetdir` keeps every file (smb.conf, databases, krb5.conf) inside `dir`; /etc is not touched.
    run(Command::new(SAMBA_TOOL).args([
        "domain",
        "provision",
        "--use-rfc2307",
        &format!("--realm={REALM}"),
        &format!("--domain={DOMAIN}"),
        &format!("--adminpass={ADMIN_PW}"),
        "--server-role=dc",
        "--dns-backend=NONE",
        "--host-name=dc1",
        &format!("--targetdir={d}"),
        "--option=interfaces=lo",
        "--option=bind interfaces only=yes",
    ]))?;
    crate::slapd::make_certificates(&dir);
    std::fs::write(dir.join("etc/smb.conf"), smb_conf(&dir))
        .map_err(|e| format!("write smb.conf: {e}"))?;
    for sub in ["run", "ncalrpc", "winbindd"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| format!("create {sub}: {e}"))?;
    }

    // Offline seeding straight into sam.ldb, before the DC serves.
    tool(&dir, &["ou", "create", STAFF_DN])?;
    tool(&dir, &["user", "create", "svc-deprovd", SERVICE_PW])?;
    let sid = object_sid(&dir, "svc-deprovd")?;
    tool(
        &dir,
        &[
            "dsacl",
            "set",
            &format!("--objectdn={STAFF_DN}"),
            &format!(
                "--sddl=(OA;CIIO;RPWP;{UAC_GUID};{USER_CLASS_GUID};{sid})\
                 (OA;CIIO;RPWP;{MEMBER_GUID};{GROUP_CLASS_GUID};{sid})"
            ),
        ],
    )?;

    let log = std::fs::File::create(dir.join("samba.stdout"))
        .map_err(|e| format!("samba log file: {e}"))?;
    let mut child = Command::new(SAMBA)
        .args(["-i", "-M", "single", "--debuglevel=1", "-s"])
        .arg(dir.join("etc/smb.conf"))
        .stdin(Stdio::piped())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("spawn samba: {e}"))?;
    let stdin = child.stdin.take().ok_or("samba stdin")?;
    let deadline = Instant::now() + Duration::from_secs(45);
    let ldaps: SocketAddr = ([127, 0, 0, 1], 636).into();
    loop {
        if TcpStream::connect_timeout(&ldaps, Duration::from_millis(200)).is_ok() {
            break;
        }
        let log = || std::fs::read_to_string(dir.join("samba.stdout")).unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "samba exited ({status}) before serving LDAPS:\n{}",
                log()
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!(
                "samba did not serve LDAPS on {ldaps} within 45 s:\n{}",
                log()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(SambaDc {
        ca_file: dir.join("ca.crt"),
        dir,
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(child),
        startup: began.elapsed(),
    })
}

fn smb_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"[global]
	netbios name = DC1
	realm = {REALM}
	workgroup = {DOMAIN}
	server role = active directory domain controller
	server services = ldap
	interfaces = lo
	bind interfaces only = yes
	idmap_ldb:use rfc2307 = yes
	private dir = {d}/private
	lock directory = {d}
	state directory = {d}/state
	cache directory = {d}/cache
	binddns dir = {d}/bind-dns
	pid directory = {d}/run
	ncalrpc dir = {d}/ncalrpc
	winbindd socket directory = {d}/winbindd
	log file = {d}/log.samba
	logging = file
	tls enabled = yes
	tls keyfile = {d}/server.key
	tls certfile = {d}/server.crt
	tls cafile = {d}/ca.crt
"#
    )
}

impl SambaDc {
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Run `samba-tool` against the DC's database (as an administrator on the DC itself would).
    pub(crate) fn tool(&self, args: &[&str]) -> String {
        tool(&self.dir, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A new enabled user in `OU=Staff` with a random name; returns (sAMAccountName, DN, password).
    pub(crate) fn create_user(&self) -> (String, String, String) {
        let name = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let password = format!("Pw-{}-9!", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        self.tool(&[
            "user",
            "create",
            &name,
            &password,
            &format!(
                "--userou={}",
                STAFF_DN.trim_end_matches(&format!(",{BASE_DN}"))
            ),
            &format!("--mail-address={name}@deprovd.test"),
        ]);
        let dn = format!("CN={name},{STAFF_DN}");
        (name, dn, password)
    }

    /// A new group in `OU=Staff` with a random name holding `members`; returns its DN.
    pub(crate) fn create_group(&self, members: &[&str]) -> String {
        let name = format!("g{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        self.tool(&[
            "group",
            "create",
            &name,
            &format!(
                "--groupou={}",
                STAFF_DN.trim_end_matches(&format!(",{BASE_DN}"))
            ),
        ]);
        if !members.is_empty() {
            self.tool(&["group", "addmembers", &name, &members.join(",")]);
        }
        format!("CN={name},{STAFF_DN}")
    }

    /// A simple bind over LDAPS as `dn`: `Ok(())`, or the server's result code and text.
    pub(crate) async fn bind(&self, dn: &str, password: &str) -> Result<(), (u32, String)> {
        let mut ldap = self.connect().await;
        let r = ldap.simple_bind(dn, password).await.expect("bind request");
        let _ = ldap.unbind().await;
        if r.rc == 0 {
            Ok(())
        } else {
            Err((r.rc, r.text))
        }
    }

    /// The values of `attr` on `dn`, read as the administrator (sorted, DNs lower-cased for comparison).
    pub(crate) async fn values(&self, dn: &str, attr: &str) -> Vec<String> {
        let mut ldap = self.connect().await;
        ldap.simple_bind(&format!("CN=Administrator,CN=Users,{BASE_DN}"), ADMIN_PW)
            .await
            .expect("admin bind request")
            .success()
            .expect("admin bind succeeds");
        let (entries, _) = ldap
            .search(dn, ldap3::Scope::Base, "(objectClass=*)", vec![attr])
            .await
            .expect("search request")
            .success()
            .expect("search succeeds");
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
            .map(|v| v.to_ascii_lowercase())
            .collect();
        out.sort();
        out
    }

    async fn connect(&self) -> ldap3::Ldap {
        let settings = ldap3::LdapConnSettings::new()
            .set_conn_timeout(Duration::from_secs(5))
            .set_config(client_tls(&self.ca_file));
        let (conn, ldap) = ldap3::LdapConnAsync::with_settings(settings, URL)
            .await
            .expect("connect to the Samba DC over LDAPS");
        ldap3::drive!(conn);
        ldap
    }
}

/// rustls trusting only the test CA.
fn client_tls(ca_file: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).expect("read test CA") {
        roots.add(cert.expect("CA PEM")).expect("add test CA");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn tool(dir: &Path, args: &[&str]) -> Result<String, String> {
    run(Command::new(SAMBA_TOOL)
        .args(args)
        .arg("-H")
        .arg(dir.join("private/sam.ldb"))
        .arg("-s")
        .arg(dir.join("etc/smb.conf")))
}

fn object_sid(dir: &Path, user: &str) -> Result<String, String> {
    let shown = tool(dir, &["user", "show", user, "--attributes=objectSid"])?;
    shown
        .lines()
        .find_map(|l| l.strip_prefix("objectSid: "))
        .map(|s| s.trim().to_string())
        .ok_or_else(|| format!("no objectSid for {user} in:\n{shown}"))
}

/// A previous run's DC exits with its test process; wait briefly for it, else name the squatter.
fn wait_port_free(port: u16) -> Result<(), String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        if Instant::now() > deadline {
            let who = Command::new("ss")
                .args(["-ltnp", &format!("sport = :{port}")])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            return Err(format!(
                "port {port} on 127.0.0.1 is taken, and Samba AD cannot serve LDAP anywhere else: stop \
                 the process holding it (another directory server?)\n{who}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Temp dirs of earlier runs whose test process is gone (their DC stopped with it).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(DIR_PREFIX)
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
