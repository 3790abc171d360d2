//! The OpenAPI 3.1 document (generated from the handlers' types, `src/api/openapi.rs`): the served
//! one is the checked-in one and what `deprovd schema openapi` prints, and `openapi-spec-validator`
//! accepts it; and schemathesis, run against a live `deprovd run` with a token of every role (and
//! none), finds no 5xx and no answer the document does not describe. (That every route is in it,
//! and that the checked-in file is the generated one, are unit tests beside the router.)

use std::process::{Command, Stdio};

use crate::kit::{TestApp, until_ok};
use crate::scim_server::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_deprovd");

/// A Python tool: the checkout's `.venv/bin/NAME` (where scripts/test.sh installs it), else `PATH`.
fn tool(name: &str) -> Command {
    let venv = repo(".venv/bin").join(name);
    Command::new(if venv.is_file() {
        venv.into_os_string()
    } else {
        name.into()
    })
}

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[tokio::test]
async fn the_served_document_is_the_checked_in_one_and_is_valid_openapi() {
    let app = TestApp::builder().spawn().await;
    let served = app
        .http
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status().as_u16(), 200);
    assert_eq!(
        served.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let served = served.text().await.unwrap();
    let checked_in = std::fs::read_to_string(repo("docs/openapi.json")).unwrap();
    assert_eq!(served, checked_in);
    app.stop().await;

    let printed = Command::new(BIN)
        .args(["schema", "openapi"])
        .output()
        .expect("deprovd schema openapi");
    assert!(printed.status.success());
    assert!(
        printed.stdout == checked_in.as_bytes(),
        "`deprovd schema openapi` is not docs/openapi.json: rewrite it with \
         `deprovd schema openapi > docs/openapi.json`"
    );
    let out = tool("openapi-spec-validator")
        .arg(repo("docs/openapi.json"))
        .output()
        .expect("openapi-spec-validator (pip, in .venv; scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A lockout, a lockout held for four eyes and an alert: actions (planned, failing, held), lockouts,
/// approvals and audit records of every kind for the GET routes to answer with.
async fn seed(base: &str) {
    let http = reqwest::Client::new();
    let alert = std::fs::read_to_string(repo("policies/samples/alerts.jsonl")).unwrap();
    let alert = alert.lines().next().unwrap().to_string();
    for (role, path, body) in [
        (
            "responder",
            "/v1/lockouts",
            r#"{"subject": "seed@corp.example", "reason": "seed", "ticket": "INC-1"}"#.to_string(),
        ),
        (
            "responder",
            "/v1/lockouts",
            r#"{"subject": "held@corp.example", "reason": "seed", "require_approval": true}"#
                .to_string(),
        ),
        ("ingest", "/v1/alerts", alert),
    ] {
        let r = http
            .post(format!("{base}{path}"))
            .bearer_auth(format!("tok-{role}-0123456789"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(
            status,
            202,
            "{path}: {}",
            r.text().await.unwrap_or_default()
        );
    }
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("deprovd.toml");
    let mut text = format!(
        "data_dir = \"{d}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n[state]\npath = \"{d}/ledger\"\n",
        d = dir.path().display()
    );
    // Every role the API has (`Role` in src/api/caller.rs); a token of any other name fails to load.
    let roles = ["ingest", "viewer", "responder", "approver", "admin"];
    for role in roles {
        text.push_str(&format!(
            "[[api.tokens]]\nname = \"st-{role}\"\nrole = \"{role}\"\ntoken = \"env:ST_{}\"\n",
            role.to_uppercase()
        ));
    }
    // A connector nobody answers: seeded actions stay in the ledger with errors and retry times, so
    // the answers schemathesis checks carry real records, not only empty lists.
    text.push_str(&format!(
        "[connectors.hook]\ntype = \"webhook\"\nbase_url = \"http://127.0.0.1:{}\"\nauth = {{ scheme = \"none\" }}\nvars = {{ path = \"hook\" }}\noperations = {:?}\n",
        free_port(),
        crate::kit::connector::WEBHOOK_OPERATIONS
    ));
    std::fs::write(&config, text).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for role in roles {
        cmd.env(
            format!("ST_{}", role.to_uppercase()),
            format!("tok-{role}-0123456789"),
        );
    }
    let mut child = cmd.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    until_ok(&format!("{base}/readyz"), "deprovd ready").await;
    seed(&base).await;
    let mut report = String::new();
    let mut failed = false;
    for role in roles.into_iter().chain(["anonymous"]) {
        let out = tokio::task::spawn_blocking({
            let base = base.clone();
            let workdir = dir.path().to_path_buf();
            move || {
                tool("schemathesis")
                    // Its crash cache (`.schemathesis/`) goes to the temp dir, not the checkout.
                    .current_dir(&workdir)
                    .args(["run", &format!("{base}/v1/openapi.json"), "--url", &base])
                    .args(if role == "anonymous" {
                        vec![]
                    } else {
                        vec![
                            "-H".to_string(),
                            format!("Authorization: Bearer tok-{role}-0123456789"),
                        ]
                    })
                    // Push deliveries are `application/secevent+jwt` (signed JWTs), which schemathesis
                    // cannot generate; tests/it/ssf.rs covers that route with real SETs.
                    .args(["--exclude-path", "/v1/ssf/{receiver}"])
                    .args([
                        "--checks",
                        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                        "--phases",
                        "examples,coverage,fuzzing",
                        "--max-examples",
                        "30",
                        // One worker: schemathesis 4.32 raised an internal KeyError (its own
                        // strategy cache) once with two; the server is not what is under test there.
                        "--workers",
                        "1",
                        "--seed",
                        "12",
                        "--no-color",
                    ])
                    .env("SCHEMATHESIS_HOOKS", "")
                    .output()
                    .expect("schemathesis (pip, in .venv; scripts/test.sh installs it)")
            }
        })
        .await
        .unwrap();
        failed |= !out.status.success();
        report.push_str(&format!(
            "--- as {role}: {}\n{}\n{}\n",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(!failed, "{report}");
}
