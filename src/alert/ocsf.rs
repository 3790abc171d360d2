//! `ocsf`: OCSF 1.x findings and risky authentications — Detection Finding (`class_uid` 2004, the
//! first-class external schema), Security Finding (2001, OCSF 1.0's finding class), Incident Finding
//! (2005) and Authentication (3002) when it carries a failure or a risk.
//!
//! Mapping (see `docs/alert-model.md` for the full table):
//! - `id` ← `finding_info.uid` (2004), `finding.uid` then `finding_info.uid` (2001), else
//!   `metadata.uid`; Incident Finding and Authentication have only `metadata.uid`. Missing is an error.
//! - `time` ← `time` (epoch ms), else the finding's `created_time` (2001, 2004), else `start_time`
//!   (2005); all missing is an error.
//! - `severity` ← `severity_id`: 0 Unknown → informational (an unknown never escalates; policies
//!   can still read `raw.severity_id`), 1 informational, 2 low, 3 medium, 4 high, 5 critical,
//!   6 Fatal → critical, 99 Other → the `severity` string read as a name. Missing `severity_id` falls
//!   back to the `severity` string. A `risk_level_id` (0 Info … 4 Critical, 99 → `risk_level`) raises
//!   the severity, never lowers it. `severity_score` ← `risk_score`, else `severity_id` (0–6).
//! - `category` ← first match of the finding's `types[]`, then `analytic` (name, category), then
//!   ATT&CK techniques, then ATT&CK tactics (`category_from_text`, `category_from_technique`,
//!   `category_from_tactic`); default `other`. Authentication: `status_detail`/`message` by text,
//!   else `suspicious_login`.
//! - `subjects` ← `actor.user`, `evidences[].user`, `evidences[].actor.user`, `resources[]` whose
//!   `type` ends in `user`; merged when they name the same account. A user object with no
//!   identifier is skipped (vendors emit partial objects); a finding with no user at all is kept,
//!   because policies may still notify. An Incident's `assignee` is the responder, never a subject.
//!   Authentication: `user` (the account authenticating), else `actor.user`; none is an error.
//! - `host` ← `device` (`hostname` or `name`, `uid`, `ip`, `os.name`); Authentication falls back to
//!   `dst_endpoint` (the system signed in to).
//! - `indicators` ← `observables[]`, `type_id` → kind (`indicator_kind`); Authentication adds
//!   `src_endpoint.ip` (where the sign-in came from).
//! - `source` ← `metadata.product.vendor_name` / `name`, lower-cased (vendor `unknown` if absent).
//! - `labels`: `mitre_tactics`, `mitre_techniques`, `finding_types` (comma-separated), `ocsf_class`,
//!   and per class: `risk_level`, `finding_state` (2001), `incident_status`, `incident_priority`,
//!   `incident_verdict`, `suspected_breach` (2005), `auth_status`, `mfa`, `auth_protocol`,
//!   `logon_type`, `src_country` (3002), when present.
//!
//! Authentication events are the sign-in log, mostly successes: only those with a failure
//! (`status_id` 2) or a risk (`risk_level_id` 1–4, a `risk_level` other than Info, or a positive
//! `risk_score`) are alerts. Any other is dead-lettered with a reason saying so, because a source that
//! streams every sign-in here is misrouted and a silent drop would hide it.
//!
//! Detection: `class_uid` is one of the numbers above. Under an explicit `format = "ocsf"`, any other
//! class is an error naming it, so a misrouted Network Activity event is dead-lettered rather than
//! guessed at.
use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::Value;

use super::fields::{
    MAX_SUBJECTS, bounded_reason, echo, has_identifier, merge_subject, put_label,
    severity_from_name, str_of, subject_from_name, time_from_epoch_ms, too_many_subjects,
};
use super::{Alert, Host, Indicator, NormalizeError, Normalizer, Severity, Source, Subject};

