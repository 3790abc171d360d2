//! deploy/systemd/deprovd.service: `systemd-analyze verify` accepts it without a single warning
//! (it exits 0 even on unknown keys, so the test reads what it prints), `systemd-analyze security`
//! rates its sandbox, and the sandboxing directives are there.

use std::process::Command;

use crate::{BIN, deploy, run, text, tool};

const INSTALL: &str = "apt-get install systemd";

/// `systemd-analyze verify` on `unit` written as `deprovd.service`, with ExecStart pointing at the
/// binary under test (verify requires the executable to exist).
fn verify(unit: &str) -> std::process::Output {
    let analyze = tool("systemd-analyze", INSTALL).expect("checked by the caller");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deprovd.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/deprovd", BIN)).unwrap();
    run(Command::new(analyze).arg("verify").arg(&path))
}

fn unit() -> String {
    std::fs::read_to_string(deploy("systemd/deprovd.service")).unwrap()
}

#[test]
fn systemd_analyze_verify_accepts_the_unit_without_a_warning() {
    if tool("systemd-analyze", INSTALL).is_none() {
        return;
    }
    let out = verify(&unit());
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "{}",
        text(&out)
    );
    // What a mistake looks like, so the silence above means something.
    let typo = verify(&unit().replace(
        "ProtectSystem=strict",
        "ProtectSystem=strictest\nProtectHomes=yes",
    ));
    let said = String::from_utf8_lossy(&typo.stderr);
    assert!(
        said.contains("ProtectHomes") && said.contains("strictest"),
        "{}",
        text(&typo)
    );
}

#[test]
fn the_unit_is_sandboxed() {
    let unit = unit();
    for directive in [
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "StateDirectory=deprovd",
        "DynamicUser=yes",
    ] {
        assert!(unit.contains(directive), "{directive}");
    }
    let Some(analyze) = tool("systemd-analyze", INSTALL) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deprovd.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/deprovd", BIN)).unwrap();
    let out = run(Command::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path));
    let said = String::from_utf8_lossy(&out.stdout);
    let level: f64 = said
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for deprovd.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an exposure level: {}", text(&out)));
    assert!(
        level <= 2.0,
        "exposure {level} (0 = fully sandboxed, 10 = none): {said}"
    );
}
