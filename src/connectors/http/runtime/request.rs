//! Rendering a step into a request: templates (text, typed values, bodies), the path under the
//! target's root, query parameters, first-page paging parameters, headers and the JSON body.

use super::*;

use super::paging::set_query_param;

impl HttpConnector {
    pub(super) fn build_request(
        &self,
        step: &CompiledStep,
        ctx: &Map<String, Value>,
    ) -> Result<reqwest::Request, Outcome> {
        let path = self.render_text(&step.url, ctx)?;
        // `.`/`..` segments (also percent-encoded) would be resolved by the URL parser and let a value
        // reach another endpoint; a spec should use `| segment`, this is the backstop.
        let path_only = path.split('?').next().unwrap_or_default();
        if path_only.split('/').any(|seg| {
            let s = seg.to_ascii_lowercase().replace("%2e", ".");
            s == "." || s == ".."
        }) {
            return Err(Outcome::Failed {
                reason: format!(
                    "{}.path: rendered path `{}` contains a `.` or `..` segment; refused",
                    step.path,
                    short(&path)
                ),
            });
        }
        let (base_url, base_path, _) = self.target(step.endpoint.as_deref())?;
        let mut url = base_url.clone();
        let joined = format!("{base_path}{path}");
        // Split an inline query (`/Users?x=1`) from the path.
        match joined.split_once('?') {
            Some((p, q)) => {
                url.set_path(p);
                url.set_query(Some(q));
            }
            None => url.set_path(&joined),
        }
        if !step.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, t) in &step.query {
                pairs.append_pair(k, &self.render_text(t, ctx)?);
            }
        }
        if let Paginate::Scim { count } = step.paginate.as_ref().unwrap_or(&Paginate::NextLink {
            pointer: String::new(),
        }) {
            url.query_pairs_mut()
                .append_pair("startIndex", "1")
                .append_pair("count", &count.to_string());
        }
        if let Some(Paginate::Offset { start, limit, size }) = &step.paginate {
            set_query_param(&mut url, start, "0");
            set_query_param(&mut url, limit, &size.to_string());
        }
        let mut builder = self
            .client
            .request(step.method.clone(), url)
            .timeout(self.timeout);
        let mut has_content_type = false;
        for (name, t) in &step.headers {
            let v = self.render_text(t, ctx)?;
            if v.trim().is_empty() {
                continue; // e.g. If-Match when the target gave no ETag
            }
            let value = HeaderValue::from_str(&v).map_err(|_| Outcome::Failed {
                reason: format!(
                    "{}.headers.{name}: rendered value is not a valid header",
                    step.path
                ),
            })?;
            has_content_type |= name == CONTENT_TYPE;
            builder = builder.header(name.clone(), value);
        }
        if let Some(body) = &step.body {
            let v = self.render_body(body, ctx)?;
            let bytes = serde_json::to_vec(&v).map_err(|e| Outcome::Failed {
                reason: format!("{}.body: {e}", step.path),
            })?;
            if !has_content_type {
                builder = builder.header(CONTENT_TYPE, "application/json");
            }
            builder = builder.body(bytes);
        }
        // Credentials are added by `send`, per attempt: pages and retries get a current token.
        builder.build().map_err(|e| Outcome::Failed {
            reason: format!("{}: cannot build request: {e}", step.path),
        })
    }

    pub(super) fn render_text(&self, t: &Tpl, ctx: &Map<String, Value>) -> Result<String, Outcome> {
        let tmpl = self
            .spec
            .env
            .get_template(&t.name)
            .map_err(|e| self.tpl_err(t, &e))?;
        tmpl.render(ctx).map_err(|e| self.tpl_err(t, &e))
    }

    pub(super) fn render_value(&self, t: &Tpl, ctx: &Map<String, Value>) -> Result<Value, Outcome> {
        let s = self.render_text(t, ctx)?;
        match t.kind {
            TplKind::Value => serde_json::from_str(&s).map_err(|e| Outcome::Failed {
                reason: format!("{}: {} ({e})", self.spec.file, t.name),
            }),
            _ => Ok(Value::String(s)),
        }
    }

    pub(super) fn render_body(
        &self,
        b: &BodyTpl,
        ctx: &Map<String, Value>,
    ) -> Result<Value, Outcome> {
        Ok(match b {
            BodyTpl::Literal(v) => v.clone(),
            BodyTpl::Template(t) => self.render_value(t, ctx)?,
            BodyTpl::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.render_body(i, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            BodyTpl::Object(fields) => {
                let mut m = Map::new();
                for (k, v) in fields {
                    m.insert(k.clone(), self.render_body(v, ctx)?);
                }
                Value::Object(m)
            }
        })
    }

    pub(super) fn truthy(&self, t: &Tpl, ctx: &Map<String, Value>) -> Result<bool, Outcome> {
        Ok(!self.render_text(t, ctx)?.is_empty())
    }

    pub(super) fn tpl_err(&self, t: &Tpl, e: &minijinja::Error) -> Outcome {
        Outcome::Failed {
            reason: self.redact(&format!("{}: {}: {}", self.spec.file, t.name, describe(e))),
        }
    }
}