const FORMAT: &str = "ocsf";
const SECURITY_FINDING: u64 = 2001;
const DETECTION_FINDING: u64 = 2004;
const INCIDENT_FINDING: u64 = 2005;
const AUTHENTICATION: u64 = 3002;
/// Every class this normalizer reads, for detection and messages.
pub(crate) const CLASSES: [u64; 4] = [
    SECURITY_FINDING,
    DETECTION_FINDING,
    INCIDENT_FINDING,
    AUTHENTICATION,
];
/// The same, as written in error messages.
pub(crate) const CLASSES_TEXT: &str =
    "Security Finding 2001, Detection Finding 2004, Incident Finding 2005, Authentication 3002";

/// OCSF findings (classes 2001, 2004, 2005) and risky authentications (3002) normalizer.
pub struct Ocsf;

impl Normalizer for Ocsf {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        doc.get("class_uid")
            .and_then(Value::as_u64)
            .is_some_and(|c| CLASSES.contains(&c))
    }

    fn normalize(&self, doc: Value) -> Result<Alert, NormalizeError> {
        if !doc.is_object() {
            return Err(invalid("expected a JSON object (an OCSF event)"));
        }
        let mut alert = match check_class(&doc)? {
            AUTHENTICATION => build_authentication(&doc)?,
            class => build(&doc, class)?,
        };
        alert.raw = doc;
        Ok(alert)
    }
}

fn invalid(reason: impl Into<String>) -> NormalizeError {
    NormalizeError::Invalid {
        format: FORMAT,
        reason: bounded_reason(reason.into()),
    }
}

fn check_class(doc: &Value) -> Result<u64, NormalizeError> {
    match doc.get("class_uid") {
        None | Some(Value::Null) => Err(invalid(format!(
            "class_uid is missing (expected one of: {CLASSES_TEXT})"
        ))),
        Some(v) => match v.as_u64() {
            Some(n) if CLASSES.contains(&n) => Ok(n),
            Some(n) => Err(invalid(format!(
                "class_uid {n} ({}) is not a class deprovd reads ({CLASSES_TEXT}); route this \
                 source to another format",
                class_name(n)
            ))),
            None => Err(invalid(format!(
                "class_uid `{}` is not an integer",
                echo(v)
            ))),
        },
    }
}

/// Names of the OCSF classes most likely to be misrouted here, for the error message.
fn class_name(uid: u64) -> &'static str {
    match uid {
        2001 => "Security Finding",
        2002 => "Vulnerability Finding",
        2003 => "Compliance Finding",
        2005 => "Incident Finding",
        2006 => "Data Security Finding",
        3001 => "Account Change",
        3002 => "Authentication",
        3003 => "Authorize Session",
        1001 => "File System Activity",
        1007 => "Process Activity",
        4001 => "Network Activity",
        _ => "unsupported class",
    }
}

/// The finding objects of a document: `finding_info` (2004), `finding` then `finding_info` (2001,
/// whose 1.0 shape uses `finding`), every `finding_info_list[]` entry (2005).
fn finding_infos(doc: &Value, class: u64) -> Vec<&Value> {
    let one = |k: &str| doc.get(k).filter(|v| v.is_object());
    match class {
        SECURITY_FINDING => one("finding")
            .or_else(|| one("finding_info"))
            .into_iter()
            .collect(),
        INCIDENT_FINDING => doc
            .get("finding_info_list")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter(|v| v.is_object()).collect())
            .unwrap_or_default(),
        _ => one("finding_info").into_iter().collect(),
    }
}

/// Name of the finding object for messages.
fn info_name(class: u64) -> &'static str {
    match class {
        SECURITY_FINDING => "finding",
        INCIDENT_FINDING => "finding_info_list[]",
        _ => "finding_info",
    }
}

