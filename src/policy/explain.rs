//! `policy eval --explain`: which `decisions` rules fired for an input, and what each produced.
//!
//! Each `decisions contains …` definition of `package deprovd` is evaluated on its own (regorus can
//! evaluate one rule of one module), on the interpreter, with the same input the server builds.

use regorus::Value;
use serde::Serialize;

use super::ast::{self, HeadKind};
use super::bundle::{self, SourceFile};

/// One `decisions` rule definition and what it produced for the input.
#[derive(Debug, Clone, Serialize)]
pub struct RuleFiring {
    /// `file:line:col` of the definition.
    pub location: String,
    /// Its first line, as written (`decisions contains d if {`).
    pub head: String,
    pub fired: bool,
    /// The decisions this definition added (possibly invalid ones: they are shown as produced).
    pub decisions: Vec<serde_json::Value>,
    /// An evaluation error of this definition alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every `decisions` definition, in file order.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub rules: Vec<RuleFiring>,
}

pub(crate) fn explain(files: &[SourceFile], input: Value) -> Result<Explanation, Vec<String>> {
    let (mut engine, _) = bundle::build_engine(files, None)?;
    engine.set_input(input);
    engine.set_gather_prints(true);
    let modules = engine.get_modules().clone();
    let mut rules = Vec::new();
    for m in modules
        .iter()
        .filter(|m| ast::package_path(m) == "data.deprovd")
    {
        for rule in &m.policy {
            let (name, kind) = ast::head(rule);
            if name != "decisions" || kind != HeadKind::Set {
                continue;
            }
            let span = rule.span();
            let head = span
                .text()
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            let mut firing = RuleFiring {
                location: ast::location(span),
                head,
                fired: false,
                decisions: Vec::new(),
                error: None,
            };
            let mut scratch = engine.clone();
            match scratch.eval_rule_in_module(m, rule, false) {
                Ok(data) => {
                    if let Value::Set(set) = &data["deprovd"]["decisions"] {
                        firing.decisions = set
                            .iter()
                            .map(|v| serde_json::to_value(v).unwrap_or_default())
                            .collect();
                    }
                    firing.fired = !firing.decisions.is_empty();
                }
                Err(e) => {
                    firing.error = Some(bundle::tidy_rego_error(span.source.file(), &e.to_string()))
                }
            }
            rules.push(firing);
        }
    }
    Ok(Explanation { rules })
}
