//! `deprovd policy check`: compile the bundle as the server does, then lint what the decisions can be.
//!
//! Checked statically, with `file:line:col`:
//! - an `"action"` or `"mode"` given as a string literal in a decision object — directly, or as the
//!   argument of a helper function that puts its parameter there (`decision("disable_acount", …)`) —
//!   must name a known action or mode; the server would drop that decision at run time;
//! - two `decisions` rules that can decide the same action for the same subject in two modes (one
//!   enforces, the other asks for approval): the planner would carry out both. Rules constrained to
//!   different `input.alert.category` values (directly or through a helper rule) cannot both fire and
//!   are not reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use regorus::unstable::{Expr, Literal, LiteralStmt, Query, Rule, RuleHead};
use serde::Serialize;

use super::ast::{self, HeadKind, ModuleRef};
use super::bundle::{self, Bundle};
use super::{PolicyConfig, PolicyError};
use crate::action::Operation;

/// How bad a finding is: errors fail `policy check`, warnings only with `--strict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Severity {
    Error,
    Warning,
}

/// One problem found, at `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) struct Finding {
    pub location: String,
    pub severity: Severity,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}: {sev}: {}", self.location, self.message)
    }
}

const MODES: [&str; 3] = ["enforce", "approval", "dry_run"];

/// Compile `dir` with `config` (its `dir` replaced) and lint it. Compile problems come back as
/// errors (regorus' own `file:line:col: message`); `Err` only when the directory cannot be read.
pub(crate) fn check_bundle(dir: &Path, config: &PolicyConfig) -> Result<Vec<Finding>, PolicyError> {
    let scan = bundle::scan(dir)?;
    let files = scan.files.clone();
    let mut config = config.clone();
    config.dir = Some(dir.to_path_buf());
    let compiled = Bundle::compile(scan, &config);
    let compile_error = |p: String| {
        let (location, message) = split_location(&p);
        Finding {
            location,
            severity: Severity::Error,
            message,
        }
    };
    match compiled {
        Err(PolicyError::Invalid { problems, .. }) => {
            return Ok(problems.into_iter().map(compile_error).collect());
        }
        Err(PolicyError::Signature(e)) => {
            return Ok(vec![Finding {
                location: super::SIGNATURE_FILE.to_string(),
                severity: Severity::Error,
                message: e.to_string(),
            }]);
        }
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let (mut engine, _) =
        bundle::build_engine(&files, None).map_err(|problems| PolicyError::Invalid {
            dir: format!("`{}`", dir.display()),
            problems,
        })?;
    let modules: Vec<ModuleRef> = engine
        .get_modules()
        .iter()
        .filter(|m| !m.package.span.source.file().ends_with("_test.rego"))
        .cloned()
        .collect();
    let mut findings = Vec::new();
    lint_literals(&modules, &mut findings);
    lint_mode_conflicts(&modules, &mut findings);
    findings.sort();
    findings.dedup();
    Ok(findings)
}

/// `a.rego:3:5: message` → (`a.rego:3:5`, `message`).
fn split_location(problem: &str) -> (String, String) {
    let mut parts = problem.splitn(4, ':');
    let (Some(file), Some(line), Some(col), Some(rest)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (String::new(), problem.to_string());
    };
    if line.chars().all(|c| c.is_ascii_digit()) && col.chars().all(|c| c.is_ascii_digit()) {
        (format!("{file}:{line}:{col}"), rest.trim().to_string())
    } else {
        (String::new(), problem.to_string())
    }
}

/// Call `f` on every expression of a query, depth first.
fn visit_query(q: &Query, f: &mut dyn FnMut(&Expr)) {
    for s in &q.stmts {
        visit_stmt(s, f);
    }
}

fn visit_stmt(s: &LiteralStmt, f: &mut dyn FnMut(&Expr)) {
    match &s.literal {
        Literal::SomeVars { .. } => {}
        Literal::SomeIn {
            key,
            value,
            collection,
            ..
        } => visit_membership(key.as_deref(), value, collection, f),
        Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => visit_expr(expr, f),
        Literal::Every { domain, query, .. } => {
            visit_expr(domain, f);
            visit_query(query, f);
        }
    }
    for w in &s.with_mods {
        visit_expr(&w.refr, f);
        visit_expr(&w.r#as, f);
    }
}

/// `[key,] value in collection`: as `some … in` and as an expression.
fn visit_membership(key: Option<&Expr>, value: &Expr, collection: &Expr, f: &mut dyn FnMut(&Expr)) {
    if let Some(k) = key {
        visit_expr(k, f);
    }
    visit_expr(value, f);
    visit_expr(collection, f);
}

fn visit_expr(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match e {
        Expr::Array { items, .. } | Expr::Set { items, .. } => {
            items.iter().for_each(|i| visit_expr(i, f))
        }
        Expr::Object { fields, .. } => fields.iter().for_each(|(_, k, v)| {
            visit_expr(k, f);
            visit_expr(v, f);
        }),
        Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
            visit_expr(term, f);
            visit_query(query, f);
        }
        Expr::ObjectCompr {
            key, value, query, ..
        } => {
            visit_expr(key, f);
            visit_expr(value, f);
            visit_query(query, f);
        }
        Expr::Call { fcn, params, .. } => {
            visit_expr(fcn, f);
            params.iter().for_each(|p| visit_expr(p, f));
        }
        Expr::UnaryExpr { expr, .. } => visit_expr(expr, f),
        Expr::RefDot { refr, .. } => visit_expr(refr, f),
        Expr::RefBrack { refr, index, .. } => {
            visit_expr(refr, f);
            visit_expr(index, f);
        }
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => {
            visit_expr(lhs, f);
            visit_expr(rhs, f);
        }
        Expr::Membership {
            key,
            value,
            collection,
            ..
        } => visit_membership(key.as_deref(), value, collection, f),
        _ => {}
    }
}

/// Every expression of a rule: head (key, value, arguments) and bodies.
fn visit_rule(rule: &Rule, f: &mut dyn FnMut(&Expr)) {
    match rule {
        Rule::Spec { head, bodies, .. } => {
            match head {
                RuleHead::Compr { assign, .. } | RuleHead::Func { assign, .. } => {
                    if let Some(a) = assign {
                        visit_expr(&a.value, f);
                    }
                }
                RuleHead::Set { key, .. } => {
                    if let Some(k) = key {
                        visit_expr(k, f);
                    }
                }
            }
            for b in bodies {
                if let Some(a) = &b.assign {
                    visit_expr(&a.value, f);
                }
                visit_query(&b.query, f);
            }
        }
        Rule::Default { value, .. } => visit_expr(value, f),
    }
}

/// The `"action"` and `"mode"` fields of a decision-shaped object literal.
fn decision_fields(e: &Expr) -> Option<(Option<&Expr>, Option<&Expr>)> {
    let Expr::Object { fields, .. } = e else {
        return None;
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(_, k, _)| ast::string_literal(k).as_deref() == Some(name))
            .map(|(_, _, v)| v.as_ref())
    };
    let (action, mode) = (field("action"), field("mode"));
    (action.is_some() && field("rule").is_some()).then_some((action, mode))
}

