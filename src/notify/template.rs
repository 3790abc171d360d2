//! Notice → request body, by minijinja templates.
//!
//! Each kind has a default body per event; a sink may replace any of them (`templates.<event>`).
//! Defaults are the vendors' documented shapes:
//!
//! - **slack**: an incoming-webhook message, `text` (the notification and fallback line, mrkdwn) plus
//!   `blocks`: a `header` (plain text, at most 150 characters), a `section` whose `fields` (at most
//!   10, mrkdwn, at most 2000 characters each) are the notice's facts, and a `context` line.
//! - **teams**: a `message` with one Adaptive Card attachment
//!   (`contentType: application/vnd.microsoft.card.adaptive`, card version 1.4): a bold `TextBlock`
//!   headline and a `FactSet`; accepted by Teams incoming webhooks and Workflows webhooks alike.
//! - **webhook**: the [`Notice`] itself as JSON (`{"event": ..., fields}`), for machines.
//!
//! Templates see `event`, `headline` (one line for people, itself a per-event template), `facts`
//! (a list of `{title, value}` in a fixed order, values capped in length) and `notice` (the notice's
//! fields). The environment is the connector specs' sandbox: no loader, strict undefined, and a
//! `tojson` that refuses undefined values. Every template must render to JSON; that is checked at
//! startup against a sample of each event, so a typo fails there and not in an incident.

use std::collections::BTreeMap;

use minijinja::{Environment, Value as Jv};
use serde_json::Value;

use super::Notice;
use super::config::EVENTS;
use crate::template::{describe, new_env};

/// Slack's limit for a header block's text (the `clip(150)` in [`SLACK_DEFAULT`]).
#[cfg(test)]
const SLACK_HEADER_MAX: usize = 150;
/// Longest fact value put in a message (Slack caps a field at 2000 characters; people read less).
const FACT_MAX: usize = 1000;

/// One line for people, per event.
const HEADLINES: [(&str, &str); 6] = [
    (
        "action_failed",
        "Action failed: {{ notice.operation }} on {{ notice.connector }} for {{ notice.subject }}",
    ),
    (
        "approval_needed",
        "Approval needed: {{ notice.operation }} on {{ notice.connector }} for {{ notice.subject }}",
    ),
    (
        "approval_expired",
        "Approval expired, will not run: {{ notice.operation }} on {{ notice.connector }} for {{ notice.subject }}",
    ),
    (
        "breaker_tripped",
        "Blast-radius breaker tripped ({{ notice.scope }}): {{ notice.subjects }} subjects in {{ notice.window_secs }}s, threshold {{ notice.threshold }}; automatic actions now wait for approval",
    ),
    (
        "lockout_done",
        "Locked out: {{ notice.subject }} ({{ notice.operation }} on {{ notice.connector }})",
    ),
    (
        "restored",
        "Restored: {{ notice.subject }} ({{ notice.operation }} on {{ notice.connector }})",
    ),
];

/// Slack incoming-webhook message: `text` + `blocks`.
const SLACK_DEFAULT: &str = r#"{
  "text": {{ headline | slack_escape | tojson }},
  "blocks": [
    {"type": "header", "text": {"type": "plain_text", "text": {{ headline | clip(150) | tojson }}, "emoji": true}},
    {"type": "section", "fields": [
      {%- for f in facts %}
      {"type": "mrkdwn", "text": {{ ("*" ~ f.title ~ "*\n" ~ (f.value | slack_escape)) | tojson }}}{% if not loop.last %},{% endif %}
      {%- endfor %}
    ]},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": {{ ("deprovd · " ~ event) | tojson }}}]}
  ]
}"#;

/// Teams incoming webhook: a message with one Adaptive Card.
const TEAMS_DEFAULT: &str = r#"{
  "type": "message",
  "attachments": [
    {
      "contentType": "application/vnd.microsoft.card.adaptive",
      "contentUrl": null,
      "content": {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
          {"type": "TextBlock", "text": {{ headline | tojson }}, "weight": "Bolder", "size": "Medium", "wrap": true},
          {"type": "FactSet", "facts": [
            {%- for f in facts %}
            {"title": {{ f.title | tojson }}, "value": {{ f.value | tojson }}}{% if not loop.last %},{% endif %}
            {%- endfor %}
          ]},
          {"type": "TextBlock", "text": {{ ("deprovd · " ~ event) | tojson }}, "isSubtle": true, "size": "Small", "wrap": true}
        ]
      }
    }
  ]
}"#;

