use std::path::Path;

use super::*;

fn check(files: &[(&str, &str)]) -> Vec<Finding> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    check_bundle(dir.path(), &PolicyConfig::default()).unwrap()
}

#[test]
fn the_shipped_policies_are_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let findings = check_bundle(&dir, &PolicyConfig::default()).unwrap();
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn unknown_actions_and_modes_are_errors_at_their_literal() {
    let f = check(&[(
        "p.rego",
        r#"package deprovd
import rego.v1

decisions contains {"action": "disable_acount", "subject": "a", "rule": "r", "mode": "enforce"} if true

decisions contains d if {
	d := decision("revoke_sessions", "b", "enforced")
}

decision(action, subject, mode) := {"action": action, "subject": subject, "mode": mode, "rule": "x"}
"#,
    )]);
    let text: Vec<String> = f.iter().map(ToString::to_string).collect();
    assert_eq!(f.len(), 2, "{text:#?}");
    assert_eq!(f[0].location, "p.rego:4:32", "{text:#?}");
    assert!(
        f[0].message.contains("unknown action `disable_acount`"),
        "{text:#?}"
    );
    assert_eq!(f[1].location, "p.rego:7:44", "{text:#?}");
    assert!(
        f[1].message
            .contains("unknown mode `enforced` passed to `decision`"),
        "{text:#?}"
    );
    assert!(f.iter().all(|x| x.severity == Severity::Error));
}

#[test]
fn two_modes_for_one_action_warn_unless_categories_exclude_each_other() {
    let f = check(&[(
        "p.rego",
        r#"package deprovd
import rego.v1

theft if input.alert.category == "credential_theft"

decisions contains d if {
	theft
	some s in input.alert.subjects
	d := {"action": "disable_account", "subject": s.email, "rule": "a", "mode": "enforce"}
}

decisions contains d if {
	input.alert.category == "malware"
	some s in input.alert.subjects
	d := {"action": "disable_account", "subject": s.email, "rule": "b", "mode": "approval"}
}

decisions contains d if {
	input.alert.severity == "critical"
	some s in input.alert.subjects
	d := {"action": "disable_account", "subject": s.email, "rule": "c", "mode": "dry_run"}
}
"#,
    )]);
    let text: Vec<String> = f.iter().map(ToString::to_string).collect();
    // c (any category) conflicts with a and with b; a and b exclude each other.
    assert_eq!(f.len(), 2, "{text:#?}");
    assert!(
        f.iter().all(|x| x.severity == Severity::Warning),
        "{text:#?}"
    );
    assert!(f.iter().all(|x| x.location == "p.rego:18:1"), "{text:#?}");
    assert!(text[0].contains("mode `dry_run`"), "{text:#?}");
}

#[test]
fn compile_errors_come_back_with_their_location() {
    let f = check(&[(
        "p.rego",
        "package deprovd\nimport rego.v1\n\ndecisions contains d if {\n\td := decison(1)\n}\n",
    )]);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].severity, Severity::Error);
    assert!(f[0].location.starts_with("p.rego:5:"), "{f:#?}");
    assert!(f[0].message.contains("decison"), "{f:#?}");
}