fn check_action(e: &Expr, via: &str, out: &mut Vec<Finding>) {
    if let Some(a) = ast::string_literal(e) {
        if Operation::parse(&a).is_none() {
            out.push(Finding {
                location: ast::location(e.span()),
                severity: Severity::Error,
                message: format!(
                    "unknown action `{a}`{via} (known: {})",
                    Operation::ALL.map(|o| o.as_str()).join(", ")
                ),
            });
        }
    }
}

fn check_mode(e: &Expr, via: &str, out: &mut Vec<Finding>) {
    if let Some(m) = ast::string_literal(e) {
        if !MODES.contains(&m.as_str()) {
            out.push(Finding {
                location: ast::location(e.span()),
                severity: Severity::Error,
                message: format!("unknown mode `{m}`{via} (known: {})", MODES.join(", ")),
            });
        }
    }
}

/// Decision builders: functions whose value is a decision object with `action`/`mode` taken from
/// parameters. Name → (index of the action parameter, index of the mode parameter).
type Builders = BTreeMap<String, (Option<usize>, Option<usize>)>;

fn builders(modules: &[ModuleRef]) -> Builders {
    let mut out = Builders::new();
    for m in modules {
        for rule in &m.policy {
            let Rule::Spec {
                head:
                    RuleHead::Func {
                        args,
                        assign: Some(assign),
                        ..
                    },
                ..
            } = rule.as_ref()
            else {
                continue;
            };
            let Some((action, mode)) = decision_fields(&assign.value) else {
                continue;
            };
            let index = |field: Option<&Expr>| {
                let name = match field? {
                    Expr::Var { span, .. } => span.text(),
                    _ => return None,
                };
                args.iter().position(|a| a.span().text() == name)
            };
            out.insert(ast::head(rule).0, (index(action), index(mode)));
        }
    }
    out
}