fn build(doc: &Value, class: u64) -> Result<Alert, NormalizeError> {
    let infos = finding_infos(doc, class);
    // An incident's `finding_info_list` names the findings it groups, not the incident itself.
    let info = (class != INCIDENT_FINDING)
        .then(|| infos.first().copied())
        .flatten();
    let id = str_of(info.and_then(|i| i.get("uid")))
        .or_else(|| str_of(doc.pointer("/metadata/uid")))
        .ok_or_else(|| {
            invalid(if class == INCIDENT_FINDING {
                "metadata.uid is missing (an Incident Finding has no other id)".to_string()
            } else {
                format!("{}.uid and metadata.uid are both missing", info_name(class))
            })
        })?
        .to_string();

    let fallback = if class == INCIDENT_FINDING {
        ("start_time", doc.get("start_time"))
    } else if class == SECURITY_FINDING && doc.get("finding").is_some() {
        (
            "finding.created_time",
            info.and_then(|i| i.get("created_time")),
        )
    } else {
        (
            "finding_info.created_time",
            info.and_then(|i| i.get("created_time")),
        )
    };
    let time = match (
        doc.get("time").filter(|v| !v.is_null()),
        fallback.1.filter(|v| !v.is_null()),
    ) {
        (Some(t), _) => time_from_epoch_ms(t).map_err(|e| invalid(format!("time: {e}")))?,
        (None, Some(t)) => {
            time_from_epoch_ms(t).map_err(|e| invalid(format!("{}: {e}", fallback.0)))?
        }
        (None, None) => {
            return Err(invalid(format!(
                "time and {} are both missing (epoch milliseconds)",
                fallback.0
            )));
        }
    };

    let (severity, severity_id) = parse_severity(doc)?;
    let risk = parse_risk_level(doc)?;
    let severity = risk.map_or(severity, |r| r.max(severity));
    let severity_score = doc
        .get("risk_score")
        .and_then(Value::as_f64)
        .or(severity_id.filter(|id| *id <= 6).map(|id| id as f64));

    let source = source(doc);

    let attacks = attacks(
        infos
            .iter()
            .map(|i| i.get("attacks"))
            .chain(std::iter::once(doc.get("attacks"))),
    );
    let mut labels = BTreeMap::new();
    let join = |set: &BTreeSet<&str>| set.iter().copied().collect::<Vec<_>>().join(",");
    if !attacks.tactics.is_empty() {
        labels.insert("mitre_tactics".into(), join(&attacks.tactics));
    }
    if !attacks.techniques.is_empty() {
        labels.insert("mitre_techniques".into(), join(&attacks.techniques));
    }
    let mut types: Vec<&str> = Vec::new();
    for info in &infos {
        let list = info.get("types").and_then(Value::as_array);
        for t in list.into_iter().flatten().filter_map(|t| str_of(Some(t))) {
            if !types.contains(&t) {
                types.push(t);
            }
        }
    }
    if !types.is_empty() {
        labels.insert("finding_types".into(), types.join(","));
    }
    put_label(&mut labels, "risk_level", risk_label(doc));
    match class {
        SECURITY_FINDING => {
            put_label(&mut labels, "finding_state", str_of(doc.get("state")));
        }
        INCIDENT_FINDING => {
            put_label(&mut labels, "incident_status", str_of(doc.get("status")));
            put_label(&mut labels, "incident_verdict", str_of(doc.get("verdict")));
            let priority = doc.get("priority").and_then(|p| match p {
                Value::String(s) => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            put_label(&mut labels, "incident_priority", priority.as_deref());
            if let Some(b) = doc.get("is_suspected_breach").and_then(Value::as_bool) {
                labels.insert("suspected_breach".into(), b.to_string());
            }
        }
        _ => {}
    }

    let analytics = infos
        .iter()
        .map(|i| i.get("analytic"))
        .chain(std::iter::once(doc.get("analytic")))
        .flatten();
    let analytic_text: Vec<&str> = analytics
        .flat_map(|a| [str_of(a.get("name")), str_of(a.get("category"))])
        .flatten()
        .collect();
    let category = types
        .iter()
        .copied()
        .chain(analytic_text)
        .find_map(category_from_text)
        .or_else(|| {
            attacks
                .techniques
                .iter()
                .find_map(|t| category_from_technique(t))
        })
        .or_else(|| attacks.tactics.iter().find_map(|t| category_from_tactic(t)))
        .unwrap_or("other")
        .to_string();

    let title = if class == INCIDENT_FINDING {
        str_of(doc.get("desc"))
            .or_else(|| str_of(doc.get("message")))
            .or_else(|| infos.iter().find_map(|i| str_of(i.get("title"))))
    } else {
        str_of(info.and_then(|i| i.get("title"))).or_else(|| str_of(doc.get("message")))
    }
    .unwrap_or_default()
    .to_string();

    Ok(Alert {
        id,
        time,
        severity,
        severity_score,
        category,
        title,
        subjects: subjects(doc, &source.vendor)?,
        host: host(doc.get("device")),
        indicators: indicators(doc.get("observables")),
        labels,
        source,
        raw: Value::Null,
    })
}

fn source(doc: &Value) -> Source {
    Source {
        vendor: str_of(doc.pointer("/metadata/product/vendor_name"))
            .map(str::to_lowercase)
            .unwrap_or_else(|| "unknown".into()),
        product: str_of(doc.pointer("/metadata/product/name")).map(str::to_lowercase),
        format: FORMAT.into(),
    }
}

/// `risk_level_id` → severity: 0 Info, 1 Low, 2 Medium, 3 High, 4 Critical, 99 Other → the
/// `risk_level` string read as a name. Without an id, the `risk_level` string alone.
fn parse_risk_level(doc: &Value) -> Result<Option<Severity>, NormalizeError> {
    let name = str_of(doc.get("risk_level"));
    let by_name = |n: &str| {
        risk_from_name(n).ok_or_else(|| {
            invalid(format!(
                "risk_level `{}` is not a known level (info, low, medium, high, critical)",
                echo(n)
            ))
        })
    };
    match doc.get("risk_level_id").filter(|v| !v.is_null()) {
        None => name.map(by_name).transpose(),
        Some(v) => {
            let id = v
                .as_u64()
                .ok_or_else(|| invalid(format!("risk_level_id `{}` is not an integer", echo(v))))?;
            match id {
                0 => Ok(Some(Severity::Informational)),
                1 => Ok(Some(Severity::Low)),
                2 => Ok(Some(Severity::Medium)),
                3 => Ok(Some(Severity::High)),
                4 => Ok(Some(Severity::Critical)),
                99 => match name {
                    Some(n) => by_name(n).map(Some),
                    None => Err(invalid(
                        "risk_level_id is 99 (Other) and risk_level is missing",
                    )),
                },
                n => Err(invalid(format!(
                    "risk_level_id {n} is not defined by OCSF (0–4 or 99)"
                ))),
            }
        }
    }
}

/// OCSF risk level captions (`Info`) and the usual severity names.
fn risk_from_name(name: &str) -> Option<Severity> {
    severity_from_name(name).or_else(|| {
        name.trim()
            .eq_ignore_ascii_case("info")
            .then_some(Severity::Informational)
    })
}

/// The `risk_level` label: the caption when given, else the caption of `risk_level_id`.
fn risk_label(doc: &Value) -> Option<&str> {
    str_of(doc.get("risk_level")).or_else(|| {
        match doc.get("risk_level_id").and_then(Value::as_u64)? {
            0 => Some("Info"),
            1 => Some("Low"),
            2 => Some("Medium"),
            3 => Some("High"),
            4 => Some("Critical"),
            _ => None,
        }
    })
}

/// Authentication (3002): an alert only when it carries a failure or a risk.
fn build_authentication(doc: &Value) -> Result<Alert, NormalizeError> {
    let id = str_of(doc.pointer("/metadata/uid"))
        .ok_or_else(|| {
            invalid("metadata.uid is missing (an Authentication event has no other id)")
        })?
        .to_string();
    let time = match doc.get("time").filter(|v| !v.is_null()) {
        Some(t) => time_from_epoch_ms(t).map_err(|e| invalid(format!("time: {e}")))?,
        None => return Err(invalid("time is missing (epoch milliseconds)")),
    };
    let (severity, severity_id) = parse_severity(doc)?;
    let risk = parse_risk_level(doc)?;
    let risk_score = doc.get("risk_score").and_then(Value::as_f64);
    let failed = doc.get("status_id").and_then(Value::as_u64) == Some(2);
    let risky =
        risk.is_some_and(|r| r > Severity::Informational) || risk_score.is_some_and(|s| s > 0.0);
    if !failed && !risky {
        return Err(invalid(
            "Authentication event carries neither a failure (status_id 2) nor a risk (risk_level_id \
             1–4, risk_level, risk_score > 0): it is not an alert; send only failed or risky \
             sign-ins to this source",
        ));
    }
    let severity = risk.map_or(severity, |r| r.max(severity));
    let source = source(doc);

    let user = doc
        .get("user")
        .filter(|u| u.is_object())
        .or_else(|| doc.pointer("/actor/user"));
    let mut subjects = Vec::new();
    if let Some(s) = user.and_then(|u| user_subject(u, &source.vendor)) {
        subjects.push(s);
    }
    if subjects.is_empty() {
        return Err(invalid(
            "Authentication event names no user (`user` or `actor.user` with name, email_addr or uid)",
        ));
    }

    let mut labels = BTreeMap::new();
    put_label(&mut labels, "risk_level", risk_label(doc));
    let status = str_of(doc.get("status")).or(match doc.get("status_id").and_then(Value::as_u64) {
        Some(1) => Some("Success"),
        Some(2) => Some("Failure"),
        _ => None,
    });
    put_label(
        &mut labels,
        "auth_status",
        status.map(str::to_lowercase).as_deref(),
    );
    if let Some(mfa) = doc.get("is_mfa").and_then(Value::as_bool) {
        labels.insert("mfa".into(), mfa.to_string());
    }
    put_label(
        &mut labels,
        "auth_protocol",
        str_of(doc.get("auth_protocol")),
    );
    put_label(&mut labels, "logon_type", str_of(doc.get("logon_type")));
    put_label(
        &mut labels,
        "src_country",
        str_of(doc.pointer("/src_endpoint/location/country")),
    );

    let detail = str_of(doc.get("status_detail"));
    let message = str_of(doc.get("message"));
    let category = detail
        .into_iter()
        .chain(message)
        .find_map(category_from_text)
        .unwrap_or("suspicious_login")
        .to_string();
    let who = subjects[0].primary().unwrap_or("unknown user").to_string();
    let title = message.map(str::to_string).unwrap_or_else(|| {
        let what = if failed {
            "failed sign-in"
        } else {
            "risky sign-in"
        };
        match detail {
            Some(d) => format!("{what} for {who}: {d}"),
            None => format!("{what} for {who}"),
        }
    });

    let mut indicators = indicators(doc.get("observables"));
    if let Some(ip) = str_of(doc.pointer("/src_endpoint/ip")) {
        let i = Indicator {
            kind: "ip".into(),
            value: ip.to_string(),
        };
        if !indicators.contains(&i) {
            indicators.push(i);
        }
    }

    Ok(Alert {
        id,
        time,
        severity,
        severity_score: risk_score.or(severity_id.filter(|id| *id <= 6).map(|id| id as f64)),
        category,
        title,
        subjects,
        host: host(doc.get("device")).or_else(|| host(doc.get("dst_endpoint"))),
        indicators,
        labels,
        source,
        raw: Value::Null,
    })
}

/// Returns the severity and the raw `severity_id` (if any) for `severity_score`.
fn parse_severity(doc: &Value) -> Result<(Severity, Option<u64>), NormalizeError> {
    let name = str_of(doc.get("severity"));
    let by_name = |why: &str| match name {
        Some(n) => severity_from_name(n).ok_or_else(|| {
            invalid(format!(
                "{why} and severity `{}` is not a known name (informational, low, medium, high, \
                 critical)",
                echo(n)
            ))
        }),
        None => Err(invalid(format!("{why} and severity is missing"))),
    };
    match doc.get("severity_id").filter(|v| !v.is_null()) {
        None => by_name("severity_id is missing").map(|s| (s, None)),
        Some(v) => {
            let id = v
                .as_u64()
                .ok_or_else(|| invalid(format!("severity_id `{}` is not an integer", echo(v))))?;
            let sev = match id {
                0 | 1 => Severity::Informational,
                2 => Severity::Low,
                3 => Severity::Medium,
                4 => Severity::High,
                5 | 6 => Severity::Critical,
                99 => by_name("severity_id is 99 (Other)")?,
                n => {
                    return Err(invalid(format!(
                        "severity_id {n} is not defined by OCSF (0–6 or 99)"
                    )));
                }
            };
            Ok((sev, Some(id)))
        }
    }
}

/// ATT&CK tactic names and technique ids found in `finding_info.attacks[]`.
#[derive(Default)]
struct Attacks<'a> {
    tactics: BTreeSet<&'a str>,
    techniques: BTreeSet<&'a str>,
}

fn attacks<'a>(lists: impl Iterator<Item = Option<&'a Value>>) -> Attacks<'a> {
    let mut out = Attacks::default();
    for attack in lists.flatten().filter_map(Value::as_array).flatten() {
        let tactic = attack.get("tactic").into_iter();
        // `tactics[]` is the pre-1.1 (deprecated) spelling; still emitted by some vendors.
        let older = attack
            .get("tactics")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for t in tactic.chain(older) {
            if let Some(name) = str_of(t.get("name")) {
                out.tactics.insert(name);
            }
        }
        for key in ["technique", "sub_technique"] {
            if let Some(uid) = str_of(attack.get(key).and_then(|t| t.get("uid"))) {
                out.techniques.insert(uid);
            }
        }
    }
    out
}

