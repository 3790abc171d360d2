//! The spec file as written: serde types, each refusing unknown fields. Checked and compiled by
//! `compile`; the runtime sees only the compiled form.

use super::*;

/// A spec file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpecFile {
    /// The target type; instances refer to it as `type`. Must equal the file stem.
    pub name: String,
    /// One line for humans (`deprovd connectors list`).
    #[serde(default)]
    pub description: String,
    /// Auth schemes an instance of this type may use.
    pub auth: Vec<String>,
    /// Default values of instance `vars`.
    #[serde(default)]
    pub defaults: BTreeMap<String, Value>,
    /// Further APIs of the same target besides the instance's `base_url` (Slack's Web API next to its
    /// SCIM API), by name; steps choose one with `endpoint`.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointSpec>,
    /// Operation name → steps. Names are [`Operation`] names plus `lookup` and `check`.
    pub operations: BTreeMap<String, OperationSpec>,
    /// The operations an instance offers when its config names none (`operations = [...]`).
    /// Absent: every operation defined above. The generic `webhook` offers only `notify` this way,
    /// so a webhook meant for notifications never receives a containment action by default.
    #[serde(default)]
    pub default_operations: Option<Vec<String>>,
    /// Which response headers announce the remaining budget and its reset, and how early to slow down
    /// (see `ratelimit.rs`). Absent: the common header names, pacing from 2 requests left.
    #[serde(default)]
    pub rate_limit: Option<super::super::ratelimit::RateLimitSpec>,
}

/// A named further API of the target. An instance may override its URL and give it its own
/// credentials (`[connectors.<name>.endpoints.<endpoint>]`); by default it uses the instance's `auth`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointSpec {
    /// Root URL used when the instance sets none (the vendor's fixed API host). Without it the
    /// instance's `base_url` is the default.
    #[serde(default)]
    pub base_url: Option<String>,
    /// One line for humans: what the endpoint is and when to override it. Read by people editing
    /// the spec, never by deprovd; kept so `deny_unknown_fields` accepts it.
    #[serde(default)]
    #[allow(dead_code, reason = "documentation inside the spec file, for people")]
    pub description: String,
}

/// One operation: HTTP steps run in order, then `record` builds the pre-state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OperationSpec {
    /// A condition over `vars` only: when it is false the instance does not offer the operation at all
    /// (e.g. GitHub's `groups` only in `mode = "org"`), rather than offering one that always fails.
    #[serde(default)]
    pub available_when: Option<String>,
    pub steps: Vec<StepSpec>,
    /// Key → template; the rendered object becomes the action's `pre_state` (for `lookup`: `lookup.*`).
    #[serde(default)]
    pub record: BTreeMap<String, String>,
}

/// One HTTP request (or one per item with `foreach`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepSpec {
    /// How later templates refer to this step (`steps.<name>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Expression; the step is skipped unless it is truthy.
    #[serde(default)]
    pub when: Option<String>,
    /// When `when` is falsy, end the operation with this outcome instead of skipping on.
    #[serde(default)]
    pub otherwise: Option<StepOutcome>,
    /// Expression yielding a list; the step runs once per element, available as `item`.
    #[serde(default)]
    pub foreach: Option<String>,
    pub method: String,
    /// Which of the spec's `endpoints` the path is appended to; default the instance's `base_url`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Path template, appended to the instance's `base_url` (or the endpoint's).
    pub path: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body; every string leaf is a template.
    #[serde(default)]
    pub body: Option<Value>,
    #[serde(default)]
    pub extract: BTreeMap<String, ExtractSpec>,
    #[serde(default)]
    pub outcomes: Vec<OutcomeRule>,
    /// `{ next_link: { pointer } }` or `{ scim: { count } }` (a one-key map, not a YAML tag).
    #[serde(default, with = "yaml_serde::with::singleton_map_recursive")]
    pub paginate: Option<Paginate>,
}

/// A value taken from the response: a pointer (with `*`), `header:<Name>`, or a projection.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum ExtractSpec {
    Pointer(String),
    Project(Projection),
}

/// `{ from: "/Resources/*", fields: { id: /id } }`: a list of objects with the named fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Projection {
    pub from: String,
    pub fields: BTreeMap<String, String>,
}

/// Status → outcome, optionally narrowed by a body predicate and a `when` expression.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OutcomeRule {
    pub status: StatusPattern,
    #[serde(default)]
    pub body: Option<BodyPredicate>,
    /// A test on a response header (rate-limit signals such as `x-ratelimit-remaining: 0`).
    #[serde(default)]
    pub header: Option<HeaderPredicate>,
    /// Expression over the context, including this step's fresh extracts.
    #[serde(default)]
    pub when: Option<String>,
    pub outcome: StepOutcome,
    /// Template for the reason of `failed` / `retry`; default: the target's own message.
    #[serde(default)]
    pub message: Option<String>,
}

/// `200`, `"2xx"`, `"400-499"` or a list of those.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum StatusPattern {
    Code(u16),
    Text(String),
    List(Vec<StatusPattern>),
}

/// A test on the response body: the value at `pointer` equals `equals`, or (`exists`) is present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BodyPredicate {
    pub pointer: String,
    #[serde(default)]
    pub equals: Option<Value>,
    #[serde(default)]
    pub exists: Option<bool>,
}

/// A test on a response header: its value equals `equals` (exactly, after trimming), or (`exists`) it
/// is present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeaderPredicate {
    pub name: String,
    #[serde(default)]
    pub equals: Option<String>,
    #[serde(default)]
    pub exists: Option<bool>,
}

/// What a step's response means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StepOutcome {
    Done,
    AlreadyDone,
    NotFound,
    Retry,
    Failed,
    /// Go on with the next step (or item); after the last step this means `done`.
    Continue,
}

/// How to fetch further pages; extracted lists are concatenated across pages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) enum Paginate {
    /// Follow the URL at `pointer` (absolute or relative; must stay on the base URL's origin).
    NextLink { pointer: String },
    /// RFC 8288 `Link: <url>; rel="next"` response header (Okta, GitHub); must stay on the base URL's
    /// origin. Written `paginate: link`.
    Link,
    /// RFC 7644 §3.4.2.4: `startIndex`/`count` query, stop at `totalResults`.
    Scim {
        #[serde(default = "default_page_size")]
        count: u32,
    },
    /// An opaque continuation token in the body at `pointer`, sent back as query parameter `param`
    /// (Google's `nextPageToken` → `pageToken`); stop when the token is absent or empty.
    PageToken { pointer: String, param: String },
    /// Offset paging over a bare JSON array (Keycloak's `first`/`max`): the first request carries
    /// `<start>=0&<limit>=<size>`, the next `<start>=<start+size>`; stop at a page shorter than `size`.
    Offset {
        start: String,
        limit: String,
        #[serde(default = "default_page_size")]
        size: u32,
    },
}

fn default_page_size() -> u32 {
    100
}