fn lint_literals(modules: &[ModuleRef], out: &mut Vec<Finding>) {
    let builders = builders(modules);
    for m in modules {
        for rule in &m.policy {
            visit_rule(rule, &mut |e| {
                if let Some((action, mode)) = decision_fields(e) {
                    if let Some(a) = action {
                        check_action(a, "", out);
                    }
                    if let Some(md) = mode {
                        check_mode(md, "", out);
                    }
                }
                if let Expr::Call { fcn, params, .. } = e {
                    let name = fcn.span().text();
                    if let Some((a, md)) = builders.get(name) {
                        let via = format!(" passed to `{name}`");
                        if let Some(p) = a.and_then(|i| params.get(i)) {
                            check_action(p, &via, out);
                        }
                        if let Some(p) = md.and_then(|i| params.get(i)) {
                            check_mode(p, &via, out);
                        }
                    }
                }
            });
        }
    }
}

/// What one `decisions contains …` rule can decide, as far as literals tell.
struct DecisionRule {
    location: String,
    action: String,
    mode: String,
    /// A literal subject, when the rule names one.
    subject: Option<String>,
    /// The `input.alert.category` values the rule is limited to; `None`: any.
    categories: Option<BTreeSet<String>>,
}

/// `input.alert.category == "x"` (either way round) → `x`.
fn category_constraint(s: &LiteralStmt) -> Option<String> {
    let Literal::Expr { expr, .. } = &s.literal else {
        return None;
    };
    let Expr::BoolExpr {
        op: regorus::unstable::BoolOp::Eq,
        lhs,
        rhs,
        ..
    } = expr.as_ref()
    else {
        return None;
    };
    let is_category = |e: &Expr| e.span().text().replace(' ', "") == "input.alert.category";
    if is_category(lhs) {
        ast::string_literal(rhs)
    } else if is_category(rhs) {
        ast::string_literal(lhs)
    } else {
        None
    }
}

/// Categories one body is limited to: its own constraints, and one level of helper rules named as
/// a bare statement (`credential_theft` where `credential_theft if { input.alert.category == … }`).
fn body_categories(
    stmts: &[LiteralStmt],
    helpers: &BTreeMap<String, Option<BTreeSet<String>>>,
) -> Option<BTreeSet<String>> {
    let mut limit: Option<BTreeSet<String>> = None;
    let mut narrow = |set: BTreeSet<String>| {
        limit = Some(match limit.take() {
            None => set,
            Some(l) => l.intersection(&set).cloned().collect(),
        });
    };
    for s in stmts {
        if let Some(c) = category_constraint(s) {
            narrow([c].into_iter().collect());
        } else if let Literal::Expr { expr, .. } = &s.literal {
            if let Expr::Var { span, .. } = expr.as_ref() {
                if let Some(Some(set)) = helpers.get(span.text()) {
                    narrow(set.clone());
                }
            }
        }
    }
    limit
}