/// Vendor finding types / analytic names → category, by conservative keywords (first match wins,
/// more specific phrases first).
pub(crate) fn category_from_text(text: &str) -> Option<&'static str> {
    const TABLE: &[(&str, &str)] = &[
        ("impossible travel", "impossible_travel"),
        ("atypical travel", "impossible_travel"),
        ("phish", "phishing"),
        ("account takeover", "account_takeover"),
        ("compromised account", "account_takeover"),
        ("compromised user", "account_takeover"),
        ("credential", "credential_theft"),
        ("password spray", "credential_theft"),
        ("brute force", "credential_theft"),
        ("exfiltration", "data_exfiltration"),
        ("privilege escalation", "privilege_escalation"),
        ("ransomware", "malware"),
        ("malware", "malware"),
        ("trojan", "malware"),
        ("suspicious login", "suspicious_login"),
        ("suspicious sign-in", "suspicious_login"),
        ("unfamiliar sign-in", "suspicious_login"),
        ("policy violation", "policy_violation"),
    ];
    let lower = text.to_lowercase();
    TABLE
        .iter()
        .find(|(needle, _)| lower.contains(needle))
        .map(|(_, cat)| *cat)
}

/// ATT&CK techniques that pin the category more precisely than their tactic (sub-techniques match
/// their parent: `T1566.001` is phishing).
pub(crate) fn category_from_technique(uid: &str) -> Option<&'static str> {
    let parent = uid.split('.').next().unwrap_or(uid).to_ascii_uppercase();
    match parent.as_str() {
        "T1566" | "T1598" => Some("phishing"),
        "T1078" => Some("account_takeover"),
        "T1110" | "T1003" | "T1555" | "T1552" | "T1558" => Some("credential_theft"),
        "T1486" | "T1204" => Some("malware"),
        _ => None,
    }
}

