//! Checking and compiling a spec in one pass: every operation, step, outcome rule and paging setting,
//! each problem reported with its path; templates are compiled by `templates`.

use super::*;

use super::pointer::compile_extract;

/// What a template in a given place may refer to.
pub(super) struct Scope<'a> {
    /// Steps declared before (and, for outcome rules, including) this one: name → extract names.
    pub(super) steps: &'a BTreeMap<String, BTreeSet<String>>,
    /// `Some(keys)` when `lookup` may be used (keys it records; `None` inside: no lookup op).
    pub(super) lookup: Option<Option<&'a BTreeSet<String>>>,
    pub(super) item: bool,
}

pub(super) struct Compiler<'f> {
    pub(super) file: &'f str,
    pub(super) env: Environment<'static>,
    pub(super) problems: Vec<Problem>,
    pub(super) var_refs: BTreeSet<String>,
    /// Names of the spec's `endpoints`, which steps may choose.
    pub(super) endpoints: BTreeSet<String>,
}

impl Compiler<'_> {
    pub(super) fn problem(&mut self, path: &str, message: String) {
        self.problems
            .push(Problem::new(format!("{}: {path}", self.file), message));
    }

    pub(super) fn operation(
        &mut self,
        op_name: &str,
        op: &OperationSpec,
        lookup: Option<Option<&BTreeSet<String>>>,
    ) -> Option<CompiledOperation> {
        let before = self.problems.len();
        let base = format!("operations.{op_name}");
        if op.steps.is_empty() {
            self.problem(&format!("{base}.steps"), "needs at least one step".into());
        }
        let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut uses_lookup = false;
        let mut steps = Vec::new();
        for (i, step) in op.steps.iter().enumerate() {
            let path = format!("{base}[{i}]");
            let name = step.name.clone().unwrap_or_else(|| format!("step{i}"));
            if seen.contains_key(&name) {
                self.problem(
                    &format!("{path}.name"),
                    format!("step name `{name}` is used twice"),
                );
            }
            if let Some(s) = self.step(&path, &name, step, &seen, lookup, &mut uses_lookup) {
                steps.push(s);
            }
            let mut extracts: BTreeSet<String> = step.extract.keys().cloned().collect();
            extracts.extend(BUILTIN_EXTRACTS.iter().map(|s| s.to_string()));
            seen.insert(name, extracts);
        }
        let scope = Scope {
            steps: &seen,
            lookup,
            item: false,
        };
        let mut record = Vec::new();
        for (key, src) in &op.record {
            let p = format!("{base}.record.{key}");
            if let Some(t) = self.template(&p, src, TplKind::Value, &scope, &mut uses_lookup) {
                record.push((key.clone(), t));
            }
        }
        let available_when = op.available_when.as_ref().and_then(|src| {
            let none = BTreeMap::new();
            let vars_only = Scope {
                steps: &none,
                lookup: None,
                item: false,
            };
            let p = format!("{base}.available_when");
            self.template(&p, src, TplKind::Cond, &vars_only, &mut false)
        });
        if self.problems.len() > before {
            return None;
        }
        Some(CompiledOperation {
            steps,
            record,
            uses_lookup,
            available_when,
        })
    }

    fn step(
        &mut self,
        path: &str,
        name: &str,
        step: &StepSpec,
        seen: &BTreeMap<String, BTreeSet<String>>,
        lookup: Option<Option<&BTreeSet<String>>>,
        uses_lookup: &mut bool,
    ) -> Option<CompiledStep> {
        let before = self.problems.len();
        let outer = Scope {
            steps: seen,
            lookup,
            item: false,
        };
        let inner = Scope {
            item: step.foreach.is_some(),
            ..outer
        };
        let mut with_self = seen.clone();
        let mut own: BTreeSet<String> = step.extract.keys().cloned().collect();
        own.extend(BUILTIN_EXTRACTS.iter().map(|s| s.to_string()));
        with_self.insert(name.to_string(), own);
        let rules_scope = Scope {
            steps: &with_self,
            lookup,
            item: step.foreach.is_some(),
        };

        let method = match Method::from_bytes(step.method.to_ascii_uppercase().as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                self.problem(
                    &format!("{path}.method"),
                    format!("`{}` is not an HTTP method", step.method),
                );
                Method::GET
            }
        };
        if !step.path.starts_with('/') {
            self.problem(
                &format!("{path}.path"),
                "must start with `/` (it is appended to the instance's base_url)".into(),
            );
        }
        if let Some(ep) = &step.endpoint {
            if !self.endpoints.contains(ep) {
                self.problem(
                    &format!("{path}.endpoint"),
                    format!("`{ep}` is not declared under `endpoints`"),
                );
            }
        }
        if step.otherwise.is_some() && step.when.is_none() {
            self.problem(
                &format!("{path}.otherwise"),
                "only makes sense with `when`".into(),
            );
        }
        let when = step.when.as_ref().and_then(|s| {
            self.template(
                &format!("{path}.when"),
                s,
                TplKind::Cond,
                &outer,
                uses_lookup,
            )
        });
        let foreach = step.foreach.as_ref().and_then(|s| {
            self.template(
                &format!("{path}.foreach"),
                &format!("{{{{ {s} }}}}"),
                TplKind::Value,
                &outer,
                uses_lookup,
            )
        });
        let url = self.template(
            &format!("{path}.path"),
            &step.path,
            TplKind::Text,
            &inner,
            uses_lookup,
        );
        let mut query = Vec::new();
        for (k, v) in &step.query {
            let p = format!("{path}.query.{k}");
            if let Some(t) = self.template(&p, v, TplKind::Text, &inner, uses_lookup) {
                query.push((k.clone(), t));
            }
        }
        let mut headers = Vec::new();
        for (k, v) in &step.headers {
            let p = format!("{path}.headers.{k}");
            let Ok(hn) = HeaderName::from_bytes(k.as_bytes()) else {
                self.problem(&p, format!("`{k}` is not a valid HTTP header name"));
                continue;
            };
            if let Some(t) = self.template(&p, v, TplKind::Text, &inner, uses_lookup) {
                headers.push((hn, t));
            }
        }
        let body = step
            .body
            .as_ref()
            .map(|b| self.body(&format!("{path}.body"), b, &inner, uses_lookup));
        let mut extract = Vec::new();
        for (k, e) in &step.extract {
            let p = format!("{path}.extract.{k}");
            if BUILTIN_EXTRACTS.contains(&k.as_str()) {
                self.problem(&p, format!("`{k}` is a built-in value of every step"));
                continue;
            }
            match compile_extract(e) {
                Ok(x) => extract.push((k.clone(), x)),
                Err(m) => self.problem(&p, m.to_string()),
            }
        }
        let mut outcomes = Vec::new();
        for (i, rule) in step.outcomes.iter().enumerate() {
            let p = format!("{path}.outcomes[{i}]");
            let status = match parse_status(&rule.status) {
                Ok(s) => s,
                Err(m) => {
                    self.problem(&format!("{p}.status"), m.to_string());
                    continue;
                }
            };
            let body = match &rule.body {
                None => None,
                Some(b) => match (parse_pointer(&b.pointer), &b.equals, b.exists) {
                    (Err(m), _, _) => {
                        self.problem(&format!("{p}.body.pointer"), m.to_string());
                        None
                    }
                    (Ok(ptr), Some(v), None) => Some((ptr, BodyTest::Equals(v.clone()))),
                    (Ok(ptr), None, Some(e)) => Some((ptr, BodyTest::Exists(e))),
                    (Ok(_), _, _) => {
                        self.problem(
                            &format!("{p}.body"),
                            "give exactly one of `equals` or `exists`".into(),
                        );
                        None
                    }
                },
            };
            let header = match &rule.header {
                None => None,
                Some(h) => match (
                    HeaderName::from_bytes(h.name.trim().as_bytes()),
                    &h.equals,
                    h.exists,
                ) {
                    (Err(_), _, _) => {
                        self.problem(
                            &format!("{p}.header.name"),
                            format!("`{}` is not a valid header name", h.name),
                        );
                        None
                    }
                    (Ok(n), Some(v), None) => Some((n, HeaderTest::Equals(v.trim().to_string()))),
                    (Ok(n), None, Some(e)) => Some((n, HeaderTest::Exists(e))),
                    (Ok(_), _, _) => {
                        self.problem(
                            &format!("{p}.header"),
                            "give exactly one of `equals` or `exists`".into(),
                        );
                        None
                    }
                },
            };
            let when = rule.when.as_ref().and_then(|s| {
                self.template(
                    &format!("{p}.when"),
                    s,
                    TplKind::Cond,
                    &rules_scope,
                    uses_lookup,
                )
            });
            let message = rule.message.as_ref().and_then(|s| {
                self.template(
                    &format!("{p}.message"),
                    s,
                    TplKind::Text,
                    &rules_scope,
                    uses_lookup,
                )
            });
            outcomes.push(CompiledRule {
                status,
                body,
                header,
                when,
                outcome: rule.outcome,
                message,
            });
        }
        if let Some(Paginate::NextLink { pointer }) = &step.paginate {
            if let Err(m) = parse_pointer(pointer) {
                self.problem(&format!("{path}.paginate.next_link.pointer"), m.to_string());
            }
        }
        if let Some(Paginate::Scim { count: 0 }) = &step.paginate {
            self.problem(
                &format!("{path}.paginate.scim.count"),
                "must be at least 1".into(),
            );
        }
        if let Some(Paginate::PageToken { pointer, .. }) = &step.paginate {
            if let Err(m) = parse_pointer(pointer) {
                self.problem(
                    &format!("{path}.paginate.page_token.pointer"),
                    m.to_string(),
                );
            }
        }
        if let Some(Paginate::Offset { size: 0, .. }) = &step.paginate {
            self.problem(
                &format!("{path}.paginate.offset.size"),
                "must be at least 1".into(),
            );
        }
        if self.problems.len() > before {
            return None;
        }
        Some(CompiledStep {
            name: name.to_string(),
            path: path.to_string(),
            when,
            otherwise: step.otherwise,
            foreach,
            method,
            endpoint: step.endpoint.clone(),
            url: url?,
            query,
            headers,
            body: body.flatten(),
            extract,
            outcomes,
            paginate: step.paginate.clone(),
        })
    }

    fn body(
        &mut self,
        path: &str,
        v: &Value,
        scope: &Scope<'_>,
        uses_lookup: &mut bool,
    ) -> Option<BodyTpl> {
        Some(match v {
            Value::String(s) if s.contains("{{") || s.contains("{%") => {
                BodyTpl::Template(self.template(path, s, TplKind::Value, scope, uses_lookup)?)
            }
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, it) in items.iter().enumerate() {
                    out.push(self.body(&format!("{path}[{i}]"), it, scope, uses_lookup)?);
                }
                BodyTpl::Array(out)
            }
            Value::Object(map) => {
                let mut out = Vec::new();
                for (k, it) in map {
                    out.push((
                        k.clone(),
                        self.body(&format!("{path}.{k}"), it, scope, uses_lookup)?,
                    ));
                }
                BodyTpl::Object(out)
            }
            other => BodyTpl::Literal(other.clone()),
        })
    }
}

/// Inclusive status ranges.
pub(crate) fn parse_status(p: &StatusPattern) -> Result<Vec<(u16, u16)>, SpecError> {
    let valid = |c: u16| {
        if (100..=599).contains(&c) {
            Ok(c)
        } else {
            Err(SpecError::StatusCode(c))
        }
    };
    match p {
        StatusPattern::Code(c) => Ok(vec![(valid(*c)?, *c)]),
        StatusPattern::List(l) => {
            let mut out = Vec::new();
            for x in l {
                out.extend(parse_status(x)?);
            }
            Ok(out)
        }
        StatusPattern::Text(t) => {
            let t = t.trim();
            if let Some(d) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
                if let Ok(d @ 1..=5) = d.parse::<u16>() {
                    return Ok(vec![(d * 100, d * 100 + 99)]);
                }
            } else if let Some((a, b)) = t.split_once('-') {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
                    if a <= b {
                        return Ok(vec![(valid(a)?, valid(b)?)]);
                    }
                }
            } else if let Ok(c) = t.parse::<u16>() {
                return Ok(vec![(valid(c)?, c)]);
            }
            Err(SpecError::StatusPattern(t.to_string()))
        }
    }
}
