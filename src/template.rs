//! The one template sandbox (minijinja): connector specs, notification messages and webhook bodies
//! render through an environment from [`new_env`]. No loader (no file access), no functions beyond
//! minijinja's pure builtins plus the filters below, strict undefined, no auto-escaping (callers
//! encode for their own output: JSON via `tojson`, URL path segments via `segment`).

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

/// The sandbox: no loader (no file access), no functions beyond minijinja's pure builtins plus the two
/// filters below, strict undefined, no auto-escaping.
pub(crate) fn new_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_recursion_limit(50);
    env.add_filter("tojson", strict_tojson);
    env.add_filter("segment", segment);
    env.add_test("contains", contains);
    env
}

/// `list is contains(x)`: the reverse of the builtin `in` test, so `selectattr("logins", "contains",
/// login)` can keep the objects whose list attribute holds a value (minijinja has no such builtin).
fn contains(
    container: &minijinja::Value,
    item: &minijinja::Value,
) -> Result<bool, minijinja::Error> {
    if container.is_undefined() || container.is_none() {
        return Ok(false);
    }
    if let (Some(s), Some(i)) = (container.as_str(), item.as_str()) {
        return Ok(s.contains(i));
    }
    let mut values = container.try_iter()?;
    Ok(values.any(|v| &v == item))
}

/// `tojson` that refuses undefined values (the builtin turns them into `null`, which would silently send
/// e.g. a filter `id eq null` to a target).
fn strict_tojson(value: minijinja::Value) -> Result<minijinja::Value, minijinja::Error> {
    if value.is_undefined() {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::UndefinedError,
            "tojson of an undefined value",
        ));
    }
    serde_json::to_string(&value)
        .map(minijinja::Value::from_safe_string)
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string()))
}

/// One URL path segment: percent-encodes everything but RFC 3986 unreserved characters. Unlike
/// `urlencode` it encodes `/`, so a subject like `../Groups/x` cannot walk the target's API.
fn segment(value: minijinja::Value) -> Result<String, minijinja::Error> {
    if value.is_undefined() || value.is_none() {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::UndefinedError,
            "segment of an undefined or none value",
        ));
    }
    let raw = match value.as_str() {
        Some(s) => s.to_string(),
        None => value.to_string(),
    };
    Ok(crate::net::encode_unreserved(&raw))
}

/// minijinja errors with their detail (the top line alone often says only "syntax error").
pub(crate) fn describe(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    if let Some(d) = e.detail() {
        if !s.contains(d) {
            s.push_str(": ");
            s.push_str(d);
        }
    }
    s
}
