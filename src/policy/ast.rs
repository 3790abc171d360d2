//! Reading the parsed bundle: which rules a module defines, where, and what their bodies say.
//!
//! regorus exposes its AST as `regorus::unstable` (it may change between minor versions; deprovd pins
//! 0.14). The test runner finds `test_*` rules here, `policy check` lints literal decisions, and
//! `policy eval --explain` evaluates each `decisions` rule on its own.

use regorus::unstable::{Expr, Literal, LiteralStmt, Module, Rule, RuleHead, Span};

/// A `Ref<Module>` as regorus hands it out.
pub(crate) type ModuleRef = regorus::unstable::Ref<Module>;

/// `file:line:col` of a span, as editors and CI annotations read it.
pub(crate) fn location(span: &Span) -> String {
    format!("{}:{}:{}", span.source.file(), span.line, span.col)
}

/// The module's package as a data path, e.g. `data.deprovd_test`.
pub(crate) fn package_path(module: &Module) -> String {
    format!("data.{}", module.package.refr.span().text())
}

/// The head of a rule: its name (`decisions`, `test_x`, `f`) and how it is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadKind {
    /// `x := v`, `x if {...}`, `x[k] := v`.
    Complete,
    /// `x contains v if {...}`.
    Set,
    /// `f(a, b) := v if {...}`.
    Function,
    /// `default x := v`.
    Default,
}

/// Name and kind of a rule's head. The name is the first segment of the head reference.
pub(crate) fn head(rule: &Rule) -> (String, HeadKind) {
    let (refr, kind) = match rule {
        Rule::Spec { head, .. } => match head {
            RuleHead::Compr { refr, .. } => (refr, HeadKind::Complete),
            RuleHead::Set { refr, .. } => (refr, HeadKind::Set),
            RuleHead::Func { refr, .. } => (refr, HeadKind::Function),
        },
        Rule::Default { refr, .. } => (refr, HeadKind::Default),
    };
    let text = refr.span().text();
    let name: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (name, kind)
}

/// The statements of each body of a rule (`Default` rules have none).
pub(crate) fn bodies(rule: &Rule) -> Vec<&[LiteralStmt]> {
    match rule {
        Rule::Spec { bodies, .. } => bodies.iter().map(|b| b.query.stmts.as_slice()).collect(),
        Rule::Default { .. } => Vec::new(),
    }
}

/// A `test_*` rule: its full data path and where it is defined.
#[derive(Debug, Clone)]
pub(crate) struct TestRule {
    /// `data.<package>.<name>`, what `--run` matches and what is evaluated.
    pub path: String,
    pub location: String,
    /// File relative to the bundle directory.
    pub file: String,
}

/// Every `test_*` rule of `modules`, one entry per name (a test may have several definitions), sorted
/// by path.
pub(crate) fn test_rules(modules: &[ModuleRef]) -> Vec<TestRule> {
    let mut out: Vec<TestRule> = Vec::new();
    for module in modules {
        let package = package_path(module);
        for rule in &module.policy {
            let (name, kind) = head(rule);
            if !name.starts_with("test_") || kind == HeadKind::Function {
                continue;
            }
            let path = format!("{package}.{name}");
            if out.iter().any(|t| t.path == path) {
                continue;
            }
            let span = rule.span();
            out.push(TestRule {
                path,
                location: location(span),
                file: span.source.file().clone(),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The string value of a string literal expression.
pub(crate) fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::String { value, .. } | Expr::RawString { value, .. } => {
            value.as_string().ok().map(|s| s.to_string())
        }
        _ => None,
    }
}

/// The variable a statement assigns with `:=` (or binds with `some x in`), for the bindings shown
/// when a test fails.
pub(crate) fn bound_vars(stmt: &LiteralStmt, out: &mut Vec<String>) {
    let mut push = |name: &str| {
        if name != "_" && !out.iter().any(|v| v == name) {
            out.push(name.to_string());
        }
    };
    match &stmt.literal {
        Literal::Expr { expr, .. } => {
            if let Expr::AssignExpr { lhs, .. } = expr.as_ref() {
                collect_vars(lhs, &mut push);
            }
        }
        Literal::SomeIn { key, value, .. } => {
            if let Some(k) = key {
                collect_vars(k, &mut push);
            }
            collect_vars(value, &mut push);
        }
        Literal::SomeVars { vars, .. } => {
            for v in vars {
                push(v.text());
            }
        }
        Literal::NotExpr { .. } | Literal::Every { .. } => {}
    }
}

/// Variables in a destructuring pattern (`x`, `[a, b]`, `{"k": v}`).
fn collect_vars(expr: &Expr, push: &mut dyn FnMut(&str)) {
    match expr {
        Expr::Var { span, .. } => push(span.text()),
        Expr::Array { items, .. } => items.iter().for_each(|i| collect_vars(i, push)),
        Expr::Object { fields, .. } => fields.iter().for_each(|(_, _, v)| collect_vars(v, push)),
        _ => {}
    }
}

/// `lhs == rhs` as a statement (not under `not`, no `with`): the two sides' source text.
pub(crate) fn equality(stmt: &LiteralStmt) -> Option<(String, String)> {
    let Literal::Expr { expr, .. } = &stmt.literal else {
        return None;
    };
    match expr.as_ref() {
        Expr::BoolExpr {
            op: regorus::unstable::BoolOp::Eq,
            lhs,
            rhs,
            ..
        } => Some((lhs.span().text().to_string(), rhs.span().text().to_string())),
        _ => None,
    }
}

/// The source text of a statement, `with` modifiers included.
pub(crate) fn stmt_text(stmt: &LiteralStmt) -> &str {
    stmt.span.text()
}
