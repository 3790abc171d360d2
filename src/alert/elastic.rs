//! `elastic`: Elastic Security alert documents (the `.alerts-security.alerts-*` index, as a rule
//! action or a connector posts them), in ECS.
//!
//! Elastic emits the same document in two shapes: flat dotted keys (`"kibana.alert.uuid": …`, what
//! `_source` of an alert index holds) and nested objects (`{"kibana": {"alert": {"uuid": …}}}`, what
//! most webhook templates and ECS events use). Every field is looked up in both, and in any mix
//! (`{"kibana.alert": {"rule": {…}}}`), by [`lookup`].
//!
//! Mapping (full tables in `docs/alert-model.md`):
//! - `id` ← `kibana.alert.uuid`; `time` ← `@timestamp` (RFC 3339). Both required.
//! - `severity` ← `kibana.alert.severity` (`low`/`medium`/`high`/`critical`); when missing, from
//!   `kibana.alert.risk_score` with Elastic's default bands (≤ 21 low, ≤ 47 medium, ≤ 73 high, else
//!   critical). `severity_score` ← `kibana.alert.risk_score`. Neither present → error.
//! - `category` ← rule name keywords, then ATT&CK technique, then tactic (the OCSF tables), from
//!   `kibana.alert.rule.threat[]` and ECS `threat.*`; default `other`.
//! - `subjects` ← `user.*` and `user.target.*` (`name` may be `DOMAIN\user`, a UPN or an array;
//!   `email`, `domain`, `full_name`; `id` → `ids.windows` for a SID, else `ids.elastic`).
//! - `host` ← `host.name` (else `host.hostname`), `host.id`, `host.ip` (string or array), `host.os.name`.
//! - `indicators` ← `source.ip`, `destination.ip` (`ip`), `file.hash.sha256`/`md5`/`sha1`.
use std::collections::BTreeSet;

use serde_json::Value;

use super::fields::{
    Indicators, echo, normalize_object, push_subject, severity_from_name, str_of,
    subject_from_name, time_from_rfc3339,
};
use super::ocsf::{category_from_tactic, category_from_technique, category_from_text};
use super::{Alert, Host, Indicator, NormalizeError, Normalizer, Severity, Source, Subject};

const FORMAT: &str = "elastic";

/// Elastic Security alert normalizer.
pub struct Elastic;

impl Normalizer for Elastic {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        doc.is_object() && lookup(doc, "kibana.alert.uuid").is_some()
    }

    fn normalize(&self, doc: Value) -> Result<Alert, NormalizeError> {
        normalize_object(FORMAT, "an Elastic Security alert", doc, build)
    }
}

fn invalid(reason: impl std::fmt::Display) -> NormalizeError {
    NormalizeError::invalid(FORMAT, reason)
}

/// Looks `path` (dotted) up in flat, nested or mixed form: at each level, any
/// key made of the next one or more segments joined by `.`. Null counts as absent.
pub(crate) fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    fn walk<'a>(v: &'a Value, segs: &[&str]) -> Option<&'a Value> {
        if segs.is_empty() {
            return (!v.is_null()).then_some(v);
        }
        let obj = v.as_object()?;
        let mut key = String::new();
        for (i, seg) in segs.iter().enumerate() {
            if i > 0 {
                key.push('.');
            }
            key.push_str(seg);
            if let Some(found) = obj.get(&key).and_then(|c| walk(c, &segs[i + 1..])) {
                return Some(found);
            }
        }
        None
    }
    let segs: Vec<&str> = path.split('.').collect();
    walk(v, &segs)
}

/// Strings at `path`, whether ECS stored one string or an array of them.
fn strings<'a>(v: &'a Value, path: &str) -> Vec<&'a str> {
    match lookup(v, path) {
        Some(Value::Array(a)) => a.iter().filter_map(|x| str_of(Some(x))).collect(),
        other => str_of(other).into_iter().collect(),
    }
}

fn build(doc: &Value) -> Result<Alert, NormalizeError> {
    let id = str_of(lookup(doc, "kibana.alert.uuid"))
        .ok_or_else(|| invalid("kibana.alert.uuid is missing"))?
        .to_string();
    let time = match lookup(doc, "@timestamp") {
        Some(t) => time_from_rfc3339(t).map_err(|e| invalid(format!("@timestamp: {e}")))?,
        None => return Err(invalid("@timestamp is missing")),
    };

    let score = match lookup(doc, "kibana.alert.risk_score") {
        None => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|f| (0.0..=100.0).contains(f))
                .ok_or_else(|| {
                    invalid(format!(
                        "kibana.alert.risk_score `{}` is not a number from 0 to 100",
                        echo(v)
                    ))
                })?,
        ),
    };
    let severity = match (str_of(lookup(doc, "kibana.alert.severity")), score) {
        (Some(name), _) => severity_from_name(name).ok_or_else(|| {
            invalid(format!(
                "kibana.alert.severity `{}` is not low, medium, high or critical",
                echo(name)
            ))
        })?,
        (None, Some(s)) => severity_from_risk_score(s),
        (None, None) => {
            return Err(invalid(
                "kibana.alert.severity and kibana.alert.risk_score are both missing",
            ));
        }
    };

    let rule_name = str_of(lookup(doc, "kibana.alert.rule.name"));
    let (tactics, techniques) = attack(doc);
    let category = rule_name
        .and_then(category_from_text)
        .or_else(|| techniques.iter().find_map(|t| category_from_technique(t)))
        .or_else(|| tactics.iter().find_map(|t| category_from_tactic(t)))
        .unwrap_or("other")
        .to_string();

    let mut alert = Alert::new(
        Source::of("elastic", "security", FORMAT),
        id,
        time,
        severity,
    );
    alert.severity_score = score;
    alert.category = category;
    alert.add_list_label("mitre_tactics", tactics);
    alert.add_list_label("mitre_techniques", techniques);
    for (label, path) in [
        ("elastic_rule_id", "kibana.alert.rule.rule_id"),
        ("elastic_rule_type", "kibana.alert.rule.type"),
        ("elastic_workflow_status", "kibana.alert.workflow_status"),
    ] {
        alert.add_label(label, str_of(lookup(doc, path)));
    }

    alert.title = rule_name
        .or_else(|| str_of(lookup(doc, "kibana.alert.reason")))
        .unwrap_or_default()
        .to_string();
    alert.subjects = subjects(doc)?;
    alert.set_host(host(doc));
    alert.indicators = indicators(doc);
    Ok(alert)
}

