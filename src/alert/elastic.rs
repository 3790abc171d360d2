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
    Account, Indicators, TimeUnit, account, default_severity, echo, has_identifier, id_or_derived,
    ident, normalize_object, problem, push_subject, severity_from_name, str_of, subject_from_name,
    time_or_receipt,
};
use super::ocsf::{category_from_tactic, category_from_technique, category_from_text};
use super::{
    Alert, Host, Indicator, NormalizeError, Normalizer, ProblemKind, Severity, Source, Subject,
    SubjectKind,
};

const FORMAT: &str = "elastic";

/// Elastic Security alert normalizer.
pub(crate) struct Elastic;

impl Normalizer for Elastic {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        doc.is_object()
            && (lookup(doc, "kibana.alert.uuid").is_some()
                || lookup(doc, "signal.rule.id").is_some()
                || lookup(doc, "signal.rule.rule_id").is_some())
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

/// `kibana.alert.<field>` (8.x), else where 7.x put it in a legacy `signal.*` document.
fn alert_field<'a>(doc: &'a Value, field: &str) -> Option<&'a Value> {
    let legacy = match field {
        "severity" => "signal.rule.severity",
        "risk_score" => "signal.rule.risk_score",
        "workflow_status" => "signal.status",
        "reason" => "signal.reason",
        "original_time" => "signal.original_time",
        "rule.name" => "signal.rule.name",
        "rule.rule_id" => "signal.rule.rule_id",
        "rule.type" => "signal.rule.type",
        "rule.threat" => "signal.rule.threat",
        "rule.tags" => "signal.rule.tags",
        _ => "",
    };
    lookup(doc, &format!("kibana.alert.{field}"))
        .or_else(|| (!legacy.is_empty()).then(|| lookup(doc, legacy)).flatten())
}

/// The alert's id: `kibana.alert.uuid`; a 7.x signal has none in its source, so the document's
/// `_id` (as rule actions post it), else the rule and the event it fired on.
fn alert_id(doc: &Value) -> Option<String> {
    let rule = str_of(lookup(doc, "signal.rule.id"));
    let parent = str_of(lookup(doc, "signal.parent.id"));
    str_of(lookup(doc, "kibana.alert.uuid"))
        .or_else(|| str_of(doc.get("_id")))
        .map(str::to_string)
        .or_else(|| Some(format!("{}:{}", rule?, parent?)))
}

fn build(doc: &Value) -> Result<Alert, NormalizeError> {
    let mut notes = Vec::new();
    let id = id_or_derived(
        alert_id(doc).as_deref(),
        "kibana.alert.uuid (and a 7.x signal's _id, signal.parent.id)",
        doc,
        &mut notes,
    );
    let time = time_or_receipt(
        &[
            ("@timestamp", lookup(doc, "@timestamp")),
            (
                "kibana.alert.original_time",
                alert_field(doc, "original_time"),
            ),
        ],
        TimeUnit::Rfc3339,
        &mut notes,
    );

    let score = alert_field(doc, "risk_score").and_then(|v| {
        let n = v.as_f64().filter(|f| (0.0..=100.0).contains(f));
        if n.is_none() {
            notes.push(problem(
                ProblemKind::SeverityOutOfRange,
                format!(
                    "kibana.alert.risk_score `{}` is not a number from 0 to 100; ignored",
                    echo(v)
                ),
            ));
        }
        n
    });
    let name = str_of(alert_field(doc, "severity"));
    let severity = match (name.map(|n| (n, severity_from_name(n))), score) {
        (Some((_, Some(sev))), _) => sev,
        (Some((n, None)), Some(s)) => {
            let sev = severity_from_risk_score(s);
            notes.push(problem(
                ProblemKind::SeverityOutOfRange,
                format!(
                    "kibana.alert.severity `{}` is not low, medium, high or critical; used \
                     kibana.alert.risk_score {s} ({})",
                    echo(n),
                    sev.as_str()
                ),
            ));
            sev
        }
        (None, Some(s)) => severity_from_risk_score(s),
        (Some((n, None)), None) => default_severity(
            format!(
                "kibana.alert.severity `{}` is not low, medium, high or critical",
                echo(n)
            ),
            &mut notes,
        ),
        (None, None) => default_severity(
            "kibana.alert.severity and kibana.alert.risk_score are both missing",
            &mut notes,
        ),
    };

    let rule_name = str_of(alert_field(doc, "rule.name"));
    let (tactics, techniques) = attack(doc);
    let category = rule_name
        .and_then(category_from_text)
        .or_else(|| techniques.iter().find_map(|t| category_from_technique(t)))
        .or_else(|| tactics.iter().find_map(|t| category_from_tactic(t)))
        .unwrap_or("other")
        .to_string();

    let source = Source::of("elastic", "security", FORMAT);
    let mut alert = Alert::new(source, id, time, severity, notes);
    alert.severity_score = score;
    alert.category = category;
    alert.add_list_label("mitre_tactics", tactics);
    alert.add_list_label("mitre_techniques", techniques);
    for (label, field) in [
        ("elastic_rule_id", "rule.rule_id"),
        ("elastic_rule_type", "rule.type"),
        ("elastic_workflow_status", "workflow_status"),
    ] {
        alert.add_label(label, str_of(alert_field(doc, field)));
    }

    alert.title = rule_name
        .or_else(|| str_of(alert_field(doc, "reason")))
        .unwrap_or_default()
        .to_string();
    alert.subjects = subjects(doc)?;
    // Which subject was acted upon (ECS `user.target`), so a policy can contain only the account
    // that was changed, or only the one that changed it (`user`).
    alert.add_label(
        "elastic_user_target",
        strings(doc, "user.target.name")
            .into_iter()
            .find(|n| !super::fields::is_placeholder(n)),
    );
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
    let rule_threats = alert_field(doc, "rule.threat").and_then(Value::as_array);
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
    if tactics.is_empty() && techniques.is_empty() {
        attack_from_tags(doc, &mut tactics, &mut techniques);
    }
    (tactics, techniques)
}

