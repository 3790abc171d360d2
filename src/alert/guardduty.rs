//! `guardduty`: AWS GuardDuty findings, as EventBridge delivers them
//! (`{"detail-type": "GuardDuty Finding", "source": "aws.guardduty", "detail": {finding}}`) and bare
//! (the finding itself, as `GetFindings`, the S3 export and Security Hub's copy carry it).
//!
//! Mapping (full tables in `docs/alert-model.md`):
//! - `id` ← the finding's `id`; `time` ← its `createdAt`, else `updatedAt`, else the envelope `time`
//!   (RFC 3339), else the time of receipt (noted). GuardDuty re-sends an updated finding under the
//!   same id, so redeliveries dedupe.
//! - `severity` ← the finding's `severity` (number): < 4 low, < 7 medium, < 9 high, ≥ 9 critical
//!   (AWS's documented bands; 9.0–10.0 "Critical" is used by Extended Threat Detection attack
//!   sequences). The number is kept in `severity_score`. A severity name (`HIGH`) is read as one; a
//!   number above 10 is read as a 0–100 score, noted; none readable is the default, noted.
//! - `category` ← the threat purpose, the part of `type` before `:` (table in the docs).
//! - `subjects` ← `resource.accessKeyDetails`: `userType` `IAMUser` → user with `username`
//!   and `ids.aws` = the IAM user name (what IAM actions take); any other `userType` (`AssumedRole`,
//!   `Root`, `FederatedUser`, `AWSService`) → `service_account` keyed the same way. An
//!   `AssumedRole` whose session name (after `:` in `principalId`) is an email (IAM Identity
//!   Center / SSO sessions) also names that person as a user subject.
//! - A finding whose type names an IAM principal (`…:IAMUser/…`) but carries no user name is taken
//!   as notify-only with a `no_subject` problem.
//! - `host` ← `resource.instanceDetails` (instance id, private DNS name, private and public
//!   IPs of every interface, `platform`).
//! - `indicators` ← access key id (`aws_access_key`), remote IPs of `service.action`
//!   (`ip`), DNS request domain (`domain`).
use serde_json::Value;

use super::fields::{
    Indicators, TimeUnit, default_severity, echo, id_or_derived, ident, merge_subject,
    normalize_object, problem, severity_from_name, str_of, time_or_receipt,
};
use super::{
    Alert, AlertProblem, Host, Indicator, NormalizeError, Normalizer, ProblemKind, Severity,
    Source, Subject, SubjectKind,
};

const FORMAT: &str = "guardduty";
const DETAIL_TYPE: &str = "GuardDuty Finding";

/// GuardDuty finding (EventBridge envelope or bare) normalizer.
pub(crate) struct GuardDuty;

/// Whether `doc` is a bare finding: a GuardDuty ARN, or `service.serviceName` `guardduty`, beside a
/// finding `type`.
fn is_bare_finding(doc: &Value) -> bool {
    let arn = doc
        .get("arn")
        .and_then(Value::as_str)
        .is_some_and(|a| a.starts_with("arn:") && a.contains(":guardduty:"));
    let service = doc.pointer("/service/serviceName").and_then(Value::as_str) == Some("guardduty");
    (arn || service) && doc.get("type").is_some_and(Value::is_string)
}

impl Normalizer for GuardDuty {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        // Any EventBridge event from GuardDuty is claimed: one that is not a finding (a malware
        // scan result) is then refused by name rather than misread by another format.
        doc.get("detail-type").and_then(Value::as_str) == Some(DETAIL_TYPE)
            || (doc.get("source").and_then(Value::as_str) == Some("aws.guardduty")
                && doc.get("detail-type").is_some_and(Value::is_string))
            || is_bare_finding(doc)
    }

    fn normalize(&self, doc: Value) -> Result<Alert, NormalizeError> {
        normalize_object(
            FORMAT,
            "a GuardDuty finding or its EventBridge event",
            doc,
            build,
        )
    }
}

fn invalid(reason: impl std::fmt::Display) -> NormalizeError {
    NormalizeError::invalid(FORMAT, reason)
}

/// GuardDuty's number (0–10), a name, or a number on a 0–100 scale; see the module docs.
fn finding_severity(v: Option<&Value>, notes: &mut Vec<AlertProblem>) -> (Severity, Option<f64>) {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return (default_severity("severity is missing", notes), None);
    };
    let text = v.as_str().map(str::trim);
    let score = v
        .as_f64()
        .or_else(|| text.and_then(|s| s.parse::<f64>().ok()))
        .filter(|f| f.is_finite());
    match (score, text.and_then(severity_from_name)) {
        (Some(s), _) if (0.0..=10.0).contains(&s) => {
            (severity_from_score(s).expect("in range"), Some(s))
        }
        (Some(s), _) if (10.0..=100.0).contains(&s) => {
            let sev = severity_from_score(s / 10.0).expect("in range");
            notes.push(problem(
                ProblemKind::SeverityOutOfRange,
                format!(
                    "severity {s} is outside GuardDuty's 0–10; read as a 0–100 score ({})",
                    sev.as_str()
                ),
            ));
            (sev, Some(s))
        }
        (_, Some(sev)) => (sev, None),
        (Some(s), None) => (
            default_severity(format!("severity {s} is outside GuardDuty's 0–10"), notes),
            Some(s),
        ),
        (None, None) => (
            default_severity(format!("severity `{}` is not a number", echo(v)), notes),
            None,
        ),
    }
}

