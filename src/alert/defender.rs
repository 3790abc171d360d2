//! `defender`: Microsoft Graph security `alert` (v2), as Defender XDR and Sentinel emit it.
//!
//! Detection: `@odata.type` is `#microsoft.graph.security.alert`, or the object has both
//! `providerAlertId` and an `evidence` array (webhooks and exports often drop the OData annotation).
//! Subjects come from `evidence[]`: `userEvidence.userAccount` and `mailboxEvidence` (primary address
//! plus its `userAccount`). Alerts from identity products (Entra ID Protection, Defender for
//! Identity) are about an account by definition, so one without any user evidence is dead-lettered;
//! endpoint, mail and cloud-app alerts without a user are kept as notify-only.
//! Full mapping tables: `docs/alert-model.md`.

use serde_json::Value;

use super::fields::{
    TimeUnit, default_severity, echo, id_or_derived, ident, normalize_object, problem,
    push_indicator, push_subject, severity_from_name, str_of, subject_from_name, time_or_receipt,
};
use super::ocsf::{category_from_technique, category_from_text};
use super::{
    Alert, AlertProblem, Host, Indicator, NormalizeError, Normalizer, ProblemKind, Severity,
    Source, Subject,
};

const FORMAT: &str = "defender";
const ODATA_ALERT: &str = "#microsoft.graph.security.alert";
/// `serviceSource` values whose alerts are always about an account.
const IDENTITY_SOURCES: &[&str] = &["azureAdIdentityProtection", "microsoftDefenderForIdentity"];

/// Microsoft Graph security alert v2 normalizer.
pub(crate) struct Defender;

impl Normalizer for Defender {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        doc.get("@odata.type").and_then(Value::as_str) == Some(ODATA_ALERT)
            || (doc.get("providerAlertId").is_some()
                && doc.get("evidence").is_some_and(Value::is_array))
    }

    fn normalize(&self, doc: Value) -> Result<Alert, NormalizeError> {
        normalize_object(FORMAT, "a Graph security alert v2", doc, build)
    }
}

fn invalid(reason: impl std::fmt::Display) -> NormalizeError {
    NormalizeError::invalid(FORMAT, reason)
}

/// Graph `alertSeverity`: `unknown` / `unknownFutureValue` never escalate (policies can still read
/// `raw.severity`).
/// A severity Graph does not define (missing, not a string, another word) is the documented
/// default, noted.
fn parse_severity(v: Option<&Value>, notes: &mut Vec<AlertProblem>) -> Severity {
    let name = match v {
        None | Some(Value::Null) => return default_severity("severity is missing", notes),
        Some(v) => match str_of(Some(v)) {
            Some(name) => name,
            None => {
                return default_severity(format!("severity `{}` is not a string", echo(v)), notes);
            }
        },
    };
    if name.eq_ignore_ascii_case("unknown") || name.eq_ignore_ascii_case("unknownFutureValue") {
        return Severity::Informational;
    }
    severity_from_name(name).unwrap_or_else(|| {
        let why = format!(
            "severity `{}` is not a Graph alert severity (informational, low, medium, high, \
             unknown)",
            echo(name)
        );
        default_severity(why, notes)
    })
}

/// Graph `category` (ATT&CK tactic in CamelCase, or a Defender family) → vocabulary.
pub(crate) fn category_from_graph(category: &str) -> Option<&'static str> {
    let c = category.trim().to_ascii_lowercase();
    Some(match c.as_str() {
        "credentialaccess" | "credential access" => "credential_theft",
        "initialaccess" | "initial access" => "suspicious_login",
        "privilegeescalation" | "privilege escalation" => "privilege_escalation",
        "exfiltration" | "collection" => "data_exfiltration",
        "execution"
        | "commandandcontrol"
        | "command and control"
        | "impact"
        | "malware"
        | "ransomware"
        | "unwantedsoftware" => "malware",
        "phishing" => "phishing",
        _ => return None,
    })
}