/// ATT&CK tactic name → category. Tactics without a clear containment meaning (Discovery, Defense
/// Evasion, Lateral Movement, …) map to nothing, so the default `other` applies.
pub(crate) fn category_from_tactic(name: &str) -> Option<&'static str> {
    let is = |s: &str| name.trim().eq_ignore_ascii_case(s);
    if is("Credential Access") {
        Some("credential_theft")
    } else if is("Privilege Escalation") {
        Some("privilege_escalation")
    } else if is("Exfiltration") {
        Some("data_exfiltration")
    } else if is("Initial Access") {
        Some("suspicious_login")
    } else if is("Execution") || is("Command and Control") || is("Impact") {
        Some("malware")
    } else {
        None
    }
}

/// Every user the finding names, merged per account.
fn subjects(doc: &Value, vendor: &str) -> Result<Vec<Subject>, NormalizeError> {
    let evidences = doc.get("evidences").and_then(Value::as_array);
    let resources = doc.get("resources").and_then(Value::as_array);
    let users = std::iter::once(doc.pointer("/actor/user"))
        .chain(
            evidences
                .into_iter()
                .flatten()
                .flat_map(|e| [e.get("user"), e.pointer("/actor/user")]),
        )
        .chain(resources.into_iter().flatten().map(|r| {
            let is_user = str_of(r.get("type")).is_some_and(|t| t.to_lowercase().ends_with("user"));
            is_user.then_some(r)
        }))
        .flatten();
    let mut out = Vec::new();
    for user in users {
        if let Some(s) = user_subject(user, vendor) {
            merge_subject(&mut out, s);
            if out.len() > MAX_SUBJECTS {
                return Err(invalid(too_many_subjects()));
            }
        }
    }
    Ok(out)
}