fn lint_mode_conflicts(modules: &[ModuleRef], out: &mut Vec<Finding>) {
    let builders = builders(modules);
    let mut found: Vec<DecisionRule> = Vec::new();
    for m in modules
        .iter()
        .filter(|m| ast::package_path(m) == "data.deprovd")
    {
        // Helper rules' categories: the union over their bodies, if every body is limited.
        let mut helpers: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
        for rule in &m.policy {
            let (name, kind) = ast::head(rule);
            if kind != HeadKind::Complete {
                continue;
            }
            let empty = BTreeMap::new();
            let mut union = Some(BTreeSet::new());
            for b in ast::bodies(rule) {
                union = match (union, body_categories(b, &empty)) {
                    (Some(u), Some(c)) => Some(u.union(&c).cloned().collect()),
                    _ => None,
                };
            }
            let entry = helpers.entry(name).or_insert(union.clone());
            if entry.is_some() && union.is_some() {
                *entry = Some(
                    entry
                        .take()
                        .unwrap_or_default()
                        .union(&union.unwrap_or_default())
                        .cloned()
                        .collect(),
                );
            } else {
                *entry = None;
            }
        }
        for rule in &m.policy {
            let Rule::Spec {
                head: RuleHead::Set { key: Some(key), .. },
                bodies,
                span,
            } = rule.as_ref()
            else {
                continue;
            };
            if ast::head(rule).0 != "decisions" {
                continue;
            }
            for b in bodies {
                let stmts = &b.query.stmts;
                // The decision: the head key itself, or what the body assigns to it.
                let key_name = key.span().text();
                let mut value: Option<&Expr> = Some(key.as_ref());
                for s in stmts {
                    if let Literal::Expr { expr, .. } = &s.literal {
                        if let Expr::AssignExpr { lhs, rhs, .. } = expr.as_ref() {
                            if lhs.span().text() == key_name {
                                value = Some(rhs.as_ref());
                            }
                        }
                    }
                }
                let Some(value) = value else { continue };
                let literal_at = |e: Option<&Expr>| e.and_then(ast::string_literal);
                let (action, mode, subject) = if let Some((a, md)) = decision_fields(value) {
                    let subject = match value {
                        Expr::Object { fields, .. } => fields
                            .iter()
                            .find(|(_, k, _)| ast::string_literal(k).as_deref() == Some("subject"))
                            .and_then(|(_, _, v)| ast::string_literal(v)),
                        _ => None,
                    };
                    (
                        literal_at(a),
                        literal_at(md).or(Some("enforce".into())),
                        subject,
                    )
                } else if let Expr::Call { fcn, params, .. } = value {
                    match builders.get(fcn.span().text()) {
                        Some((a, md)) => (
                            literal_at(a.and_then(|i| params.get(i).map(|p| p.as_ref()))),
                            literal_at(md.and_then(|i| params.get(i).map(|p| p.as_ref()))),
                            None,
                        ),
                        None => continue,
                    }
                } else {
                    continue;
                };
                let (Some(action), Some(mode)) = (action, mode) else {
                    continue;
                };
                found.push(DecisionRule {
                    location: ast::location(span),
                    action,
                    mode,
                    subject,
                    categories: body_categories(stmts, &helpers),
                });
            }
        }
    }
    for (i, a) in found.iter().enumerate() {
        for b in &found[i + 1..] {
            let overlap = match (&a.categories, &b.categories) {
                (Some(x), Some(y)) => !x.is_disjoint(y),
                _ => true,
            };
            let same_subject = match (&a.subject, &b.subject) {
                (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
                _ => true,
            };
            if a.action == b.action && a.mode != b.mode && overlap && same_subject {
                out.push(Finding {
                    location: b.location.clone(),
                    severity: Severity::Warning,
                    message: format!(
                        "can decide `{}` in mode `{}` for a subject the rule at {} decides in mode `{}`: both would be planned",
                        b.action, b.mode, a.location, a.mode
                    ),
                });
            }
        }
    }
}

#[cfg(test)]
#[path = "lint_tests.rs"]
mod tests;
