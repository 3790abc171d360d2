//! `sentinel`: a Microsoft Sentinel incident as posted by an automation rule / Logic App webhook.
//!
//! The body is the incident trigger's envelope `{objectSchemaType: "Incident", object: {name, id,
//! properties: {…}}}`; a bare incident resource (`{name, properties: {incidentNumber, …}}`) is
//! accepted too, because Logic Apps often post `triggerBody()?['object']`. Accounts come from
//! `properties.relatedEntities[]` of kind `Account` (and `Mailbox`). Incidents raised by identity
//! products (Entra ID Protection, Defender for Identity) are about an account, so one without any
//! account entity is dead-lettered. Full mapping tables: `docs/alert-model.md`.

use serde_json::Value;

use super::defender::category_from_graph;
use super::fields::{
    TimeUnit, default_severity, echo, id_or_derived, ident, normalize_object, severity_from_name,
    str_of, subject_from_name, time_or_receipt,
};
use super::ocsf::{category_from_technique, category_from_text};
use super::{Alert, Host, NormalizeError, Normalizer, ProblemKind, Source, Subject};

const FORMAT: &str = "sentinel";
/// `additionalData.alertProductNames[]` values whose incidents are always about an account.
const IDENTITY_PRODUCTS: &[&str] = &[
    "Azure Active Directory Identity Protection",
    "Microsoft Entra ID Protection",
    "Azure Advanced Threat Protection",
    "Microsoft Defender for Identity",
];

/// Microsoft Sentinel incident (automation rule / Logic App webhook) normalizer.
pub(crate) struct Sentinel;

/// The incident resource (`{name, id, properties}`) inside the envelope, or the document itself.
fn incident(doc: &Value) -> Option<&Value> {
    let props = |v: &Value| {
        v.get("properties")
            .is_some_and(|p| p.get("incidentNumber").is_some())
    };
    match doc.get("object") {
        Some(o) if props(o) => Some(o),
        _ if props(doc) => Some(doc),
        _ => None,
    }
}

impl Normalizer for Sentinel {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        doc.get("objectSchemaType").and_then(Value::as_str) == Some("Incident")
            || incident(doc).is_some()
    }

    fn normalize(&self, doc: Value) -> Result<Alert, NormalizeError> {
        normalize_object(FORMAT, "a Sentinel incident webhook", doc, |doc| {
            let inc = incident(doc).ok_or_else(|| {
                invalid(
                    "no incident: neither object.properties.incidentNumber nor \
                     properties.incidentNumber is present",
                )
            })?;
            build(inc)
        })
    }
}

fn invalid(reason: impl std::fmt::Display) -> NormalizeError {
    NormalizeError::invalid(FORMAT, reason)
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|t| str_of(Some(t))).collect())
        .unwrap_or_default()
}

/// Sentinel Account / Mailbox entity properties → subject.
fn account_entity(p: &Value) -> Subject {
    let get = |k: &str| ident(p.get(k));
    let mut s = get("accountName")
        .and_then(subject_from_name)
        .unwrap_or_default();
    if let Some(d) = get("ntDomain") {
        s.domain.get_or_insert_with(|| d.to_string());
    }
    let upn = get("upn")
        .or_else(|| get("userPrincipalName"))
        .map(str::to_string)
        .or_else(|| match (&s.username, get("upnSuffix")) {
            (Some(u), Some(suffix)) => Some(format!("{u}@{suffix}")),
            _ => None,
        })
        .or_else(|| get("mailboxPrimaryAddress").map(str::to_string));
    if upn.is_some() {
        s.email = upn;
    }
    if let Some(oid) = get("aadUserId") {
        s.ids.insert("entra".into(), oid.to_string());
    }
    if let Some(sid) = get("sid") {
        s.ids.insert("windows".into(), sid.to_string());
    }
    s.display_name = get("displayName").map(str::to_string);
    s
}