/// `serviceSource` → lower-case product name.
fn product(service_source: Option<&str>) -> String {
    match service_source {
        None => "defender xdr".into(),
        Some("microsoftDefenderForEndpoint") => "defender for endpoint".into(),
        Some("microsoftDefenderForIdentity") => "defender for identity".into(),
        Some("microsoftDefenderForOffice365") => "defender for office 365".into(),
        Some("microsoftDefenderForCloudApps") => "defender for cloud apps".into(),
        Some("microsoftDefenderForCloud") => "defender for cloud".into(),
        Some("azureAdIdentityProtection") => "entra id protection".into(),
        Some("microsoftSentinel") => "sentinel".into(),
        Some("microsoft365Defender") | Some("microsoftDefenderXdr") => "defender xdr".into(),
        Some(other) => other.to_ascii_lowercase(),
    }
}

/// Graph `userAccount` → subject. The UPN is the email (that is how Entra keys it);
/// `accountName` + `domainName` is the down-level login.
pub(crate) fn user_account(u: &Value) -> Option<Subject> {
    if !u.is_object() {
        return None;
    }
    let mut s = ident(u.get("accountName"))
        .and_then(subject_from_name)
        .unwrap_or_default();
    if let Some(d) = ident(u.get("domainName")) {
        s.domain.get_or_insert_with(|| d.to_string());
    }
    if let Some(upn) = ident(u.get("userPrincipalName")) {
        s.email = Some(upn.to_string());
    }
    if let Some(oid) = ident(u.get("azureAdUserId")) {
        s.ids.insert("entra".into(), oid.to_string());
    }
    if let Some(sid) = ident(u.get("userSid")) {
        s.ids.insert("windows".into(), sid.to_string());
    }
    s.display_name = ident(u.get("displayName")).map(str::to_string);
    Some(s)
}

/// The evidence kind without the OData namespace (`userEvidence`).
fn evidence_kind(e: &Value) -> &str {
    e.get("@odata.type")
        .and_then(Value::as_str)
        .map(|t| t.rsplit('.').next().unwrap_or(t))
        .unwrap_or("")
}