/// ATT&CK named in the rule's tags, for rules whose `threat` is empty: `Tactic: Credential Access`
/// (Elastic's prebuilt rules since 8.9), a bare tactic name (`Credential Access`, older prebuilt
/// rules), and technique ids (`T1110`, `Technique: T1110.003`).
fn attack_from_tags<'a>(
    doc: &'a Value,
    tactics: &mut BTreeSet<&'a str>,
    techniques: &mut BTreeSet<&'a str>,
) {
    let tags = match alert_field(doc, "rule.tags") {
        Some(Value::Array(a)) => a.iter().filter_map(|t| str_of(Some(t))).collect(),
        other => str_of(other).into_iter().collect::<Vec<_>>(),
    };
    for tag in tags {
        let value = tag.split_once(':').map_or(tag, |(_, v)| v.trim());
        let is_technique = value.starts_with(['T', 't'])
            && value
                .get(1..5)
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()));
        if is_technique {
            techniques.insert(value);
        } else if category_from_tactic(value).is_some() {
            tactics.insert(value);
        }
    }
}

/// `user` and `user.target` → subjects, merged, the acting `user` first. ECS ("User fields usage
/// and examples", ECS reference 8.x/9.x, read 2026-12-03) puts the account that performed an IAM
/// action in `user` and the account it was performed on in `user.target`. An account-manipulation
/// detection (a user added to a privileged group, a password reset) is evidence against both: the
/// actor's credentials made a change an attacker makes, and the target is the account an attacker
/// keeps as persistence. Both are candidates; label `elastic_user_target` says which is which.
fn subjects(doc: &Value) -> Result<Vec<Subject>, NormalizeError> {
    let mut out = Vec::new();
    for prefix in ["user", "user.target"] {
        let field = |f: &str| ident(lookup(doc, &format!("{prefix}.{f}")));
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
    if out.is_empty() {
        push_subject(&mut out, windows_account(doc)).map_err(invalid)?;
    }
    Ok(out)
}

/// Without ECS `user.*`, the account of a Windows security event in `winlog.event_data`: the
/// `Target*` account (who logged on, was locked out, had a ticket requested), else the `Subject*`
/// account (who acted). A computer account (`HOST$`) is a service account.
fn windows_account(doc: &Value) -> Option<Subject> {
    ["Target", "Subject"].into_iter().find_map(|party| {
        let field = |f: &str| ident(lookup(doc, &format!("winlog.event_data.{party}{f}")));
        let mut s = account(&Account {
            name: field("UserName"),
            domain: field("DomainName"),
            sid: field("UserSid").filter(|sid| sid.starts_with("S-1-")),
            ..Account::default()
        });
        if s.username.as_deref().is_some_and(|u| u.ends_with('$')) {
            s.kind = SubjectKind::ServiceAccount;
        }
        has_identifier(&s).then_some(s)
    })
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
