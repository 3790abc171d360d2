//! Alert times as vendors write them: RFC 3339 strings and epoch numbers in seconds, milliseconds,
//! microseconds or nanoseconds (read by magnitude, a unit other than the documented one noted), and
//! the time of receipt standing in, noted, when no time can be read.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::fields::{FieldError, echo, problem};
use super::{AlertProblem, ProblemKind};

/// RFC 3339 string → time (any offset, converted to UTC).
pub(crate) fn time_from_rfc3339(v: &Value) -> Result<DateTime<Utc>, FieldError> {
    let s = v
        .as_str()
        .ok_or_else(|| FieldError::NotRfc3339String(echo(v)))?;
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| FieldError::BadRfc3339 {
            value: echo(s),
            error: e.to_string(),
        })
}

/// How a vendor writes a time: what its documentation says a field holds, and what
/// [`read_time`] found a value to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeUnit {
    Rfc3339,
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl TimeUnit {
    /// How the unit is named in problem notes (`epoch seconds`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            TimeUnit::Rfc3339 => "an RFC 3339 string",
            TimeUnit::Seconds => "epoch seconds",
            TimeUnit::Millis => "epoch milliseconds",
            TimeUnit::Micros => "epoch microseconds",
            TimeUnit::Nanos => "epoch nanoseconds",
        }
    }
}

/// An epoch number read by its magnitude: from 10^9 (2001 in seconds) seconds, from 10^11
/// milliseconds (before 1973 in milliseconds is never an alert's time), from 10^14 microseconds,
/// from 10^17 nanoseconds. Returns the time and the unit it was read in.
fn epoch_by_magnitude(
    n: f64,
    text: &dyn Fn() -> String,
) -> Result<(DateTime<Utc>, TimeUnit), FieldError> {
    let (unit, per_second) = match n {
        n if !n.is_finite() || n < 1e9 => return Err(FieldError::EpochTooSmall(text())),
        n if n < 1e11 => (TimeUnit::Seconds, 1.0),
        n if n < 1e14 => (TimeUnit::Millis, 1e3),
        n if n < 1e17 => (TimeUnit::Micros, 1e6),
        n if n < 1e20 => (TimeUnit::Nanos, 1e9),
        _ => return Err(FieldError::EpochOutOfRange(text())),
    };
    let micros = (n / per_second * 1e6).round() as i64;
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| (t, unit))
        .ok_or_else(|| FieldError::EpochOutOfRange(text()))
}

/// Reads a time however the sender wrote it — RFC 3339, or an epoch number (JSON number or numeric
/// string) in seconds, milliseconds, microseconds or nanoseconds by its magnitude — and says which
/// unit it was, so the caller can note a unit other than the documented one.
pub(crate) fn read_time(v: &Value) -> Result<(DateTime<Utc>, TimeUnit), FieldError> {
    let number = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        other => return Err(FieldError::NotATime(echo(other))),
    };
    match number {
        Some(n) => epoch_by_magnitude(n, &|| echo(v)),
        None => time_from_rfc3339(v).map(|t| (t, TimeUnit::Rfc3339)),
    }
}

/// The alert's time from the first of `fields` (name, value) the vendor filled in that reads, the
/// fields documented as `documented`. A value in another unit is read by magnitude and noted
/// (`time_unit`); an unreadable one is noted (`time_unreadable`) and the next field tried. `None`
/// when no field reads; see [`time_or_receipt`].
pub(crate) fn vendor_time(
    fields: &[(&str, Option<&Value>)],
    documented: TimeUnit,
    notes: &mut Vec<AlertProblem>,
) -> Option<DateTime<Utc>> {
    for (name, v) in fields {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            continue;
        };
        match read_time(v) {
            Ok((t, unit)) => {
                if unit != documented {
                    notes.push(problem(
                        ProblemKind::TimeUnit,
                        format!(
                            "{name}: `{}` read as {}; the field is documented as {}",
                            echo(v),
                            unit.name(),
                            documented.name()
                        ),
                    ));
                }
                return Some(t);
            }
            Err(e) => notes.push(problem(ProblemKind::TimeUnreadable, format!("{name}: {e}"))),
        }
    }
    None
}

/// As [`vendor_time`], else the time of receipt, noted (`time_from_receipt`): an alert without a
/// readable time is still an alert, only its time-to-containment starts late.
pub(crate) fn time_or_receipt(
    fields: &[(&str, Option<&Value>)],
    documented: TimeUnit,
    notes: &mut Vec<AlertProblem>,
) -> DateTime<Utc> {
    vendor_time(fields, documented, notes).unwrap_or_else(|| {
        let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
        receipt_time(&names, notes)
    })
}

/// The time of receipt, noted as standing in for the time fields `names`.
pub(crate) fn receipt_time(names: &[&str], notes: &mut Vec<AlertProblem>) -> DateTime<Utc> {
    notes.push(problem(
        ProblemKind::TimeFromReceipt,
        format!("no readable time in {}; timed on receipt", names.join(", ")),
    ));
    Utc::now()
}