fn build(inc: &Value) -> Result<Alert, NormalizeError> {
    let p = &inc["properties"];
    let get = |k: &str| str_of(p.get(k));
    let number = p
        .get("incidentNumber")
        .filter(|n| !n.is_null())
        .map(|n| match n {
            Value::String(s) => s.trim().to_string(),
            other => other.to_string(),
        });
    let mut notes = Vec::new();
    let vendor_id = str_of(inc.get("name"))
        .map(str::to_string)
        .or_else(|| str_of(inc.get("id")).and_then(|i| i.rsplit('/').next().map(str::to_string)))
        .or_else(|| get("providerIncidentId").map(str::to_string))
        .or_else(|| number.clone().map(|n| format!("incident:{n}")))
        .filter(|i| !i.is_empty());
    let id = id_or_derived(
        vendor_id.as_deref(),
        "object.name, object.id and properties.incidentNumber",
        inc,
        &mut notes,
    );
    let time = time_or_receipt(
        &[
            ("properties.createdTimeUtc", p.get("createdTimeUtc")),
            (
                "properties.firstActivityTimeUtc",
                p.get("firstActivityTimeUtc"),
            ),
        ],
        TimeUnit::Rfc3339,
        &mut notes,
    );
    let severity = match get("severity") {
        Some(n) => severity_from_name(n).unwrap_or_else(|| {
            let why = format!(
                "properties.severity `{}` is not a Sentinel severity (Informational, Low, Medium, \
                 High)",
                echo(n)
            );
            default_severity(why, &mut notes)
        }),
        None => default_severity("properties.severity is missing", &mut notes),
    };

    let extra = p.get("additionalData");
    let tactics = strings(extra.and_then(|a| a.get("tactics")));
    let techniques = strings(extra.and_then(|a| a.get("techniques")));
    let products = strings(extra.and_then(|a| a.get("alertProductNames")));
    let title = get("title").unwrap_or_default().to_string();
    let category = category_from_text(&title)
        .or_else(|| techniques.iter().find_map(|t| category_from_technique(t)))
        .or_else(|| tactics.iter().find_map(|t| category_from_graph(t)))
        .unwrap_or("other")
        .to_string();

    let source = Source::of("microsoft", "sentinel", FORMAT);
    let mut alert = Alert::new(source, id, time, severity, notes).described(category, title);
    let mut host = Host::default();
    let entities = p.get("relatedEntities").and_then(Value::as_array);
    for e in entities.into_iter().flatten() {
        let ep = e.get("properties").unwrap_or(&Value::Null);
        let eget = |k: &str| str_of(ep.get(k));
        let kind = str_of(e.get("kind")).unwrap_or("").to_ascii_lowercase();
        match kind.as_str() {
            "account" | "mailbox" => {
                alert
                    .add_subject(Some(account_entity(ep)))
                    .map_err(invalid)?;
            }
            "host" if host == Host::default() => {
                host = Host {
                    hostname: eget("hostName").map(|h| match eget("dnsDomain") {
                        Some(d) if !h.contains('.') => format!("{h}.{d}"),
                        _ => h.to_string(),
                    }),
                    id: eget("azureID")
                        .or_else(|| eget("omsAgentID"))
                        .map(str::to_string),
                    ips: Vec::new(),
                    os: eget("osFamily").map(str::to_string),
                };
            }
            "ip" => alert.add_indicator("ip", eget("address")),
            "url" => alert.add_indicator("url", eget("url")),
            "dns" => alert.add_indicator("domain", eget("domainName")),
            "filehash" => {
                let alg = eget("algorithm").map(str::to_ascii_lowercase);
                alert.add_indicator(alg.as_deref().unwrap_or("hash"), eget("hashValue"));
            }
            _ => {}
        }
    }
    alert.set_host(host);
    if alert.subjects.is_empty() {
        if let Some(product) = products.iter().find(|p| IDENTITY_PRODUCTS.contains(p)) {
            let detail = format!(
                "incident {} from `{product}` names no account (no relatedEntities of kind \
                 Account or Mailbox with accountName, upn, aadUserId or sid); notify-only",
                number
                    .as_deref()
                    .map(echo)
                    .unwrap_or_else(|| echo(&alert.id)),
            );
            alert.note(ProblemKind::NoSubject, detail);
        }
    }

    alert.add_label("incident_number", number.as_deref());
    alert.add_label("status", get("status"));
    alert.add_label("incident_url", get("incidentUrl"));
    alert.add_label("provider_name", get("providerName"));
    alert.add_list_label("mitre_tactics", tactics);
    alert.add_list_label("mitre_techniques", techniques);
    alert.add_list_label("alert_products", products);
    Ok(alert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_envelope_and_bare_incident_but_not_graph_alerts() {
        assert!(Sentinel.detect(&json!({"objectSchemaType": "Incident", "object": {}})));
        assert!(Sentinel.detect(&json!({"name": "g", "properties": {"incidentNumber": 1}})));
        assert!(!Sentinel.detect(&json!({"properties": {"title": "x"}})));
        assert!(!Sentinel.detect(&json!({"id": "x", "severity": "high"})));
    }

    #[test]
    fn account_with_upn_suffix_becomes_an_email() {
        let s = account_entity(&json!({"accountName": "jdoe", "upnSuffix": "corp.example",
            "ntDomain": "CORP"}));
        assert_eq!(s.email.as_deref(), Some("jdoe@corp.example"));
        assert_eq!(s.domain.as_deref(), Some("CORP"));
        assert_eq!(s.username.as_deref(), Some("jdoe"));
    }
}