/// OCSF User object (or a user-typed resource) → subject; `None` when it names no account.
fn user_subject(user: &Value, vendor: &str) -> Option<Subject> {
    if !user.is_object() {
        return None;
    }
    let email = str_of(user.get("email_addr"));
    let mut s = str_of(user.get("name"))
        .and_then(subject_from_name)
        .unwrap_or_default();
    if let Some(email) = email {
        // `name` may itself have been a UPN; the explicit address wins, the UPN is kept as login.
        if let Some(upn) = s.email.replace(email.to_string()) {
            if !upn.eq_ignore_ascii_case(email) {
                s.username = Some(upn);
            }
        }
    }
    if let Some(domain) = str_of(user.get("domain")) {
        s.domain.get_or_insert_with(|| domain.to_string());
    }
    s.display_name = str_of(user.get("full_name")).map(str::to_string);
    if user.get("type_id").and_then(Value::as_u64) == Some(3) {
        s.kind = super::SubjectKind::ServiceAccount;
    }
    if let Some(uid) = str_of(user.get("uid")) {
        let system = user
            .pointer("/account/type_id")
            .and_then(Value::as_u64)
            .and_then(account_system)
            .unwrap_or(vendor);
        s.ids.insert(system.to_string(), uid.to_string());
    }
    has_identifier(&s).then_some(s)
}