fn build(doc: &Value) -> Result<Alert, NormalizeError> {
    let get = |k: &str| str_of(doc.get(k));
    let mut notes = Vec::new();
    let id = id_or_derived(get("id"), "id", doc, &mut notes);
    let time = time_or_receipt(
        &[
            ("createdDateTime", doc.get("createdDateTime")),
            ("firstActivityDateTime", doc.get("firstActivityDateTime")),
        ],
        TimeUnit::Rfc3339,
        &mut notes,
    );
    let severity = parse_severity(doc.get("severity"), &mut notes);

    let techniques: Vec<&str> = doc
        .get("mitreTechniques")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|t| str_of(Some(t))).collect())
        .unwrap_or_default();
    let title = get("title").unwrap_or_default().to_string();
    let category = category_from_text(&title)
        .or_else(|| techniques.iter().find_map(|t| category_from_technique(t)))
        .or_else(|| get("category").and_then(category_from_graph))
        .unwrap_or("other")
        .to_string();

    let mut subjects = Vec::new();
    let mut host = Host::default();
    let mut indicators: Vec<Indicator> = Vec::new();
    let evidence = doc.get("evidence").and_then(Value::as_array);
    for e in evidence.into_iter().flatten() {
        let add = |list: &mut Vec<Subject>, s| push_subject(list, s).map_err(invalid);
        match evidence_kind(e) {
            "userEvidence" => add(&mut subjects, e.get("userAccount").and_then(user_account))?,
            "mailboxEvidence" => {
                let mut s = e
                    .get("userAccount")
                    .and_then(user_account)
                    .unwrap_or_default();
                if let Some(addr) = str_of(e.get("primaryAddress")) {
                    // The mailbox address may differ from the UPN; the UPN stays the email.
                    match &s.email {
                        Some(upn) if !upn.eq_ignore_ascii_case(addr) => {
                            push_indicator(&mut indicators, "email", Some(addr));
                        }
                        _ => s.email = Some(addr.to_string()),
                    }
                }
                if s.display_name.is_none() {
                    s.display_name = str_of(e.get("displayName")).map(str::to_string);
                }
                add(&mut subjects, Some(s))?;
            }
            "deviceEvidence" if host == Host::default() => {
                host = Host {
                    hostname: str_of(e.get("deviceDnsName")).map(str::to_string),
                    id: str_of(e.get("mdeDeviceId"))
                        .or_else(|| str_of(e.get("azureAdDeviceId")))
                        .map(str::to_string),
                    ips: e
                        .get("ipInterfaces")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|i| str_of(Some(i)).map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    os: str_of(e.get("osPlatform")).map(str::to_string),
                };
            }
            "ipEvidence" => push_indicator(&mut indicators, "ip", str_of(e.get("ipAddress"))),
            "urlEvidence" => push_indicator(&mut indicators, "url", str_of(e.get("url"))),
            "fileEvidence" => {
                let f = e.get("fileDetails");
                for kind in ["sha256", "sha1"] {
                    push_indicator(&mut indicators, kind, str_of(f.and_then(|f| f.get(kind))));
                }
            }
            "processEvidence" => {
                let sha256 = e.pointer("/imageFile/sha256");
                push_indicator(&mut indicators, "sha256", str_of(sha256));
                let command_line = str_of(e.get("processCommandLine"));
                push_indicator(&mut indicators, "command_line", command_line);
            }
            "analyzedMessageEvidence" => {
                push_indicator(&mut indicators, "ip", str_of(e.get("senderIp")));
                push_indicator(
                    &mut indicators,
                    "email",
                    str_of(e.pointer("/p1Sender/emailAddress")),
                );
            }
            _ => {}
        }
    }
    let service_source = get("serviceSource");
    if subjects.is_empty() && service_source.is_some_and(|s| IDENTITY_SOURCES.contains(&s)) {
        notes.push(problem(
            ProblemKind::NoSubject,
            format!(
                "alert {} from identity source `{}` names no account (no userEvidence or \
                 mailboxEvidence with accountName, userPrincipalName, azureAdUserId, userSid or \
                 primaryAddress); notify-only",
                echo(&id),
                service_source.unwrap_or_default()
            ),
        ));
    }

    let source = Source::of("microsoft", &product(service_source), FORMAT);
    let mut alert = Alert::new(source, id, time, severity, notes).described(category, title);
    alert.subjects = subjects;
    alert.set_host(host);
    alert.indicators = indicators;
    alert.add_label("provider_alert_id", get("providerAlertId"));
    alert.add_label("incident_id", get("incidentId"));
    alert.add_label("service_source", service_source);
    alert.add_label("detection_source", get("detectionSource"));
    alert.add_label("vendor_category", get("category"));
    alert.add_label("status", get("status"));
    alert.add_label("alert_url", get("alertWebUrl"));
    alert.add_list_label("mitre_techniques", techniques);
    Ok(alert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_by_odata_type_or_provider_id_with_evidence() {
        assert!(Defender.detect(&json!({"@odata.type": ODATA_ALERT})));
        assert!(Defender.detect(&json!({"providerAlertId": "x", "evidence": []})));
        assert!(!Defender.detect(&json!({"providerAlertId": "x"})));
        assert!(!Defender.detect(&json!({"id": "x", "severity": "high"})));
    }

    #[test]
    fn graph_categories_map_onto_the_vocabulary() {
        assert_eq!(
            category_from_graph("CredentialAccess"),
            Some("credential_theft")
        );
        assert_eq!(
            category_from_graph("InitialAccess"),
            Some("suspicious_login")
        );
        assert_eq!(category_from_graph("Ransomware"), Some("malware"));
        assert_eq!(category_from_graph("DefenseEvasion"), None);
    }
}