fn build(doc: &Value) -> Result<Alert, NormalizeError> {
    let (detail, prefix) = match str_of(doc.get("detail-type")) {
        Some(DETAIL_TYPE) => (
            doc.get("detail")
                .filter(|d| d.is_object())
                .ok_or_else(|| invalid("detail is missing or not an object (the finding)"))?,
            "detail.",
        ),
        Some(other) => {
            return Err(invalid(format!(
                "detail-type `{}` is not `{DETAIL_TYPE}`; route this source to another format",
                echo(other)
            )));
        }
        None if is_bare_finding(doc) => (doc, ""),
        None => {
            return Err(invalid(format!(
                "detail-type is missing (expected `{DETAIL_TYPE}` from an EventBridge rule) and \
                 this is not a bare finding (no GuardDuty `arn` and `type`)"
            )));
        }
    };
    let mut notes = Vec::new();
    let id_field = format!("{prefix}id");
    let id = id_or_derived(str_of(detail.get("id")), &id_field, detail, &mut notes);
    let created = format!("{prefix}createdAt");
    let updated = format!("{prefix}updatedAt");
    let time = time_or_receipt(
        &[
            (created.as_str(), detail.get("createdAt")),
            (updated.as_str(), detail.get("updatedAt")),
            ("time", doc.get("time").filter(|_| !prefix.is_empty())),
        ],
        TimeUnit::Rfc3339,
        &mut notes,
    );
    let finding_type = str_of(detail.get("type")).ok_or_else(|| {
        invalid(format!(
            "{prefix}type is missing (e.g. `UnauthorizedAccess:IAMUser/…`)"
        ))
    })?;
    let (severity, score) = finding_severity(detail.get("severity"), &mut notes);

    let resource = detail.get("resource");
    let key = resource.and_then(|r| r.get("accessKeyDetails"));
    let subjects = subjects(key);
    let (purpose, resource_kind) = split_type(finding_type);
    if subjects.is_empty() && resource_kind == Some("IAMUser") {
        notes.push(problem(
            ProblemKind::NoSubject,
            format!(
                "{prefix}type `{}` is about an IAM principal but \
                 {prefix}resource.accessKeyDetails.userName is missing; notify-only",
                echo(finding_type)
            ),
        ));
    }

    let source = Source::of("aws", "guardduty", FORMAT);
    let mut alert = Alert::new(source, id, time, severity, notes);
    alert.severity_score = score;
    alert.category = category(purpose, finding_type).to_string();
    alert.add_label("guardduty_type", Some(finding_type));
    for (label, v) in [
        (
            "aws_account",
            detail.get("accountId").or(doc.get("account")),
        ),
        ("aws_region", detail.get("region").or(doc.get("region"))),
        (
            "aws_resource_type",
            resource.and_then(|r| r.get("resourceType")),
        ),
        ("aws_principal_id", key.and_then(|k| k.get("principalId"))),
        ("aws_user_type", key.and_then(|k| k.get("userType"))),
    ] {
        alert.add_label(label, str_of(v));
    }
    alert.title = str_of(detail.get("title"))
        .unwrap_or(finding_type)
        .to_string();
    alert.subjects = subjects;
    alert.set_host(host(resource.and_then(|r| r.get("instanceDetails"))));
    alert.indicators = indicators(key, detail.pointer("/service/action"));
    Ok(alert)
}

/// GuardDuty's documented bands (Low 1.0–3.9, Medium 4.0–6.9, High 7.0–8.9, Critical 9.0–10.0).
fn severity_from_score(score: f64) -> Option<Severity> {
    match score {
        s if !(0.0..=10.0).contains(&s) => None,
        s if s < 4.0 => Some(Severity::Low),
        s if s < 7.0 => Some(Severity::Medium),
        s if s < 9.0 => Some(Severity::High),
        _ => Some(Severity::Critical),
    }
}

/// `ThreatPurpose:ResourceTypeAffected/ThreatFamilyName.DetectionMechanism!Artifact` → (purpose,
/// resource type).
fn split_type(t: &str) -> (&str, Option<&str>) {
    match t.split_once(':') {
        Some((purpose, rest)) => (purpose, rest.split('/').next()),
        None => (t, None),
    }
}

/// The category of a finding type (`UnauthorizedAccess:IAMUser/ConsoleLoginSuccess.B`), for the
/// `asff` format's GuardDuty findings.
pub(super) fn category_of_type(finding_type: &str) -> &'static str {
    category(split_type(finding_type).0, finding_type)
}

