//! Field mappings shared by every OCSF class: source, risk and severity, ATT&CK categories,
//! subjects, host and observables.

use super::super::fields::Indicators;
use super::*;

pub(super) fn source(doc: &Value) -> Source {
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
pub(super) fn parse_risk_level(doc: &Value) -> Result<Option<Severity>, NormalizeError> {
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
pub(super) fn risk_from_name(name: &str) -> Option<Severity> {
    severity_from_name(name).or_else(|| {
        name.trim()
            .eq_ignore_ascii_case("info")
            .then_some(Severity::Informational)
    })
}

/// The `risk_level` label: the caption when given, else the caption of `risk_level_id`.
pub(super) fn risk_label(doc: &Value) -> Option<&str> {
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

/// Returns the severity and the raw `severity_id` (if any) for `severity_score`.
pub(super) fn parse_severity(doc: &Value) -> Result<(Severity, Option<u64>), NormalizeError> {
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
pub(super) struct Attacks<'a> {
    pub(super) tactics: BTreeSet<&'a str>,
    pub(super) techniques: BTreeSet<&'a str>,
}

pub(super) fn attacks<'a>(lists: impl Iterator<Item = Option<&'a Value>>) -> Attacks<'a> {
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
pub(super) fn subjects(doc: &Value, vendor: &str) -> Result<Vec<Subject>, NormalizeError> {
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
        push_subject(&mut out, user_subject(user, vendor)).map_err(invalid)?;
    }
    Ok(out)
}

/// OCSF User object (or a user-typed resource) → subject; `None` when it names no account.
pub(super) fn user_subject(user: &Value, vendor: &str) -> Option<Subject> {
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
        s.kind = crate::alert::SubjectKind::ServiceAccount;
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
pub(super) fn account_system(type_id: u64) -> Option<&'static str> {
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

pub(super) fn host(device: Option<&Value>) -> Option<Host> {
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

pub(super) fn indicators(observables: Option<&Value>) -> Vec<Indicator> {
    let mut out = Indicators::default();
    let list = observables.and_then(Value::as_array);
    for o in list.into_iter().flatten() {
        let Some(value) = str_of(o.get("value")) else {
            continue;
        };
        let type_id = o.get("type_id").and_then(Value::as_u64).unwrap_or(0);
        let kind = indicator_kind(type_id, value, str_of(o.get("type")));
        out.push(&kind, Some(value));
    }
    out.into_vec()
}