/// Elastic's default risk-score bands (the rule editor maps low 21, medium 47, high 73,
/// critical 99).
fn severity_from_risk_score(s: f64) -> Severity {
    if s <= 21.0 {
        Severity::Low
    } else if s <= 47.0 {
        Severity::Medium
    } else if s <= 73.0 {
        Severity::High
    } else {
        Severity::Critical
    }
}

/// ATT&CK tactic names and technique ids from `kibana.alert.rule.threat[]` and ECS `threat.*`.
fn attack(doc: &Value) -> (BTreeSet<&str>, BTreeSet<&str>) {
    let mut tactics: BTreeSet<&str> = strings(doc, "threat.tactic.name").into_iter().collect();
    let mut techniques: BTreeSet<&str> = strings(doc, "threat.technique.id")
        .into_iter()
        .chain(strings(doc, "threat.technique.subtechnique.id"))
        .collect();
    let rule_threats = lookup(doc, "kibana.alert.rule.threat").and_then(Value::as_array);
    for t in rule_threats.into_iter().flatten() {
        tactics.extend(str_of(lookup(t, "tactic.name")));
        let list = lookup(t, "technique").and_then(Value::as_array);
        for tech in list.into_iter().flatten() {
            techniques.extend(str_of(tech.get("id")));
            let subs = tech.get("subtechnique").and_then(Value::as_array);
            techniques.extend(
                subs.into_iter()
                    .flatten()
                    .filter_map(|s| str_of(s.get("id"))),
            );
        }
    }
    (tactics, techniques)
}

/// `user` and `user.target` → subjects, merged.
fn subjects(doc: &Value) -> Result<Vec<Subject>, NormalizeError> {
    let mut out = Vec::new();
    for prefix in ["user", "user.target"] {
        let field = |f: &str| str_of(lookup(doc, &format!("{prefix}.{f}")));
        let names = strings(doc, &format!("{prefix}.name"));
        let email = field("email");
        let mut found: Vec<Subject> = names.iter().filter_map(|n| subject_from_name(n)).collect();
        if found.is_empty() && (email.is_some() || field("id").is_some()) {
            found.push(Subject::default());
        }
        // Per-user details belong to a single user; with several names they cannot be attributed.
        let single = found.len() == 1;
        for mut s in found {
            if single {
                if let Some(e) = email {
                    if let Some(upn) = s.email.replace(e.to_string()) {
                        if !upn.eq_ignore_ascii_case(e) {
                            s.username = Some(upn);
                        }
                    }
                }
                if let Some(d) = field("domain") {
                    s.domain.get_or_insert_with(|| d.to_string());
                }
                s.display_name = field("full_name").map(str::to_string);
                if let Some(id) = field("id") {
                    let system = if id.starts_with("S-1-") {
                        "windows"
                    } else {
                        "elastic"
                    };
                    s.ids.insert(system.into(), id.to_string());
                }
            }
            push_subject(&mut out, Some(s)).map_err(invalid)?;
        }
    }
    Ok(out)
}

fn host(doc: &Value) -> Host {
    Host {
        hostname: str_of(lookup(doc, "host.name"))
            .or_else(|| str_of(lookup(doc, "host.hostname")))
            .map(str::to_string),
        id: str_of(lookup(doc, "host.id")).map(str::to_string),
        ips: strings(doc, "host.ip")
            .into_iter()
            .map(str::to_string)
            .collect(),
        os: str_of(lookup(doc, "host.os.name")).map(str::to_string),
    }
}

fn indicators(doc: &Value) -> Vec<Indicator> {
    let mut out = Indicators::default();
    for (kind, path) in [
        ("ip", "source.ip"),
        ("ip", "destination.ip"),
        ("sha256", "file.hash.sha256"),
        ("sha1", "file.hash.sha1"),
        ("md5", "file.hash.md5"),
    ] {
        for value in strings(doc, path) {
            out.push(kind, Some(value));
        }
    }
    out.into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookup_reads_flat_nested_and_mixed_keys() {
        let flat = json!({"kibana.alert.rule.name": "A"});
        let nested = json!({"kibana": {"alert": {"rule": {"name": "A"}}}});
        let mixed = json!({"kibana.alert": {"rule.name": "A"}});
        for doc in [&flat, &nested, &mixed] {
            assert_eq!(
                lookup(doc, "kibana.alert.rule.name"),
                Some(&json!("A")),
                "{doc}"
            );
        }
        assert_eq!(lookup(&json!({"a": {"b": null}}), "a.b"), None);
        assert_eq!(lookup(&json!({"a": 1}), "a.b"), None);
    }

    #[test]
    fn risk_score_bands_follow_elastic_defaults() {
        assert_eq!(severity_from_risk_score(21.0), Severity::Low);
        assert_eq!(severity_from_risk_score(47.0), Severity::Medium);
        assert_eq!(severity_from_risk_score(73.0), Severity::High);
        assert_eq!(severity_from_risk_score(99.0), Severity::Critical);
    }
}
