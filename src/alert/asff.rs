//! `asff`: AWS Security Hub findings in the AWS Security Finding Format (ASFF, `SchemaVersion`
//! `2018-10-08`), the shape in which Security Hub CSPM carries GuardDuty, Macie, Inspector, IAM
//! Access Analyzer and partner findings. Accepted as EventBridge delivers them
//! (`{"detail-type": "Security Hub Findings - Imported", "source": "aws.securityhub",
//! "detail": {"findings": [finding]}}`, also `… - Custom Action`), as a `GetFindings` answer
//! (`{"Findings": [...]}`) and bare. Each finding of a delivery becomes its own alert. Security Hub's
//! newer `Findings Imported V2` events carry OCSF findings in the same envelope; those are read by
//! the OCSF mapping.
//!
//! Mapping (AWS Security Hub User Guide, "AWS Security Finding Format (ASFF)" and the API
//! reference's `AwsSecurityFinding`, as published in 2025; full table in `docs/alert-model.md`):
//! - `id` ← `Id`; `time` ← `CreatedAt`, else `FirstObservedAt`, else `UpdatedAt` (RFC 3339), else
//!   the envelope `time`, else the time of receipt (noted).
//! - `severity` ← `Severity.Label` (`INFORMATIONAL` … `CRITICAL`), else
//!   `FindingProviderFields.Severity.Label`, else the deprecated `Severity.Normalized` (0–100:
//!   0 informational, 1–39 low, 40–69 medium, 70–89 high, 90–100 critical), else the default (noted).
//!   `Severity.Original` (the product's own score) is kept in `severity_score` when numeric.
//! - `category` ← for GuardDuty findings, the finding type's threat purpose exactly as the
//!   `guardduty` format reads it; otherwise the first `Types` entry's namespace/category
//!   (`TTPs/Credential Access` → `credential_theft`, …; table in the docs).
//! - `subjects` ← `Resources[]`: `AwsIamAccessKey` (`PrincipalName`, else the deprecated `UserName`;
//!   `PrincipalType` `IAMUser` → user, any other → service account), `AwsIamUser` (`UserName`, else
//!   the user name in the ARN `Id`), `AwsIamRole` → service account. An assumed-role session named
//!   by an email (IAM Identity Center) also names that person.
//! - `host` ← the first `AwsEc2Instance` resource; `indicators` ← access key ids, `Network` and
//!   `Action` remote IPs, `Network.DestinationDomain`.
use serde_json::Value;

use super::fields::{
    Indicators, TimeUnit, default_severity, echo, id_or_derived, ident, merge_subject,
    normalize_object, problem, severity_from_name, str_of, time_or_receipt,
};
use super::{
    Alert, AlertProblem, Host, Indicator, NormalizeError, Normalizer, Part, ProblemKind, Severity,
    Source, Subject, SubjectKind,
};

const FORMAT: &str = "asff";
/// The EventBridge detail types that carry findings.
const DETAIL_TYPES: &[&str] = &[
    "Security Hub Findings - Imported",
    "Security Hub Findings - Custom Action",
    "Findings Imported V2",
];

/// AWS Security Hub (ASFF) normalizer.
pub(crate) struct Asff;

/// A bare ASFF finding: `SchemaVersion` beside `ProductArn` (both required by ASFF).
fn is_finding(doc: &Value) -> bool {
    doc.get("SchemaVersion").is_some_and(Value::is_string)
        && doc.get("ProductArn").is_some_and(Value::is_string)
}

/// Where a delivery keeps its findings: the EventBridge envelope's `detail.findings`, or a
/// `GetFindings` answer's `Findings`.
fn findings_path(doc: &Value) -> Option<(&'static str, &'static str)> {
    if doc.get("source").and_then(Value::as_str) == Some("aws.securityhub")
        && doc.pointer("/detail/findings").is_some()
    {
        Some(("/detail/findings", "detail.findings"))
    } else if doc.get("Findings").is_some_and(Value::is_array) {
        Some(("/Findings", "Findings"))
    } else {
        None
    }
}

