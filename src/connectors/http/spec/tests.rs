use super::compile::parse_status;
use super::templates::single_expression;
use super::*;

fn problems(src: &str) -> Vec<String> {
    Spec::parse("t.yaml", src)
        .expect_err("spec should be rejected")
        .into_iter()
        .map(|p| p.to_string())
        .collect()
}

/// `got` has as many problems as `want`, and one starting with each of `want`.
fn assert_problems(got: &[String], want: &[&str]) {
    for w in want {
        assert!(
            got.iter().any(|g| g.starts_with(w)),
            "missing {w:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn builtin_specs_load() {
    for (file, src) in crate::connectors::http::BUILTIN_SPECS {
        Spec::parse(file, src).unwrap_or_else(|p| panic!("{file}: {p:?}"));
    }
}

#[test]
fn validation_lists_every_problem_with_its_path() {
    let got = problems(
        r#"
name: wrong
auth: [bearer, kerberos]
operations:
  frobnicate: { steps: [ { method: GET, path: / } ] }
  disable_account:
    steps:
      - name: read
        method: GET
        path: "/Users/{{ subject"
      - method: PATCH
        path: "/Users/{{ steps.nope.id }}"
        headers: { If-Match: "{{ steps.read.etagg }}" }
        body: { x: "{{ bogus }}" }
        outcomes: [ { status: "6xx", outcome: done } ]
        extract: { id: "no-slash" }
    record: { a: "{{ lookup.id }}" }
"#,
    );
    let want = [
        "t.yaml: name: ",
        "t.yaml: auth[1]: unknown auth scheme `kerberos`",
        "t.yaml: operations.frobnicate: unknown operation",
        "t.yaml: operations.disable_account[0].path: template error",
        "t.yaml: operations.disable_account[1].path: unknown step `nope`",
        "t.yaml: operations.disable_account[1].headers.If-Match: step `read` has no extract `etagg`",
        "t.yaml: operations.disable_account[1].body.x: unknown value `bogus`",
        "t.yaml: operations.disable_account[1].extract.id: `no-slash` is not a JSON pointer",
        "t.yaml: operations.disable_account[1].outcomes[0].status: `6xx` is not a status pattern",
        "t.yaml: operations.disable_account.record.a: uses `lookup` but the spec has no `lookup` operation",
    ];
    assert_problems(&got, &want);
}

#[test]
fn page_token_and_offset_paging_are_checked() {
    let got = problems(
        r#"
name: t
auth: [bearer]
operations:
  check:
    steps:
      - { method: GET, path: /a, paginate: { page_token: { pointer: "no-slash", param: pageToken } } }
      - { method: GET, path: /b, paginate: { offset: { start: first, limit: max, size: 0 } } }
      - { method: GET, path: /c, paginate: { offset: { start: first, limit: max } } }
"#,
    );
    let want = [
        "t.yaml: operations.check[0].paginate.page_token.pointer: ",
        "t.yaml: operations.check[1].paginate.offset.size: must be at least 1",
    ];
    assert_problems(&got, &want);
}

#[test]
fn unknown_fields_are_refused() {
    let got = problems("name: t\nauth: [bearer]\noperations: {}\nsurprise: 1\n");
    assert!(got[0].contains("surprise"), "{got:?}");
}

#[test]
fn item_is_only_defined_in_foreach_steps() {
    let got = problems(
        "name: t\nauth: [none]\noperations:\n  notify:\n    steps:\n      - { method: POST, path: \"/{{ item }}\" }\n",
    );
    assert!(
        got[0].contains("only defined in a `foreach` step"),
        "{got:?}"
    );
}

#[test]
fn endpoints_and_header_predicates_are_checked() {
    let got = problems(
        r#"
name: t
auth: [bearer]
endpoints:
  web: { base_url: "http://plain.example.com/api" }
operations:
  notify:
    steps:
      - method: POST
        endpoint: nope
        path: /x
        outcomes:
          - { status: 403, header: { name: x-ratelimit-remaining }, outcome: retry }
          - { status: 403, header: { name: "bad header", exists: true }, outcome: retry }
"#,
    );
    let want = [
        "t.yaml: endpoints.web.base_url: ",
        "t.yaml: operations.notify[0].endpoint: `nope` is not declared",
        "t.yaml: operations.notify[0].outcomes[0].header: give exactly one",
        "t.yaml: operations.notify[0].outcomes[1].header.name: ",
    ];
    assert_problems(&got, &want);
}

#[test]
fn contains_test_keeps_objects_whose_list_holds_the_value() {
    let env = new_env();
    let out = env
        .render_str(
            r#"{{ teams | selectattr("logins", "contains", "mona") | map(attribute="slug") | list | tojson }}"#,
            minijinja::context! { teams => serde_json::json!([
                {"slug": "a", "logins": ["mona", "hubot"]},
                {"slug": "b", "logins": ["monalisa"]},
                {"slug": "c", "logins": null},
            ]) },
        )
        .expect("renders");
    assert_eq!(out, r#"["a"]"#);
}

#[test]
fn status_patterns() {
    assert_eq!(
        parse_status(&StatusPattern::Text("4xx".into())).unwrap(),
        vec![(400, 499)]
    );
    assert_eq!(
        parse_status(&StatusPattern::Text("500-503".into())).unwrap(),
        vec![(500, 503)]
    );
    assert_eq!(
        parse_status(&StatusPattern::List(vec![
            StatusPattern::Code(401),
            StatusPattern::Text("403".into())
        ]))
        .unwrap(),
        vec![(401, 401), (403, 403)]
    );
    assert!(parse_status(&StatusPattern::Code(99)).is_err());
    assert!(parse_status(&StatusPattern::Text("503-500".into())).is_err());
}

#[test]
fn single_expression_detection() {
    assert_eq!(single_expression("{{ steps.a.b }}"), Some("steps.a.b"));
    assert_eq!(single_expression(" {{- x -}} "), Some("x"));
    assert_eq!(single_expression("a {{ x }}"), None);
    assert_eq!(single_expression("{{ x }}{{ y }}"), None);
}
