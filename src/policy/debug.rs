//! Why a test failed: the first statement of its body that does not hold, and the values involved.
//!
//! regorus gives no trace of where a rule body stopped, so the runner asks it: a scratch module in the
//! test's package (with its imports) defines one rule per body prefix — statements `0..k` — whose value
//! is the set of bindings of the variables those statements bind. The longest defined prefix ends just
//! before the failing statement. For `lhs == rhs` both sides are then evaluated under that prefix;
//! otherwise the prefix's bindings are shown.

use std::io::Write;

use regorus::Value;
use serde::Serialize;

use super::ast::{self, ModuleRef};

/// What the runner could find out about a failing test.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Failure {
    /// What the test evaluated to (`undefined` for a body that did not hold).
    pub result: String,
    /// The first statement that did not hold, as written, with its `file:line:col`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// For `actual == expected`: both sides' source and values (left is "actual" by convention).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare: Option<Compare>,
    /// Otherwise: the variables bound before the failing statement (first solution).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bindings: Option<serde_json::Value>,
}

/// The two sides of a failing `==`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Compare {
    pub actual_expr: String,
    pub actual: serde_json::Value,
    pub expected_expr: String,
    pub expected: serde_json::Value,
    /// For two sets or arrays: elements expected but absent, and present but not expected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unexpected: Vec<serde_json::Value>,
}

fn json(v: &Value) -> serde_json::Value {
    match v {
        Value::Undefined => serde_json::Value::String("<undefined>".into()),
        other => serde_json::to_value(other).unwrap_or(serde_json::Value::Null),
    }
}

impl Failure {
    pub(crate) fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if let (Some(s), Some(l)) = (&self.statement, &self.location) {
            writeln!(out, "  failed at {l}: {}", one_line(s))?;
        } else {
            writeln!(out, "  evaluated to {}", self.result)?;
        }
        if let Some(c) = &self.compare {
            writeln!(out, "    actual   {} = {}", c.actual_expr, c.actual)?;
            writeln!(out, "    expected {} = {}", c.expected_expr, c.expected)?;
            for m in &c.missing {
                writeln!(out, "    - missing    {m}")?;
            }
            for u in &c.unexpected {
                writeln!(out, "    + unexpected {u}")?;
            }
        }
        if let Some(serde_json::Value::Object(b)) = &self.bindings {
            if !b.is_empty() {
                writeln!(out, "    bindings:")?;
            }
            for (k, v) in b {
                writeln!(out, "      {k} = {v}")?;
            }
        }
        Ok(())
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Elements of `a` not in `b`, for two collections.
fn difference(a: &Value, b: &Value) -> Vec<serde_json::Value> {
    let items = |v: &Value| -> Option<Vec<Value>> {
        match v {
            Value::Set(s) => Some(s.iter().cloned().collect()),
            Value::Array(a) => Some(a.iter().cloned().collect()),
            _ => None,
        }
    };
    match (items(a), items(b)) {
        (Some(a), Some(b)) => a.iter().filter(|x| !b.contains(x)).map(json).collect(),
        _ => Vec::new(),
    }
}

const PREFIX: &str = "__deprovd_prefix_";

/// Explain the failure of the test at `path` (`data.pkg.test_x`) that evaluated to `value`. Never
/// fails: what cannot be found out is left out.
pub(crate) fn explain(
    engine: &regorus::Engine,
    modules: &[ModuleRef],
    path: &str,
    value: &Value,
) -> Failure {
    let mut failure = Failure {
        result: match value {
            Value::Undefined => "undefined".into(),
            v => v.to_string(),
        },
        statement: None,
        location: None,
        compare: None,
        bindings: None,
    };
    let Some((package, name)) = path.rsplit_once('.') else {
        return failure;
    };
    let Some((module, rule)) = modules.iter().find_map(|m| {
        (ast::package_path(m) == package)
            .then(|| {
                m.policy
                    .iter()
                    .find(|r| ast::head(r).0 == name)
                    .map(|r| (m, r))
            })
            .flatten()
    }) else {
        return failure;
    };
    let bodies = ast::bodies(rule);
    let Some(stmts) = bodies.first() else {
        return failure;
    };
    let mut header = format!("package {}\n", module.package.refr.span().text());
    for import in &module.imports {
        header.push_str(import.span.text());
        header.push('\n');
    }
    // One rule per prefix: its value is the set of binding objects (a set, so many solutions of
    // `some x in ...` cannot conflict).
    let mut text = header.clone();
    let mut vars: Vec<String> = Vec::new();
    for k in 0..=stmts.len() {
        let fields: Vec<String> = vars.iter().map(|v| format!("{v:?}: {v}")).collect();
        text.push_str(&format!(
            "{PREFIX}{k} contains {{{}}} if {{\n",
            fields.join(", ")
        ));
        text.push_str("\ttrue\n");
        for s in &stmts[..k] {
            text.push_str(&format!("\t{}\n", ast::stmt_text(s)));
        }
        text.push_str("}\n");
        if let Some(s) = stmts.get(k) {
            ast::bound_vars(s, &mut vars);
        }
    }
    let mut scratch = engine.clone();
    if scratch
        .add_policy("<deprovd-test-debug>.rego".into(), text)
        .is_err()
    {
        return failure;
    }
    let defined = |e: &mut regorus::Engine, rule: String| -> Option<Value> {
        match e.eval_rule(rule) {
            Ok(Value::Set(s)) if !s.is_empty() => s.iter().next().cloned(),
            _ => None,
        }
    };
    let mut held = 0;
    let mut bindings = None;
    for k in 0..=stmts.len() {
        match defined(&mut scratch, format!("{package}.{PREFIX}{k}")) {
            Some(b) => {
                held = k;
                bindings = Some(b);
            }
            None => break,
        }
    }
    let _ = scratch.take_prints();
    let Some(failing) = stmts.get(held) else {
        // Every statement held: the test produced a non-true value.
        return failure;
    };
    failure.statement = Some(ast::stmt_text(failing).to_string());
    failure.location = Some(ast::location(&failing.span));
    if let Some((lhs, rhs)) = ast::equality(failing) {
        let prefix: Vec<&str> = stmts[..held].iter().map(ast::stmt_text).collect();
        let side = |expr: &str, n: &str| {
            format!(
                "__deprovd_side_{n} contains [({expr})] if {{\n\ttrue\n\t{}\n}}\n",
                prefix.join("\n\t")
            )
        };
        let mut sides = engine.clone();
        let src = format!("{header}{}{}", side(&lhs, "l"), side(&rhs, "r"));
        if sides
            .add_policy("<deprovd-test-compare>.rego".into(), src)
            .is_ok()
        {
            let l = defined(&mut sides, format!("{package}.__deprovd_side_l"));
            let r = defined(&mut sides, format!("{package}.__deprovd_side_r"));
            let first = |v: Option<Value>| match v {
                Some(Value::Array(a)) => a.first().cloned().unwrap_or(Value::Undefined),
                _ => Value::Undefined,
            };
            let (l, r) = (first(l), first(r));
            failure.compare = Some(Compare {
                missing: difference(&r, &l),
                unexpected: difference(&l, &r),
                actual_expr: lhs,
                actual: json(&l),
                expected_expr: rhs,
                expected: json(&r),
            });
            return failure;
        }
    }
    failure.bindings = bindings.map(|b| json(&b));
    failure
}