impl Normalizer for Asff {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        is_finding(doc)
            || doc.get("source").and_then(Value::as_str) == Some("aws.securityhub")
            || doc
                .get("Findings")
                .and_then(Value::as_array)
                .and_then(|f| f.first())
                .is_some_and(is_finding)
    }

    fn split(&self, mut doc: Value) -> Result<Vec<Part>, NormalizeError> {
        let Some((pointer, at)) = findings_path(&doc) else {
            return Ok(vec![Part { at: None, doc }]);
        };
        // The envelope's time stands in for a finding without one.
        let envelope_time = doc.get("time").cloned();
        match doc.pointer_mut(pointer).map(Value::take) {
            Some(Value::Array(findings)) if findings.is_empty() => {
                Err(invalid(format!("`{at}` is empty: no finding to read")))
            }
            Some(Value::Array(findings)) => Ok(findings
                .into_iter()
                .enumerate()
                .map(|(i, mut doc)| {
                    if let (Some(t), Some(o)) = (&envelope_time, doc.as_object_mut()) {
                        o.entry("EventBridgeTime").or_insert_with(|| t.clone());
                    }
                    Part {
                        at: Some(format!("{at}[{i}]")),
                        doc,
                    }
                })
                .collect()),
            _ => Err(invalid(format!("`{at}` is not an array of findings"))),
        }
    }

    fn normalize(&self, doc: Value) -> Result<Alert, NormalizeError> {
        // `Findings Imported V2` carries OCSF findings, which the OCSF mapping reads.
        if doc.get("class_uid").is_some() {
            return super::ocsf::Ocsf.normalize(doc);
        }
        if findings_path(&doc).is_some() {
            return Err(invalid(
                "a delivery of several findings reached the one-finding reader",
            ));
        }
        if let Some(kind) = str_of(doc.get("detail-type")) {
            if !DETAIL_TYPES.contains(&kind) {
                return Err(invalid(format!(
                    "detail-type `{}` is not a Security Hub findings event; route this source \
                     to another format",
                    echo(kind)
                )));
            }
        }
        normalize_object(FORMAT, "an ASFF finding", doc, build)
    }
}

fn invalid(reason: impl std::fmt::Display) -> NormalizeError {
    NormalizeError::invalid(FORMAT, reason)
}

fn build(f: &Value) -> Result<Alert, NormalizeError> {
    let mut notes = Vec::new();
    let id = id_or_derived(str_of(f.get("Id")), "Id", f, &mut notes);
    let time = time_or_receipt(
        &[
            ("CreatedAt", f.get("CreatedAt")),
            ("FirstObservedAt", f.get("FirstObservedAt")),
            ("UpdatedAt", f.get("UpdatedAt")),
            ("time", f.get("EventBridgeTime")),
        ],
        TimeUnit::Rfc3339,
        &mut notes,
    );
    let (severity, score) = finding_severity(f, &mut notes);
    let product = product_name(f);
    let types: Vec<&str> = f
        .get("Types")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| str_of(Some(t)))
        .collect();
    let resources = f.get("Resources").and_then(Value::as_array);
    let subjects = subjects(resources.into_iter().flatten());
    let gd_type = guardduty_type(f, &types, product);
    let gd_type = gd_type.as_deref();
    if subjects.is_empty() && gd_type.is_some_and(|t| t.contains(":IAMUser/")) {
        notes.push(problem(
            ProblemKind::NoSubject,
            format!(
                "GuardDuty type `{}` is about an IAM principal but no resource names one; \
                 notify-only",
                echo(gd_type.unwrap_or_default())
            ),
        ));
    }

    let source = Source::of("aws", &product.to_ascii_lowercase(), FORMAT);
    let mut alert = Alert::new(source, id, time, severity, notes);
    alert.severity_score = score;
    alert.category = match gd_type {
        Some(t) => super::guardduty::category_of_type(t),
        None => category(types.first().copied()),
    }
    .to_string();
    alert.title = str_of(f.get("Title"))
        .or(types.first().copied())
        .unwrap_or("Security Hub finding")
        .to_string();
    alert.add_list_label("asff_types", types.iter().copied());
    for (label, v) in [
        ("aws_account", f.get("AwsAccountId")),
        ("aws_region", f.get("Region")),
        ("product_name", f.get("ProductName")),
        ("generator_id", f.get("GeneratorId")),
        ("workflow_status", f.pointer("/Workflow/Status")),
        ("record_state", f.get("RecordState")),
    ] {
        alert.add_label(label, str_of(v));
    }
    alert.add_label("guardduty_type", gd_type);
    alert.subjects = subjects;
    if let Some(host) = resources.into_iter().flatten().find_map(host) {
        alert.set_host(host);
    }
    alert.indicators = indicators(f, resources.into_iter().flatten());
    Ok(alert)
}