/// Fact titles in display order; a notice shows those of its fields that are set.
const FACTS: [(&str, &str); 15] = [
    ("subject", "Subject"),
    ("connector", "Connector"),
    ("operation", "Operation"),
    ("error", "Error"),
    ("reason", "Reason"),
    ("requested_by", "Requested by"),
    ("expires_at", "Expires at"),
    ("approval_id", "Approval"),
    ("lockout_id", "Lockout"),
    ("alert_id", "Alert"),
    ("action_key", "Action"),
    ("scope", "Scope"),
    ("subjects", "Subjects"),
    ("threshold", "Threshold"),
    ("window_secs", "Window (s)"),
];

/// How notices become bodies for one sink.
pub(crate) struct Renderer {
    env: Environment<'static>,
    /// `webhook` without an override for an event: the notice JSON itself.
    raw_json: bool,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("raw_json", &self.raw_json)
            .finish()
    }
}

impl Renderer {
    /// Compile the kind's defaults and the sink's overrides. Errors name the event.
    pub(crate) fn new(
        kind: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, Vec<(String, String)>> {
        let mut env = sandbox();
        let mut problems = Vec::new();
        for (event, src) in HEADLINES {
            env.add_template_owned(format!("headline/{event}"), src.to_string())
                .expect("built-in headline templates compile");
        }
        let default = match kind {
            "slack" => Some(SLACK_DEFAULT),
            "teams" => Some(TEAMS_DEFAULT),
            _ => None,
        };
        for event in EVENTS {
            let src = match (overrides.get(event), default) {
                (Some(o), _) => o.clone(),
                (None, Some(d)) => d.to_string(),
                (None, None) => continue,
            };
            if let Err(e) = env.add_template_owned(format!("body/{event}"), src) {
                problems.push((
                    event.to_string(),
                    format!("template does not compile: {}", describe(&e)),
                ));
            }
        }
        if problems.is_empty() {
            Ok(Self {
                env,
                raw_json: default.is_none(),
            })
        } else {
            Err(problems)
        }
    }

    /// The request body for `notice`: JSON bytes.
    pub(crate) fn render(&self, notice: &Notice) -> Result<Vec<u8>, RenderError> {
        let event = notice.event();
        let Ok(tpl) = self.env.get_template(&format!("body/{event}")) else {
            if self.raw_json {
                return Ok(serde_json::to_vec(notice)?);
            }
            return Err(RenderError::NoTemplate(event));
        };
        let fields = serde_json::to_value(notice)?;
        let headline = self
            .env
            .get_template(&format!("headline/{event}"))
            .and_then(|t| t.render(minijinja::context! { notice => Jv::from_serialize(&fields) }))
            .map_err(|e| RenderError::Headline(describe(&e)))?;
        let ctx = minijinja::context! {
            event => event,
            headline => headline,
            facts => facts(&fields),
            notice => Jv::from_serialize(&fields),
        };
        let text = tpl
            .render(ctx)
            .map_err(|e| RenderError::Body(describe(&e)))?;
        let body: Value = serde_json::from_str(&text).map_err(RenderError::NotJson)?;
        Ok(serde_json::to_vec(&body)?)
    }
}

/// Why a notice could not be turned into a request body.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RenderError {
    /// A custom sink kind without a template for this event.
    #[error("no template for `{0}`")]
    NoTemplate(&'static str),
    /// The headline template failed (message from [`describe`]).
    #[error("headline: {0}")]
    Headline(String),
    /// The body template failed (message from [`describe`]).
    #[error("{0}")]
    Body(String),
    /// The body template rendered something that is not JSON.
    #[error("template output is not JSON ({0})")]
    NotJson(serde_json::Error),
    /// The notice or the body could not be encoded as JSON.
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
}

/// Problems of a sink's templates as (event, message): compile errors, and render errors or non-JSON
/// output against [`sample`] of each event. Pure; used by config validation.
pub(crate) fn check(kind: &str, overrides: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let renderer = match Renderer::new(kind, overrides) {
        Ok(r) => r,
        Err(problems) => return problems,
    };
    let mut problems = Vec::new();
    for event in overrides.keys() {
        if let Some(notice) = sample(event) {
            if let Err(e) = renderer.render(&notice) {
                problems.push((
                    event.clone(),
                    format!("cannot render a sample `{event}`: {e}"),
                ));
            }
        }
    }
    problems
}

/// The connector specs' sandbox plus two text filters for message bodies.
fn sandbox() -> Environment<'static> {
    let mut env = new_env();
    env.add_filter("slack_escape", slack_escape);
    env.add_filter("clip", clip);
    env
}