/// OCSF `account.type_id` → the system key for `Subject::ids`. Unknown types key the uid by the
/// reporting vendor, which is the system the uid most likely comes from.
fn account_system(type_id: u64) -> Option<&'static str> {
    match type_id {
        1 => Some("ldap"),
        2 => Some("windows"),
        3 | 4 | 10 => Some("aws"),
        5 | 11 => Some("gcp"),
        6 | 13 | 17 => Some("entra"),
        14 => Some("salesforce"),
        15 => Some("google_workspace"),
        16 => Some("servicenow"),
        _ => None,
    }
}

fn host(device: Option<&Value>) -> Option<Host> {
    let d = device?;
    let h = Host {
        hostname: str_of(d.get("hostname"))
            .or_else(|| str_of(d.get("name")))
            .map(str::to_string),
        id: str_of(d.get("uid")).map(str::to_string),
        ips: str_of(d.get("ip"))
            .map(str::to_string)
            .into_iter()
            .collect(),
        os: str_of(d.pointer("/os/name")).map(str::to_string),
    };
    (h != Host::default()).then_some(h)
}

/// OCSF observable `type_id` → indicator kind. Hashes (8) are named by length; unknown ids fall back
/// to the observable's `type` caption, lower-cased.
pub(crate) fn indicator_kind(type_id: u64, value: &str, caption: Option<&str>) -> String {
    let kind = match type_id {
        1 => "hostname",
        2 => "ip",
        3 => "mac",
        4 => "username",
        5 | 22 => "email",
        6 | 23 => "url",
        7 => "file_name",
        8 => match value.len() {
            32 => "md5",
            40 => "sha1",
            64 => "sha256",
            128 => "sha512",
            _ => "hash",
        },
        9 | 25 => "process",
        10 => "resource_uid",
        11 => "port",
        12 => "subnet",
        13 => "command_line",
        14 => "country",
        15 => "process_id",
        16 => "user_agent",
        17 => "cwe",
        18 => "cve",
        19 => "credential_id",
        20 => "endpoint",
        21 => "user",
        24 => "file",
        26 => "geo_location",
        27 => "container",
        28 => "registry_key",
        29 => "registry_value",
        30 => "fingerprint",
        _ => {
            return caption
                .map(|c| c.to_lowercase().replace(' ', "_"))
                .unwrap_or_else(|| "other".into());
        }
    };
    kind.to_string()
}