/// The product that raised the finding: `ProductName`, else Security Hub's product field, else the
/// product ARN's last segment (`…:product/aws/guardduty` → `guardduty`).
fn product_name(f: &Value) -> &str {
    str_of(f.get("ProductName"))
        .or_else(|| str_of(f.pointer("/ProductFields/aws~1securityhub~1ProductName")))
        .or_else(|| str_of(f.get("ProductArn")).and_then(|a| a.rsplit('/').next()))
        .unwrap_or("securityhub")
}

/// The GuardDuty finding type of a GuardDuty finding: the last segment of a `Types` entry
/// (`TTPs/Initial Access/UnauthorizedAccess:IAMUser-ConsoleLoginSuccess.B`), with GuardDuty's `/`
/// after the resource type put back where ASFF writes `-` (`/` separates ASFF's own levels).
fn guardduty_type(f: &Value, types: &[&str], product: &str) -> Option<String> {
    let is_guardduty = product.eq_ignore_ascii_case("guardduty")
        || str_of(f.get("ProductArn")).is_some_and(|a| a.ends_with("/guardduty"));
    if !is_guardduty {
        return None;
    }
    let t = types
        .iter()
        .filter_map(|t| t.rsplit('/').next())
        .find(|t| t.contains(':'))?;
    let (purpose, rest) = t.split_once(':')?;
    Some(match rest.split_once('-') {
        Some((resource, family)) => format!("{purpose}:{resource}/{family}"),
        None => t.to_string(),
    })
}

/// `Severity.Label`, the provider's label, the deprecated 0–100 `Normalized`; see the module docs.
fn finding_severity(f: &Value, notes: &mut Vec<AlertProblem>) -> (Severity, Option<f64>) {
    let sev = f.get("Severity");
    let original = sev
        .and_then(|s| s.get("Original"))
        .and_then(|o| o.as_f64().or_else(|| o.as_str()?.trim().parse().ok()))
        .filter(|s: &f64| s.is_finite());
    let label = [
        sev.and_then(|s| s.get("Label")),
        f.pointer("/FindingProviderFields/Severity/Label"),
    ]
    .into_iter()
    .find_map(|v| str_of(v).and_then(severity_from_name));
    if let Some(s) = label {
        return (s, original);
    }
    let normalized = sev
        .and_then(|s| s.get("Normalized"))
        .and_then(Value::as_f64);
    match normalized {
        Some(n) if (0.0..=100.0).contains(&n) => {
            (severity_from_normalized(n), original.or(Some(n)))
        }
        Some(n) => (
            default_severity(
                format!("Severity.Normalized {n} is outside ASFF's 0–100 and there is no Label"),
                notes,
            ),
            original,
        ),
        None => (
            default_severity("Severity.Label and Severity.Normalized are missing", notes),
            original,
        ),
    }
}

/// ASFF's documented mapping of `Normalized` to labels.
fn severity_from_normalized(n: f64) -> Severity {
    match n {
        n if n < 1.0 => Severity::Informational,
        n if n < 40.0 => Severity::Low,
        n if n < 70.0 => Severity::Medium,
        n if n < 90.0 => Severity::High,
        _ => Severity::Critical,
    }
}

/// ASFF `Types` taxonomy (`namespace/category/classifier`) → category.
fn category(first_type: Option<&str>) -> &'static str {
    let Some(t) = first_type else {
        return "other";
    };
    let mut parts = t.split('/');
    let namespace = parts.next().unwrap_or_default();
    let cat = parts.next().unwrap_or_default();
    match (namespace, cat) {
        ("TTPs", "Credential Access") => "credential_theft",
        ("TTPs", "Initial Access") => "suspicious_login",
        ("TTPs", "Privilege Escalation") => "privilege_escalation",
        ("TTPs", "Execution" | "Persistence" | "Command and Control") => "malware",
        ("Effects", "Data Exfiltration") => "data_exfiltration",
        ("Effects", "Data Exposure") => "data_exfiltration",
        ("Unusual Behaviors", "User") => "suspicious_login",
        ("Software and Configuration Checks" | "Sensitive Data Identifications", _) => {
            "policy_violation"
        }
        _ => "other",
    }
}