/// Slack's mrkdwn control characters, escaped as Slack documents (`&amp;`, `&lt;`, `&gt;`), so a
/// subject like `<!channel>` cannot ping a channel or forge a link.
fn slack_escape(s: String) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `n` characters, ending in `…` when cut.
fn clip(s: String, n: usize) -> String {
    clip_chars(&s, n)
}

fn clip_chars(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The notice's set fields as `{title, value}` in [`FACTS`] order.
fn facts(fields: &Value) -> Vec<BTreeMap<&'static str, String>> {
    FACTS
        .iter()
        .filter_map(|(key, title)| {
            let v = fields.get(*key)?;
            let text = match v {
                Value::Null => return None,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some(BTreeMap::from([
                ("title", title.to_string()),
                ("value", clip_chars(&text, FACT_MAX)),
            ]))
        })
        .collect()
}

/// A plausible notice of `event`, with every optional field set, for checking templates.
pub(crate) fn sample(event: &str) -> Option<Notice> {
    let s = |v: &str| v.to_string();
    Some(match event {
        "action_failed" => Notice::ActionFailed {
            action_key: s("5f2c…"),
            connector: s("okta"),
            operation: s("disable_account"),
            subject: s("alice@example.com"),
            error: s("gave up after 8 attempts; last error: HTTP 503"),
            alert_id: Some(s("alert-1")),
        },
        "approval_needed" => Notice::ApprovalNeeded {
            approval_id: s("apr-1"),
            connector: s("okta"),
            operation: s("disable_account"),
            subject: s("alice@example.com"),
            reason: s("breaker open"),
            requested_by: s("policy:rule.x"),
            expires_at: s("2026-01-01T00:00:00Z"),
        },
        "approval_expired" => Notice::ApprovalExpired {
            approval_id: s("apr-1"),
            connector: s("okta"),
            operation: s("disable_account"),
            subject: s("alice@example.com"),
        },
        "breaker_tripped" => Notice::BreakerTripped {
            scope: s("global"),
            subjects: 11,
            threshold: 10,
            window_secs: 600,
        },
        "lockout_done" => Notice::LockoutDone {
            lockout_id: Some(s("0190…")),
            action_key: s("5f2c…"),
            connector: s("okta"),
            operation: s("disable_account"),
            subject: s("alice@example.com"),
        },
        "restored" => Notice::Restored {
            lockout_id: Some(s("0190…")),
            action_key: s("7a1d…"),
            connector: s("okta"),
            operation: s("enable_account"),
            subject: s("alice@example.com"),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(kind: &str, notice: &Notice) -> Value {
        let r = Renderer::new(kind, &BTreeMap::new()).unwrap();
        serde_json::from_slice(&r.render(notice).unwrap()).unwrap()
    }

    #[test]
    fn every_default_renders_for_every_event_and_kind() {
        for kind in ["slack", "teams", "webhook"] {
            for event in EVENTS {
                let n = sample(event).unwrap();
                let body = render(kind, &n);
                assert!(body.is_object(), "{kind}/{event}: {body}");
            }
        }
    }

    #[test]
    fn slack_default_is_text_plus_header_fields_and_context_blocks() {
        let mut n = sample("action_failed").unwrap();
        if let Notice::ActionFailed { subject, error, .. } = &mut n {
            *subject = "<!channel> & co".into();
            *error = "x".repeat(5000);
        }
        let b = render("slack", &n);
        let text = b["text"].as_str().unwrap();
        assert!(text.starts_with("Action failed: disable_account on okta for"));
        assert!(
            text.contains("&lt;!channel&gt; &amp; co"),
            "escaped: {text}"
        );
        let blocks = b["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= SLACK_HEADER_MAX);
        assert_eq!(blocks[1]["type"], "section");
        let fields = blocks[1]["fields"].as_array().unwrap();
        assert!(!fields.is_empty() && fields.len() <= 10);
        for f in fields {
            assert_eq!(f["type"], "mrkdwn");
            assert!(f["text"].as_str().unwrap().chars().count() <= 2000);
        }
        assert_eq!(fields[0]["text"], "*Subject*\n&lt;!channel&gt; &amp; co");
        assert!(fields.iter().any(|f| f["text"] == "*Alert*\nalert-1"));
        assert_eq!(blocks[2]["type"], "context");
    }

    #[test]
    fn teams_default_is_one_adaptive_card_with_a_fact_set() {
        let b = render("teams", &sample("breaker_tripped").unwrap());
        assert_eq!(b["type"], "message");
        let att = &b["attachments"][0];
        assert_eq!(
            att["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert!(att["contentUrl"].is_null());
        let card = &att["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        assert!(
            card["body"][0]["text"]
                .as_str()
                .unwrap()
                .contains("breaker tripped (global)")
        );
        let facts = card["body"][1]["facts"].as_array().unwrap();
        assert_eq!(card["body"][1]["type"], "FactSet");
        assert!(facts.contains(&serde_json::json!({"title": "Threshold", "value": "10"})));
    }

    #[test]
    fn webhook_default_is_the_notice_json() {
        let n = sample("lockout_done").unwrap();
        assert_eq!(render("webhook", &n), serde_json::to_value(&n).unwrap());
    }

    #[test]
    fn overrides_replace_one_event_and_see_headline_and_fields() {
        let overrides = BTreeMap::from([(
            "restored".to_string(),
            r#"{"text": {{ headline | tojson }}, "who": {{ notice.subject | tojson }}}"#
                .to_string(),
        )]);
        let r = Renderer::new("slack", &overrides).unwrap();
        let b: Value =
            serde_json::from_slice(&r.render(&sample("restored").unwrap()).unwrap()).unwrap();
        assert_eq!(b["who"], "alice@example.com");
        assert!(
            b["text"]
                .as_str()
                .unwrap()
                .starts_with("Restored: alice@example.com")
        );
        let other: Value =
            serde_json::from_slice(&r.render(&sample("lockout_done").unwrap()).unwrap()).unwrap();
        assert!(other["blocks"].is_array(), "other events keep the default");
    }

    #[test]
    fn the_readme_examples_render_json_slack_understands() {
        let overrides = BTreeMap::from([
            (
                "action_failed".to_string(),
                r#"{"text": {{ (":rotating_light: " ~ headline) | tojson }}}"#.to_string(),
            ),
            (
                "breaker_tripped".to_string(),
                r#"{"text": {{ ("<!here> " ~ headline) | tojson }}}"#.to_string(),
            ),
        ]);
        assert!(check("slack", &overrides).is_empty());
        let r = Renderer::new("slack", &overrides).unwrap();
        let b: Value =
            serde_json::from_slice(&r.render(&sample("breaker_tripped").unwrap()).unwrap())
                .unwrap();
        assert!(
            b["text"]
                .as_str()
                .unwrap()
                .starts_with("<!here> Blast-radius breaker tripped")
        );
    }

    #[test]
    fn broken_templates_are_reported_per_event() {
        let overrides = BTreeMap::from([
            (
                "action_failed".to_string(),
                "{{ notice.subjct | tojson }}".to_string(),
            ),
            (
                "restored".to_string(),
                "plain text {{ headline }}".to_string(),
            ),
            ("lockout_done".to_string(), "{% if %}".to_string()),
        ]);
        let compile = check("teams", &overrides);
        assert_eq!(compile.len(), 1, "compile errors first: {compile:?}");
        assert_eq!(compile[0].0, "lockout_done");
        let mut o = overrides.clone();
        o.remove("lockout_done");
        let problems = check("webhook", &o);
        let events: Vec<&str> = problems.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(events, ["action_failed", "restored"], "{problems:?}");
        assert!(problems[0].1.contains("undefined"), "{problems:?}");
        assert!(problems[1].1.contains("not JSON"), "{problems:?}");
    }
}