fn indicators(observables: Option<&Value>) -> Vec<Indicator> {
    let mut out: Vec<Indicator> = Vec::new();
    // A set, not a scan of `out`: observables are vendor-controlled and may number thousands.
    let mut seen = HashSet::new();
    let list = observables.and_then(Value::as_array);
    for o in list.into_iter().flatten() {
        let Some(value) = str_of(o.get("value")) else {
            continue;
        };
        let type_id = o.get("type_id").and_then(Value::as_u64).unwrap_or(0);
        let kind = indicator_kind(type_id, value, str_of(o.get("type")));
        if seen.insert((kind.clone(), value)) {
            out.push(Indicator {
                kind,
                value: value.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn severity_ids_map_per_documented_table() {
        let sev = |id: Value, name: Value| {
            parse_severity(&json!({"severity_id": id, "severity": name})).map(|(s, _)| s)
        };
        assert_eq!(sev(json!(0), Value::Null), Ok(Severity::Informational));
        assert_eq!(sev(json!(3), Value::Null), Ok(Severity::Medium));
        assert_eq!(sev(json!(6), json!("Fatal")), Ok(Severity::Critical));
        assert_eq!(sev(json!(99), json!("HIGH")), Ok(Severity::High));
        assert!(
            sev(json!(99), json!("Urgent"))
                .unwrap_err()
                .to_string()
                .contains("`Urgent`")
        );
        assert!(
            sev(json!(7), Value::Null)
                .unwrap_err()
                .to_string()
                .contains("severity_id 7")
        );
        assert_eq!(sev(Value::Null, json!("low")), Ok(Severity::Low));
    }

    #[test]
    fn tactics_and_techniques_pick_categories() {
        assert_eq!(
            category_from_tactic("credential access"),
            Some("credential_theft")
        );
        assert_eq!(category_from_tactic("Discovery"), None);
        assert_eq!(category_from_technique("T1566.002"), Some("phishing"));
        assert_eq!(
            category_from_text("Impossible Travel Activity"),
            Some("impossible_travel")
        );
        assert_eq!(category_from_text("Anomalous token"), None);
    }

    #[test]
    fn hash_observables_are_named_by_length() {
        assert_eq!(indicator_kind(8, &"a".repeat(64), None), "sha256");
        assert_eq!(indicator_kind(8, &"a".repeat(32), None), "md5");
        assert_eq!(indicator_kind(99, "x", Some("Ja3 Hash")), "ja3_hash");
        assert_eq!(indicator_kind(0, "x", None), "other");
    }

    #[test]
    fn mass_event_is_refused_not_truncated_and_stays_fast() {
        let users: Vec<Value> = (0..=MAX_SUBJECTS)
            .map(|i| json!({"user": {"name": format!("user{i}@corp.example")}}))
            .collect();
        let doc = json!({"class_uid": 2004, "time": 1772356500000i64, "severity_id": 4,
            "finding_info": {"uid": "mass"}, "evidences": users});
        let started = std::time::Instant::now();
        let err = Ocsf.normalize(doc).unwrap_err();
        assert!(
            err.to_string().contains("more than 1000 distinct subjects"),
            "{err}"
        );
        // Quadratic merging is bounded by MAX_SUBJECTS; a debug build still does this well under 5 s.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn wrong_class_names_the_class() {
        let err = Ocsf
            .normalize(json!({"class_uid": 4001, "finding_info": {"uid": "x"}}))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ocsf: class_uid 4001 (Network Activity) is not a class deprovd reads (Security \
             Finding 2001, Detection Finding 2004, Incident Finding 2005, Authentication 3002); \
             route this source to another format"
        );
    }
}
