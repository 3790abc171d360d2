//! Compiling one template of a spec into the shared environment, and checking every value it refers
//! to against what is defined at that place (earlier steps, their extracts, `lookup`, `item`, `vars`).

use super::*;

use super::compile::{Compiler, Scope};

/// Top-level names a template may use.
const ROOTS: [&str; 9] = [
    "subject",
    "vars",
    "steps",
    "pre_state",
    "context",
    "idempotency_key",
    "operation",
    "lookup",
    "item",
];
/// minijinja global functions that `undeclared_variables` reports like variables.
const GLOBAL_FUNCTIONS: [&str; 4] = ["range", "dict", "namespace", "debug"];

impl Compiler<'_> {
    /// Compile `src` into the environment under `path` and check what it refers to.
    pub(super) fn template(
        &mut self,
        path: &str,
        src: &str,
        kind: TplKind,
        scope: &Scope<'_>,
        uses_lookup: &mut bool,
    ) -> Option<Tpl> {
        let (kind, wrapped) = match kind {
            TplKind::Cond => (TplKind::Cond, format!("{{% if {src} %}}1{{% endif %}}")),
            TplKind::Value => match single_expression(src) {
                Some(expr) => (TplKind::Value, format!("{{{{ ({expr}) | tojson }}}}")),
                None => (TplKind::Text, src.to_string()),
            },
            TplKind::Text => (TplKind::Text, src.to_string()),
        };
        if let Err(e) = self.env.add_template_owned(path.to_string(), wrapped) {
            self.problem(path, format!("template error: {}", describe(&e)));
            return None;
        }
        let refs = match self.env.get_template(path) {
            Ok(t) => t.undeclared_variables(true),
            Err(e) => {
                self.problem(path, format!("template error: {}", describe(&e)));
                return None;
            }
        };
        let mut refs: Vec<String> = refs.into_iter().collect();
        refs.sort();
        let before = self.problems.len();
        for r in refs {
            let mut parts = r.split('.');
            let root = parts.next().unwrap_or_default();
            let second = parts.next();
            let third = parts.next();
            if GLOBAL_FUNCTIONS.contains(&root) {
                continue;
            }
            if !ROOTS.contains(&root) {
                self.problem(
                    path,
                    format!(
                        "unknown value `{root}`; templates can use {}",
                        ROOTS.join(", ")
                    ),
                );
                continue;
            }
            match (root, second) {
                ("item", _) if !scope.item => {
                    self.problem(path, "`item` is only defined in a `foreach` step".into())
                }
                ("vars", Some(v)) => {
                    self.var_refs.insert(v.to_string());
                }
                ("lookup", k) => match scope.lookup {
                    None => self.problem(path, "the lookup operation cannot use `lookup`".into()),
                    Some(None) => self.problem(
                        path,
                        "uses `lookup` but the spec has no `lookup` operation".into(),
                    ),
                    Some(Some(keys)) => {
                        *uses_lookup = true;
                        if let Some(k) = k {
                            if !keys.contains(k) {
                                self.problem(
                                    path,
                                    format!("`lookup.{k}` is not recorded by the lookup operation"),
                                );
                            }
                        }
                    }
                },
                ("steps", Some(step)) => match scope.steps.get(step) {
                    None => self.problem(
                        path,
                        format!("unknown step `{step}` (steps can only use earlier named steps)"),
                    ),
                    Some(extracts) => {
                        if let Some(x) = third {
                            if !extracts.contains(x) {
                                self.problem(path, format!("step `{step}` has no extract `{x}`"));
                            }
                        }
                    }
                },
                _ => {}
            }
        }
        if self.problems.len() > before {
            return None;
        }
        Some(Tpl {
            name: path.to_string(),
            kind,
        })
    }
}

/// The expression of a template that is exactly one `{{ … }}`, if it is.
pub(super) fn single_expression(src: &str) -> Option<&str> {
    let t = src.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    let inner = inner.trim_start_matches('-').trim_end_matches('-');
    Some(inner.trim())
}