/// Threat purpose → category. Credential exfiltration from an instance is credential theft whatever
/// its purpose prefix says.
fn category(purpose: &str, finding_type: &str) -> &'static str {
    if finding_type.contains("CredentialExfiltration") {
        return "credential_theft";
    }
    match purpose {
        "CredentialAccess" => "credential_theft",
        "UnauthorizedAccess" | "InitialAccess" => "suspicious_login",
        "Exfiltration" => "data_exfiltration",
        "PrivilegeEscalation" => "privilege_escalation",
        "Backdoor" | "Trojan" | "CryptoCurrency" | "Execution" => "malware",
        "Policy" | "Stealth" | "PenTest" => "policy_violation",
        "AttackSequence" => "account_takeover",
        _ => "other",
    }
}

fn subjects(key: Option<&Value>) -> Vec<Subject> {
    let Some(key) = key else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let user_type = str_of(key.get("userType"));
    if let Some(name) = ident(key.get("userName")) {
        let mut s = Subject {
            username: Some(name.to_string()),
            ..Subject::default()
        };
        s.ids.insert("aws".into(), name.to_string());
        if user_type != Some("IAMUser") {
            s.kind = SubjectKind::ServiceAccount;
        }
        out.push(s);
    }
    if user_type == Some("AssumedRole")
        && let Some(person) = str_of(key.get("principalId")).and_then(session_person)
    {
        merge_subject(&mut out, person);
    }
    out
}

fn host(inst: Option<&Value>) -> Host {
    let Some(inst) = inst else {
        return Host::default();
    };
    let nics = inst.get("networkInterfaces").and_then(Value::as_array);
    let mut ips = Vec::new();
    for nic in nics.into_iter().flatten() {
        let private = nic.get("privateIpAddresses").and_then(Value::as_array);
        let candidates = [nic.get("privateIpAddress"), nic.get("publicIp")]
            .into_iter()
            .chain(
                private
                    .into_iter()
                    .flatten()
                    .map(|p| p.get("privateIpAddress")),
            );
        for ip in candidates.filter_map(str_of) {
            if !ips.iter().any(|i| i == ip) {
                ips.push(ip.to_string());
            }
        }
    }
    let hostname = nics
        .into_iter()
        .flatten()
        .find_map(|n| str_of(n.get("privateDnsName")))
        .map(str::to_string);
    Host {
        hostname,
        id: str_of(inst.get("instanceId")).map(str::to_string),
        ips,
        os: str_of(inst.get("platform")).map(str::to_string),
    }
}

fn indicators(key: Option<&Value>, action: Option<&Value>) -> Vec<Indicator> {
    let mut out = Indicators::default();
    let mut push = |kind: &str, value: &str| out.push(kind, Some(value));
    if let Some(k) = str_of(key.and_then(|k| k.get("accessKeyId"))) {
        push("aws_access_key", k);
    }
    let Some(action) = action else {
        return out.into_vec();
    };
    for sub in [
        "awsApiCallAction",
        "networkConnectionAction",
        "kubernetesApiCallAction",
        "rdsLoginAttemptAction",
    ] {
        if let Some(ip) = str_of(action.pointer(&format!("/{sub}/remoteIpDetails/ipAddressV4"))) {
            push("ip", ip);
        }
    }
    let probes = action
        .pointer("/portProbeAction/portProbeDetails")
        .and_then(Value::as_array);
    for p in probes.into_iter().flatten() {
        if let Some(ip) = str_of(p.pointer("/remoteIpDetails/ipAddressV4")) {
            push("ip", ip);
        }
    }
    if let Some(d) = str_of(action.pointer("/dnsRequestAction/domain")) {
        push("domain", d);
    }
    out.into_vec()
}

/// The person behind an assumed-role session: an AWS principal id `ROLEID:session-name` whose
/// session name is an email address (SSO and federated sessions name themselves so).
pub(super) fn session_person(principal_id: &str) -> Option<Subject> {
    let (_, session) = principal_id.split_once(':')?;
    let session = session.trim();
    (session.contains('@') && !session.contains('\\')).then(|| Subject {
        email: Some(session.to_string()),
        ..Subject::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_bands_follow_aws() {
        assert_eq!(severity_from_score(1.0), Some(Severity::Low));
        assert_eq!(severity_from_score(3.9), Some(Severity::Low));
        assert_eq!(severity_from_score(4.0), Some(Severity::Medium));
        assert_eq!(severity_from_score(7.0), Some(Severity::High));
        assert_eq!(severity_from_score(8.9), Some(Severity::High));
        assert_eq!(severity_from_score(9.0), Some(Severity::Critical));
        assert_eq!(severity_from_score(10.5), None);
        assert_eq!(severity_from_score(-1.0), None);
    }

    #[test]
    fn finding_types_split_and_categorize() {
        let t = "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS";
        let (purpose, kind) = split_type(t);
        assert_eq!((purpose, kind), ("UnauthorizedAccess", Some("IAMUser")));
        assert_eq!(category(purpose, t), "credential_theft");
        let t = "Recon:EC2/PortProbeUnprotectedPort";
        assert_eq!(category(split_type(t).0, t), "other");
    }
}
