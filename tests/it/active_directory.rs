//! The `active_directory` connector against a real Samba AD DC (see `samba.rs`), over LDAPS with a
//! delegated, non-admin service account. Every test checks the directory's effect: a contained user's real
//! bind is refused by AD as "account disabled" (data 533), group membership is gone, and restore brings
//! both back.

use std::sync::Arc;
use std::time::Duration;

use deprovd::{Connector, LdapConfig, LdapFlavor, Operation, Outcome, build_ldap_connector};
use serde_json::{Value, json};

use crate::kit::connector::{RunExt, instance, request};
use crate::kit::{DISABLE_ALL_POLICY, TestApp, eventually, policy_dir};
use crate::samba::{self, SambaDc};

/// The connector as production would configure it: LDAPS, a private CA, the delegated account.
fn connector(dc: &SambaDc, base_dn: &str) -> Arc<dyn Connector> {
    let secret = dc
        .dir()
        .join(format!("pw-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&secret, format!("{}\n", samba::SERVICE_PW)).expect("write secret file");
    let cfg: LdapConfig = toml::from_str(&format!(
        r#"
        url = "{url}"
        bind_dn = "{bind}"
        bind_password = "file:{secret}"
        base_dn = "{base_dn}"
        group_base_dn = "{base}"
        ca_file = "{ca}"
        timeout = "10s"
        "#,
        url = samba::URL,
        bind = samba::SERVICE_DN,
        secret = secret.display(),
        base = samba::BASE_DN,
        ca = dc.ca_file.display(),
    ))
    .expect("test config parses");
    build_ldap_connector("ad", &cfg, LdapFlavor::ActiveDirectory).expect("connector builds")
}

/// Samba start is blocking (seconds, once per run): keep it off the test's async runtime.
async fn dc() -> &'static SambaDc {
    tokio::task::spawn_blocking(samba::shared)
        .await
        .expect("samba start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contained_ad_user_cannot_bind_and_loses_groups_until_restored() {
    let dc = dc().await;
    assert!(
        dc.startup.as_secs() < 60,
        "Samba provisioning and start took {:?}",
        dc.startup
    );
    let (name, dn, password) = dc.create_user();
    let (other, other_dn, other_pw) = dc.create_user();
    let vpn = dc.create_group(&[&name, &other]);
    let admins = dc.create_group(&[&name]);
    assert_eq!(dc.bind(&dn, &password).await, Ok(()));
    let uac_before = dc.values(&dn, "userAccountControl").await;
    assert_eq!(uac_before, vec!["512"], "samba-tool creates NORMAL_ACCOUNT");
    let ad = connector(dc, samba::STAFF_DN);

    // Contain: disable (by email = the `mail` attribute) and remove groups (by sAMAccountName).
    let disabled = ad
        .expecting(
            Operation::DisableAccount,
            &format!("{name}@deprovd.test"),
            None,
            Outcome::Done,
        )
        .await;
    let disable_pre = disabled.pre_state.clone().expect("prior UAC recorded");
    assert_eq!(disable_pre["userAccountControl"], 512);
    assert_eq!(dc.values(&dn, "userAccountControl").await, vec!["514"]);
    let removed = ad
        .expecting(
            Operation::RemoveGroupMemberships,
            &name,
            None,
            Outcome::Done,
        )
        .await;
    let groups_pre = removed.pre_state.clone().expect("removed groups recorded");

    // The effect, as AD itself reports it.
    let refused = dc.bind(&dn, &password).await;
    let Err((rc, text)) = refused else {
        panic!("a disabled AD account must not bind")
    };
    assert_eq!(rc, 49, "invalidCredentials: {text}");
    assert!(
        text.contains("data 533"),
        "AD names the reason ACCOUNT_DISABLED (data 533): {text}"
    );
    assert_eq!(
        dc.values(&vpn, "member").await,
        vec![other_dn.to_lowercase()]
    );
    assert!(dc.values(&admins, "member").await.is_empty());
    assert!(dc.values(&dn, "memberOf").await.is_empty());
    assert_eq!(
        dc.bind(&other_dn, &other_pw).await,
        Ok(()),
        "only the subject is contained ({other})"
    );

    // Repeats are no-ops.
    ad.expecting(Operation::DisableAccount, &name, None, Outcome::AlreadyDone)
        .await;
    ad.expecting(
        Operation::RemoveGroupMemberships,
        &name,
        None,
        Outcome::AlreadyDone,
    )
    .await;

    // Restore from the recorded pre-states.
    ad.expecting(
        Operation::EnableAccount,
        &name,
        Some(disable_pre),
        Outcome::Done,
    )
    .await;
    ad.expecting(
        Operation::RestoreGroupMemberships,
        &name,
        Some(groups_pre),
        Outcome::Done,
    )
    .await;
    assert_eq!(dc.bind(&dn, &password).await, Ok(()), "binds again");
    assert_eq!(dc.values(&dn, "userAccountControl").await, uac_before);
    let mut vpn_members = vec![dn.to_lowercase(), other_dn.to_lowercase()];
    vpn_members.sort();
    assert_eq!(dc.values(&vpn, "member").await, vpn_members);
    assert_eq!(dc.values(&admins, "member").await, vec![dn.to_lowercase()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegated_account_cannot_disable_users_outside_its_ou() {
    let dc = dc().await;
    // A user in CN=Users: outside OU=Staff, where the delegation does not reach.
    let name = format!("x{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let password = "Outside-Pw-4711!";
    dc.tool(&["user", "create", &name, password]);
    let dn = format!("CN={name},CN=Users,{}", samba::BASE_DN);
    let ad = connector(dc, samba::BASE_DN);

    let r = ad
        .execute(&request(Operation::DisableAccount, &name, None))
        .await;
    let Outcome::Failed { reason } = &r.outcome else {
        panic!("expected a terminal permission failure, got {r:?}")
    };
    assert!(
        reason.contains("insufficientAccessRights"),
        "least privilege: the service account may not touch this user: {reason}"
    );
    assert_eq!(dc.values(&dn, "userAccountControl").await, vec!["512"]);
    assert_eq!(dc.bind(&dn, password).await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_binds_with_the_delegated_account_over_ldaps() {
    let dc = dc().await;
    let report = connector(dc, samba::STAFF_DN).check().await;
    assert!(report.ok, "{report:?}");
}

/// The whole path: a responder's lockout through the API → ledger → executor → AD, then restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_api_contains_an_ad_user_and_restore_undoes_it() {
    let dc = dc().await;
    let (name, dn, password) = dc.create_user();
    let group = dc.create_group(&[&name]);
    let secret = dc
        .dir()
        .join(format!("pw-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&secret, samba::SERVICE_PW).expect("write secret file");
    let data = tempfile::tempdir().expect("data dir");
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = TestApp::builder()
        .data_dir(data.path())
        .policies(policies.path())
        .fast_executor()
        .connector(
            "corp-ad",
            instance(json!({
                "type": "active_directory",
                "url": samba::URL,
                "bind_dn": samba::SERVICE_DN,
                "bind_password": format!("file:{}", secret.display()),
                "base_dn": samba::STAFF_DN,
                "ca_file": dc.ca_file.display().to_string(),
            })),
        )
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(15)).await;
    let post = |path: String, body: Option<Value>| {
        let app = &app;
        async move {
            let mut r = app.http.post(app.url(&path)).bearer_auth(&app.token);
            if let Some(b) = body {
                r = r.json(&b);
            }
            let r = r.send().await.expect("post");
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let all = |s: &Value, pred: &dyn Fn(&Value) -> bool| {
        s["actions"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(pred))
    };

    let (status, created) = post(
        "/v1/lockouts".into(),
        Some(json!({
            "subject": name,
            "connectors": ["corp-ad"],
            "operations": ["disable_account", "remove_group_memberships"],
            "reason": "password sprayed from a known-bad ASN",
            "ticket": "INC-533",
        })),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    eventually(
        Duration::from_secs(20),
        "lockout succeeds on AD",
        || async {
            let s = app.get_json(&format!("/v1/lockouts/{id}")).await;
            all(&s, &|a| a["state"] == "succeeded").then_some(())
        },
    )
    .await;
    let Err((49, text)) = dc.bind(&dn, &password).await else {
        panic!("the locked-out AD user must not bind")
    };
    assert!(text.contains("data 533"), "{text}");
    assert!(dc.values(&group, "member").await.is_empty());

    let (status, restored) = post(format!("/v1/lockouts/{id}/restore"), None).await;
    assert_eq!(status, 202, "{restored}");
    eventually(
        Duration::from_secs(20),
        "restore succeeds on AD",
        || async {
            let s = app.get_json(&format!("/v1/lockouts/{id}")).await;
            all(&s, &|a| {
                a["state"] == "restored" && a["reversal"]["state"] == "succeeded"
            })
            .then_some(())
        },
    )
    .await;
    assert_eq!(dc.bind(&dn, &password).await, Ok(()));
    assert_eq!(dc.values(&group, "member").await, vec![dn.to_lowercase()]);
    app.stop().await;
}