/// The accounts of the finding's resources; see the module docs.
fn subjects<'a>(resources: impl Iterator<Item = &'a Value>) -> Vec<Subject> {
    let mut out = Vec::new();
    for r in resources {
        let details = r.get("Details");
        match str_of(r.get("Type")) {
            Some("AwsIamAccessKey") => {
                let key = details.and_then(|d| d.get("AwsIamAccessKey"));
                let name =
                    key.and_then(|k| ident(k.get("PrincipalName")).or(ident(k.get("UserName"))));
                let kind = match key.and_then(|k| str_of(k.get("PrincipalType"))) {
                    Some("IAMUser") | None => SubjectKind::User,
                    Some(_) => SubjectKind::ServiceAccount,
                };
                if let Some(name) = name {
                    merge_subject(&mut out, aws_subject(name, kind));
                }
                if let Some(person) = key
                    .and_then(|k| str_of(k.get("PrincipalId")))
                    .and_then(super::guardduty::session_person)
                {
                    merge_subject(&mut out, person);
                }
            }
            Some("AwsIamUser") => {
                let name = details
                    .and_then(|d| ident(d.pointer("/AwsIamUser/UserName")))
                    .or_else(|| str_of(r.get("Id")).and_then(name_in_arn));
                if let Some(name) = name {
                    merge_subject(&mut out, aws_subject(name, SubjectKind::User));
                }
            }
            Some("AwsIamRole") => {
                let name = details
                    .and_then(|d| ident(d.pointer("/AwsIamRole/RoleName")))
                    .or_else(|| str_of(r.get("Id")).and_then(name_in_arn));
                if let Some(name) = name {
                    merge_subject(&mut out, aws_subject(name, SubjectKind::ServiceAccount));
                }
            }
            _ => {}
        }
    }
    out
}

fn aws_subject(name: &str, kind: SubjectKind) -> Subject {
    let mut s = Subject {
        kind,
        username: Some(name.to_string()),
        ..Subject::default()
    };
    s.ids.insert("aws".into(), name.to_string());
    s
}

/// `arn:aws:iam::123456789012:user/division/alice` → `alice` (IAM names are the last path part).
fn name_in_arn(arn: &str) -> Option<&str> {
    let resource = arn.strip_prefix("arn:")?.splitn(5, ':').nth(4)?;
    let (_, path) = resource.split_once('/')?;
    path.rsplit('/').next().filter(|n| !n.is_empty())
}

fn host(r: &Value) -> Option<Host> {
    if str_of(r.get("Type")) != Some("AwsEc2Instance") {
        return None;
    }
    let inst = r.pointer("/Details/AwsEc2Instance");
    let ips = ["IpV4Addresses", "IpV6Addresses"]
        .iter()
        .filter_map(|k| inst.and_then(|i| i.get(*k)).and_then(Value::as_array))
        .flatten()
        .filter_map(|ip| str_of(Some(ip)).map(str::to_string))
        .collect();
    let id = str_of(r.get("Id")).map(|id| id.rsplit('/').next().unwrap_or(id).to_string());
    Some(Host {
        hostname: None,
        id,
        ips,
        os: inst
            .and_then(|i| str_of(i.get("Platform")))
            .map(str::to_string),
    })
}

