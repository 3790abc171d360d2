use super::paging::{link_with_rel, merge_pages};
use super::response::{default_outcome, pointer_get};
use super::*;
use crate::connectors::http::spec::parse_pointer;

fn connector(spec_src: &str) -> HttpConnector {
    let spec = Spec::parse("t.yaml", spec_src).expect("spec");
    HttpConnector::new(HttpConnectorParts {
        name: "t".into(),
        operations: spec.offered(None),
        spec: Arc::new(spec),
        base_url: Url::parse("https://target.example.com/api/").expect("url"),
        auth: Auth::None,
        client: reqwest::Client::new(),
        timeout: Duration::from_secs(1),
        vars: json!({"attr": "userName"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        concurrency: 1,
        endpoints: BTreeMap::new(),
        lookup_cache: LookupCacheConfig::default(),
    })
}

fn context(subject: &str, extra: Value) -> Map<String, Value> {
    let mut ctx = json!({
        "subject": subject,
        "vars": {"attr": "userName"},
        "steps": {},
        "context": extra,
        "pre_state": {"groups": [{"id": "g1"}, {"id": "g2"}]},
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    ctx.insert("idempotency_key".into(), json!("k1"));
    ctx
}

const TEMPLATED: &str = r#"
name: t
auth: [none]
operations:
  notify:
    steps:
      - method: POST
        path: "/Users/{{ subject | segment }}"
        query: { filter: '{{ vars.attr }} eq {{ subject | tojson }}' }
        headers: { If-Match: '{{ context.etag or "" }}', X-Key: "{{ idempotency_key }}" }
        body:
          ids: "{{ pre_state.groups | map(attribute='id') | list }}"
          flag: "{{ context.flag }}"
          text: "subject={{ subject }}"
          fixed: 3
"#;

#[test]
fn templates_render_typed_bodies_urlencoded_paths_and_omit_empty_headers() {
    let c = connector(TEMPLATED);
    let step = &c.spec.operations["notify"].steps[0];
    let ctx = context("a b/c@x.com", json!({"flag": false, "etag": null}));
    let req = c.build_request(step, &ctx).expect("request");
    assert_eq!(req.url().path(), "/api/Users/a%20b%2Fc%40x.com");
    let filter: Vec<(String, String)> = req.url().query_pairs().into_owned().collect();
    assert_eq!(
        filter,
        [(
            "filter".to_string(),
            "userName eq \"a b/c@x.com\"".to_string()
        )]
    );
    assert!(req.headers().get("if-match").is_none());
    assert_eq!(req.headers()["x-key"], "k1");
    assert_eq!(req.headers()[CONTENT_TYPE], "application/json");
    let body: Value =
        serde_json::from_slice(req.body().and_then(|b| b.as_bytes()).unwrap_or_default())
            .expect("json body");
    assert_eq!(
        body,
        json!({"ids": ["g1", "g2"], "flag": false, "text": "subject=a b/c@x.com", "fixed": 3})
    );
}

#[test]
fn a_step_with_an_endpoint_goes_to_that_root_and_header_rules_match() {
    let spec = Spec::parse(
        "t.yaml",
        "name: t\nauth: [none]\nendpoints:\n  web: {}\noperations:\n  notify:\n    steps:\n      - { method: POST, endpoint: web, path: \"/m.x\", outcomes: [ { status: 403, header: { name: x-ratelimit-remaining, equals: \"0\" }, outcome: retry } ] }\n",
    )
    .expect("spec");
    let c = HttpConnector::new(HttpConnectorParts {
        name: "t".into(),
        operations: spec.offered(None),
        spec: Arc::new(spec),
        base_url: Url::parse("https://scim.example.com/scim/v2").expect("url"),
        auth: Auth::None,
        client: reqwest::Client::new(),
        timeout: Duration::from_secs(1),
        vars: Map::new(),
        concurrency: 1,
        lookup_cache: LookupCacheConfig::default(),
        endpoints: BTreeMap::from([(
            "web".to_string(),
            EndpointParts {
                base_url: Url::parse("https://api.example.com/api/").expect("url"),
                auth: None,
            },
        )]),
    });
    let step = &c.spec.operations["notify"].steps[0];
    let req = c
        .build_request(step, &context("u", json!({})))
        .expect("request");
    assert_eq!(req.url().as_str(), "https://api.example.com/api/m.x");

    let response = |remaining: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-ratelimit-remaining",
            HeaderValue::from_str(remaining).unwrap(),
        );
        Response {
            status: StatusCode::FORBIDDEN,
            headers,
            json: Value::Null,
            text: String::new(),
        }
    };
    let ctx = context("u", json!({}));
    assert_eq!(c.classify(step, &response("0"), &ctx).0, StepOutcome::Retry);
    assert_eq!(
        c.classify(step, &response("12"), &ctx).0,
        StepOutcome::Failed
    );
}

#[test]
fn dot_segments_in_rendered_paths_are_refused() {
    let c = connector(
        "name: t\nauth: [none]\noperations:\n  notify:\n    steps:\n      - { method: GET, path: \"/Users/{{ subject }}\" }\n",
    );
    let step = &c.spec.operations["notify"].steps[0];
    for evil in ["../Groups", "%2E%2e/x", "a/./b"] {
        let r = c.build_request(step, &context(evil, json!({})));
        assert!(
            matches!(&r, Err(Outcome::Failed { reason }) if reason.contains("segment")),
            "{evil}: {r:?}"
        );
    }
}

#[test]
fn undefined_values_fail_with_the_template_path_instead_of_rendering_empty() {
    let c = connector(TEMPLATED);
    let step = &c.spec.operations["notify"].steps[0];
    let ctx = context("u", json!({"etag": null})); // no `flag`
    match c.build_request(step, &ctx) {
        Err(Outcome::Failed { reason }) => {
            assert!(
                reason.contains("operations.notify[0].body.flag"),
                "{reason}"
            );
        }
        other => panic!("expected a template failure, got {other:?}"),
    }
}

#[test]
fn default_outcomes_follow_the_design() {
    let s = |c| default_outcome(StatusCode::from_u16(c).unwrap());
    assert_eq!(s(200), StepOutcome::Continue);
    assert_eq!(s(204), StepOutcome::Continue);
    assert_eq!(s(404), StepOutcome::NotFound);
    assert_eq!(s(408), StepOutcome::Retry);
    assert_eq!(s(429), StepOutcome::Retry);
    assert_eq!(s(503), StepOutcome::Retry);
    assert_eq!(s(400), StepOutcome::Failed);
    assert_eq!(s(401), StepOutcome::Failed);
    assert_eq!(s(302), StepOutcome::Failed);
}

#[test]
fn pointer_wildcard_maps_over_arrays() {
    let v = json!({"Resources": [{"id": "a", "n": 1}, {"id": "b"}], "x": {"a/b": 2}});
    let p = |s: &str| parse_pointer(s).unwrap();
    assert_eq!(
        pointer_get(&v, &p("/Resources/*/id")),
        Some(json!(["a", "b"]))
    );
    assert_eq!(pointer_get(&v, &p("/Resources/*/n")), Some(json!([1])));
    assert_eq!(pointer_get(&v, &p("/Resources/1/id")), Some(json!("b")));
    assert_eq!(pointer_get(&v, &p("/x/a~1b")), Some(json!(2)));
    assert_eq!(pointer_get(&v, &p("/missing")), None);
}

#[test]
fn link_header_next_is_found_among_other_relations() {
    let okta = r#"<https://x.okta.com/api/v1/users/00u1/groups?limit=2>; rel="self""#;
    assert_eq!(link_with_rel(okta, "next"), None);
    let both = r#"<https://x/a?limit=2>; rel="self", <https://x/a?after=00g2&limit=2>; rel="next""#;
    assert_eq!(
        link_with_rel(both, "next").as_deref(),
        Some("https://x/a?after=00g2&limit=2")
    );
    let github = r#"<https://api.github.com/orgs/o/members?page=2>; rel="next", <https://api.github.com/orgs/o/members?page=5>; rel="last""#;
    assert_eq!(
        link_with_rel(github, "next").as_deref(),
        Some("https://api.github.com/orgs/o/members?page=2")
    );
    assert_eq!(
        link_with_rel(r#"</p3>; title="x"; rel="prev next""#, "next").as_deref(),
        Some("/p3")
    );
    assert_eq!(link_with_rel("garbage", "next"), None);
}

#[test]
fn pages_concatenate_lists() {
    let a = json!({"groups": [1], "total": 3})
        .as_object()
        .unwrap()
        .clone();
    let b = json!({"groups": [2, 3], "total": 3})
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(
        Value::Object(merge_pages(a, b)),
        json!({"groups": [1, 2, 3], "total": 3})
    );
}
