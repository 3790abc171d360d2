//! `guardduty`: AWS GuardDuty findings as EventBridge delivers them
//! (`{"detail-type": "GuardDuty Finding", "source": "aws.guardduty", "detail": {finding}}`).
//!
//! Mapping (full tables in `docs/alert-model.md`):
//! - `id` ← `detail.id`; `time` ← `detail.createdAt`, else the envelope `time` (RFC 3339).
//!   GuardDuty re-sends an updated finding under the same id, so redeliveries dedupe.
//! - `severity` ← `detail.severity` (number): < 4 low, < 7 medium, < 9 high, ≥ 9 critical (AWS's
//!   documented bands; 9.0–10.0 "Critical" is used by Extended Threat Detection attack sequences).
//!   The number is kept in `severity_score`. Outside 0–10, missing or not a number → error.
//! - `category` ← the threat purpose, the part of `detail.type` before `:` (table in the docs).
//! - `subjects` ← `detail.resource.accessKeyDetails`: `userType` `IAMUser` → user with `username`
//!   and `ids.aws` = the IAM user name (what IAM actions take); any other `userType` (`AssumedRole`,
//!   `Root`, `FederatedUser`, `AWSService`) → `service_account` keyed the same way. An
//!   `AssumedRole` whose session name (after `:` in `principalId`) is an email (IAM Identity
//!   Center / SSO sessions) also names that person as a user subject.
//! - A finding whose type names an IAM principal (`…:IAMUser/…`) but carries no user name is
//!   dead-lettered: containment needs the principal.
//! - `host` ← `detail.resource.instanceDetails` (instance id, private DNS name, private and public
//!   IPs of every interface, `platform`).
//! - `indicators` ← access key id (`aws_access_key`), remote IPs of `detail.service.action`
//!   (`ip`), DNS request domain (`domain`).
use serde_json::Value;

use super::fields::{Indicators, echo, merge_subject, normalize_object, str_of, time_from_rfc3339};
use super::{
    Alert, Host, Indicator, NormalizeError, Normalizer, Severity, Source, Subject, SubjectKind,
};

const FORMAT: &str = "guardduty";
const DETAIL_TYPE: &str = "GuardDuty Finding";

/// GuardDuty finding (EventBridge envelope) normalizer.
pub struct GuardDuty;

impl Normalizer for GuardDuty {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        doc.get("detail-type").and_then(Value::as_str) == Some(DETAIL_TYPE)
    }

    fn normalize(&self, doc: Value) -> Result<Alert, NormalizeError> {
        normalize_object(FORMAT, "an EventBridge event", doc, build)
    }
}

fn invalid(reason: impl std::fmt::Display) -> NormalizeError {
    NormalizeError::invalid(FORMAT, reason)
}

fn build(doc: &Value) -> Result<Alert, NormalizeError> {
    match str_of(doc.get("detail-type")) {
        Some(DETAIL_TYPE) => {}
        Some(other) => {
            return Err(invalid(format!(
                "detail-type `{}` is not `{DETAIL_TYPE}`; route this source to another format",
                echo(other)
            )));
        }
        None => {
            return Err(invalid(format!(
                "detail-type is missing (expected `{DETAIL_TYPE}` from an EventBridge rule)"
            )));
        }
    }
    let detail = doc
        .get("detail")
        .filter(|d| d.is_object())
        .ok_or_else(|| invalid("detail is missing or not an object (the finding)"))?;
    let id = str_of(detail.get("id"))
        .ok_or_else(|| invalid("detail.id is missing"))?
        .to_string();
    let time = match (
        detail.get("createdAt").filter(|v| !v.is_null()),
        doc.get("time").filter(|v| !v.is_null()),
    ) {
        (Some(t), _) => {
            time_from_rfc3339(t).map_err(|e| invalid(format!("detail.createdAt: {e}")))?
        }
        (None, Some(t)) => time_from_rfc3339(t).map_err(|e| invalid(format!("time: {e}")))?,
        (None, None) => return Err(invalid("detail.createdAt and time are both missing")),
    };
    let finding_type = str_of(detail.get("type"))
        .ok_or_else(|| invalid("detail.type is missing (e.g. `UnauthorizedAccess:IAMUser/…`)"))?;

    let score = match detail.get("severity").filter(|v| !v.is_null()) {
        None => return Err(invalid("detail.severity is missing")),
        Some(v) => v
            .as_f64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse::<f64>().ok()))
            .filter(|f| f.is_finite())
            .ok_or_else(|| invalid(format!("detail.severity `{}` is not a number", echo(v))))?,
    };
    let severity = severity_from_score(score).ok_or_else(|| {
        invalid(format!(
            "detail.severity {score} is outside GuardDuty's 0–10 range"
        ))
    })?;

    let resource = detail.get("resource");
    let key = resource.and_then(|r| r.get("accessKeyDetails"));
    let subjects = subjects(key);
    let (purpose, resource_kind) = split_type(finding_type);
    if subjects.is_empty() && resource_kind == Some("IAMUser") {
        return Err(invalid(format!(
            "detail.type `{}` is about an IAM principal but \
             detail.resource.accessKeyDetails.userName is missing",
            echo(finding_type)
        )));
    }

    let mut alert = Alert::new(Source::of("aws", "guardduty", FORMAT), id, time, severity);
    alert.severity_score = Some(score);
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
    if let Some(name) = str_of(key.get("userName")) {
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
    if user_type == Some("AssumedRole") {
        let session = str_of(key.get("principalId"))
            .and_then(|p| p.split_once(':'))
            .map(|(_, session)| session.trim())
            .filter(|s| s.contains('@') && !s.contains('\\'));
        if let Some(email) = session {
            merge_subject(
                &mut out,
                Subject {
                    email: Some(email.to_string()),
                    ..Subject::default()
                },
            );
        }
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