fn indicators<'a>(f: &Value, resources: impl Iterator<Item = &'a Value>) -> Vec<Indicator> {
    let mut out = Indicators::default();
    for r in resources {
        if str_of(r.get("Type")) == Some("AwsIamAccessKey") {
            let id = str_of(r.pointer("/Details/AwsIamAccessKey/AccessKeyId")).or_else(|| {
                str_of(r.get("Id")).and_then(|id| id.strip_prefix("AWS::IAM::AccessKey:"))
            });
            out.push("aws_access_key", id);
        }
    }
    for pointer in [
        "/Network/SourceIpV4",
        "/Action/AwsApiCallAction/RemoteIpDetails/IpAddressV4",
        "/Action/NetworkConnectionAction/RemoteIpDetails/IpAddressV4",
    ] {
        out.push("ip", str_of(f.pointer(pointer)));
    }
    out.push("domain", str_of(f.pointer("/Network/DestinationDomain")));
    out.into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalized_severity_follows_asff_bands() {
        assert_eq!(severity_from_normalized(0.0), Severity::Informational);
        assert_eq!(severity_from_normalized(39.0), Severity::Low);
        assert_eq!(severity_from_normalized(40.0), Severity::Medium);
        assert_eq!(severity_from_normalized(70.0), Severity::High);
        assert_eq!(severity_from_normalized(90.0), Severity::Critical);
    }

    #[test]
    fn iam_names_come_out_of_arns() {
        assert_eq!(
            name_in_arn("arn:aws:iam::123456789012:user/division/alice"),
            Some("alice")
        );
        assert_eq!(
            name_in_arn("arn:aws:iam::123456789012:role/deploy"),
            Some("deploy")
        );
        assert_eq!(name_in_arn("AWS::IAM::AccessKey:ASIA"), None);
    }

    #[test]
    fn findings_imported_v2_carries_ocsf_findings_read_by_the_ocsf_mapping() {
        let registry = super::super::NormalizerRegistry::new();
        let finding = json!({
            "class_uid": 2004, "category_uid": 2, "activity_id": 1, "type_uid": 200401,
            "severity_id": 4, "time": 1_772_356_500_000_i64,
            "metadata": {"version": "1.5.0", "uid": "shv2-1",
                         "product": {"name": "GuardDuty", "vendor_name": "AWS"}},
            "finding_info": {"uid": "shv2-finding-1", "title": "Credential exfiltration"},
            "actor": {"user": {"name": "alice", "uid": "AIDAEXAMPLE"}}
        });
        let delivery = json!({
            "version": "0", "id": "e1", "detail-type": "Findings Imported V2",
            "source": "aws.securityhub", "account": "123456789012",
            "time": "2026-03-01T09:15:03Z", "region": "us-east-1", "resources": [],
            "detail": {"findings": [finding]}
        });
        let parts = registry
            .normalize_all(&serde_json::to_vec(&delivery).unwrap(), None)
            .unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].at.as_deref(), Some("detail.findings[0]"));
        let alert = parts[0].result.as_ref().expect("an OCSF finding");
        assert_eq!(alert.source.format, "ocsf");
        assert_eq!(alert.id, "shv2-finding-1");
        assert_eq!(alert.severity, Severity::High);
        assert_eq!(alert.subjects[0].primary(), Some("alice"));
    }

    #[test]
    fn each_finding_of_a_delivery_is_its_own_alert_and_fails_alone() {
        let registry = super::super::NormalizerRegistry::new();
        let good = json!({"SchemaVersion": "2018-10-08", "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
            "Id": "f1", "Types": ["TTPs/Initial Access/UnauthorizedAccess:IAMUser-ConsoleLoginSuccess.B"],
            "Severity": {"Label": "HIGH"},
            "Resources": [{"Type": "AwsIamAccessKey", "Id": "AWS::IAM::AccessKey:AKIA1",
                           "Details": {"AwsIamAccessKey": {"PrincipalName": "alice", "PrincipalType": "IAMUser"}}}]});
        let bad = json!("not a finding");
        let delivery = json!({"Findings": [good, bad]});
        let parts = registry
            .normalize_all(&serde_json::to_vec(&delivery).unwrap(), Some("asff"))
            .unwrap();
        let alert = parts[0].result.as_ref().unwrap();
        assert_eq!(alert.category, "suspicious_login");
        assert_eq!(
            alert.labels["guardduty_type"],
            "UnauthorizedAccess:IAMUser/ConsoleLoginSuccess.B"
        );
        assert_eq!(alert.indicators[0].value, "AKIA1");
        // No time anywhere: timed on receipt, and said.
        assert_eq!(alert.problems[0].kind, ProblemKind::TimeFromReceipt);
        let err = parts[1].result.as_ref().unwrap_err().to_string();
        assert!(
            err.contains("Findings[1]") && err.contains("expected a JSON object"),
            "{err}"
        );
    }

    #[test]
    fn detects_findings_envelopes_and_answers_but_not_guardduty() {
        assert!(Asff.detect(&json!({"SchemaVersion": "2018-10-08", "ProductArn": "arn"})));
        assert!(Asff.detect(&json!({"source": "aws.securityhub", "detail": {}})));
        assert!(
            Asff.detect(&json!({"Findings": [{"SchemaVersion": "2018-10-08", "ProductArn": "a"}]}))
        );
        assert!(!Asff.detect(&json!({"detail-type": "GuardDuty Finding", "detail": {}})));
    }
}
