//! The LDAP connector against a real slapd with the ppolicy overlay (see `slapd.rs`): every test checks
//! the directory's effect — who can bind, who is in which group — not just the connector's answer.

use std::sync::Arc;

use deprovd::{
    Connector, LDAP_PERMANENT_LOCK, LdapConfig, LdapFlavor, Memberships, Operation, Outcome,
    SecretRef, build_ldap_connector,
};
use serde_json::{Value, json};

use crate::kit::connector::{RunExt, request};
use crate::slapd::{self, Slapd};

const PEOPLE: &str = "ou=people,dc=example,dc=org";
const GROUPS: &str = "ou=groups,dc=example,dc=org";
const ENGINEERING: &str = "cn=engineering,ou=groups,dc=example,dc=org";
const VPN: &str = "cn=vpn,ou=groups,dc=example,dc=org";
const DEVS: &str = "cn=devs,ou=groups,dc=example,dc=org";

/// A connector for `server`, binding as `bind_dn` with `password` (kept in a secret file, as in production).
fn connector(server: &Slapd, url: &str, bind_dn: &str, password: &str) -> Arc<dyn Connector> {
    connector_of(server, url, bind_dn, password, LdapFlavor::OpenLdap)
}

fn connector_of(
    server: &Slapd,
    url: &str,
    bind_dn: &str,
    password: &str,
    flavor: LdapFlavor,
) -> Arc<dyn Connector> {
    connector_with(server, url, bind_dn, password, flavor, "")
}

/// `extra`: more TOML lines (TLS settings).
fn connector_with(
    server: &Slapd,
    url: &str,
    bind_dn: &str,
    password: &str,
    flavor: LdapFlavor,
    extra: &str,
) -> Arc<dyn Connector> {
    let secret = server.dir().join(format!("pw-{}", rand_suffix()));
    std::fs::write(&secret, format!("{password}\n")).expect("write secret file");
    let cfg: LdapConfig = toml::from_str(&format!(
        r#"
        url = "{url}"
        bind_dn = "{bind_dn}"
        bind_password = "file:{secret}"
        base_dn = "{PEOPLE}"
        group_base_dn = "{GROUPS}"
        timeout = "5s"
        {extra}
        "#,
        secret = secret.display()
    ))
    .expect("test config parses");
    assert!(matches!(cfg.bind_password, SecretRef::File(_)));
    build_ldap_connector("directory", &cfg, flavor).expect("connector builds")
}

fn service(server: &Slapd) -> Arc<dyn Connector> {
    connector(server, &server.url, slapd::SERVICE_DN, slapd::SERVICE_PW)
}

fn rand_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[tokio::test]
async fn disabled_user_cannot_bind_until_enabled() {
    let server = Slapd::start();
    let ldap = service(&server);
    assert!(server.can_bind(slapd::ALICE_DN, slapd::ALICE_PW).await);

    let r = ldap
        .expecting(
            Operation::DisableAccount,
            "alice@example.org",
            None,
            Outcome::Done,
        )
        .await;
    let pre = r.pre_state.expect("disable records the prior lock state");
    assert_eq!(pre["pwdAccountLockedTime"], Value::Null);
    assert_eq!(pre["dn"], slapd::ALICE_DN);
    assert_eq!(
        server.values(slapd::ALICE_DN, "pwdAccountLockedTime").await,
        vec![LDAP_PERMANENT_LOCK.to_string()]
    );
    assert!(
        !server.can_bind(slapd::ALICE_DN, slapd::ALICE_PW).await,
        "a locked account must not bind, even with the right password"
    );
    assert!(
        server.can_bind(slapd::BOB_DN, slapd::BOB_PW).await,
        "only the subject is locked"
    );

    ldap.expecting(
        Operation::DisableAccount,
        "alice",
        None,
        Outcome::AlreadyDone,
    )
    .await;

    ldap.expecting(
        Operation::EnableAccount,
        "alice",
        Some(pre.clone()),
        Outcome::Done,
    )
    .await;
    assert!(
        server
            .values(slapd::ALICE_DN, "pwdAccountLockedTime")
            .await
            .is_empty()
    );
    assert!(server.can_bind(slapd::ALICE_DN, slapd::ALICE_PW).await);

    ldap.expecting(
        Operation::EnableAccount,
        "alice",
        Some(pre),
        Outcome::AlreadyDone,
    )
    .await;
}

#[tokio::test]
async fn enable_restores_a_lock_that_predated_the_action() {
    let server = Slapd::start();
    let ldap = service(&server);
    // Bob was locked by an administrator before deprovd acted: the reversal must not unlock him.
    let first = ldap
        .execute(&request(Operation::DisableAccount, "bob", None))
        .await;
    assert_eq!(first.outcome, Outcome::Done);
    let second = ldap
        .execute(&request(Operation::DisableAccount, "bob", None))
        .await;
    assert_eq!(second.outcome, Outcome::AlreadyDone);
    ldap.expecting(
        Operation::EnableAccount,
        "bob",
        second.pre_state,
        Outcome::AlreadyDone,
    )
    .await;
    assert!(!server.can_bind(slapd::BOB_DN, slapd::BOB_PW).await);
}

async fn memberships(server: &Slapd) -> Vec<Vec<String>> {
    vec![
        server.values(ENGINEERING, "member").await,
        server.values(VPN, "member").await,
        server.values(DEVS, "memberUid").await,
    ]
}

#[tokio::test]
async fn group_removal_round_trip_leaves_memberships_as_before() {
    let server = Slapd::start();
    let ldap = service(&server);
    let before = memberships(&server).await;

    let r = ldap
        .expecting(
            Operation::RemoveGroupMemberships,
            "alice",
            None,
            Outcome::Done,
        )
        .await;
    let pre = r.pre_state.expect("removal records the groups");
    assert_eq!(pre["groups"], json!([DEVS, ENGINEERING, VPN]));
    assert_eq!(
        memberships(&server).await,
        vec![
            vec![slapd::BOB_DN.to_string()],
            vec![slapd::BOB_DN.to_string()],
            vec!["bob".to_string()],
        ],
        "alice is out of every group (member and memberUid), bob untouched"
    );

    ldap.expecting(
        Operation::RemoveGroupMemberships,
        "alice",
        None,
        Outcome::AlreadyDone,
    )
    .await;

    ldap.expecting(
        Operation::RestoreGroupMemberships,
        "alice",
        Some(pre.clone()),
        Outcome::Done,
    )
    .await;
    assert_eq!(memberships(&server).await, before);

    let again = ldap
        .execute(&request(
            Operation::RestoreGroupMemberships,
            "alice",
            Some(pre),
        ))
        .await;
    assert_eq!(
        again.outcome,
        Outcome::AlreadyDone,
        "already a member is fine"
    );
    assert_eq!(memberships(&server).await, before);
}

#[tokio::test]
async fn restore_from_a_bare_group_list_picks_each_groups_member_attribute() {
    let server = Slapd::start();
    let ldap = service(&server);
    let before = memberships(&server).await;
    ldap.expecting(
        Operation::RemoveGroupMemberships,
        "alice",
        None,
        Outcome::Done,
    )
    .await;

    // A responder restoring by hand may only know the group DNs.
    let pre = json!({ "groups": [ENGINEERING, VPN, DEVS] });
    ldap.expecting(
        Operation::RestoreGroupMemberships,
        "alice",
        Some(pre),
        Outcome::Done,
    )
    .await;
    assert_eq!(memberships(&server).await, before);
}

#[tokio::test]
async fn retried_removal_keeps_the_groups_an_earlier_attempt_recorded() {
    let server = Slapd::start();
    let ldap = service(&server);
    let before = memberships(&server).await;
    // An earlier attempt removed alice from `engineering`, recorded it, then lost its connection.
    let earlier = json!({ "memberships": [
        { "group": ENGINEERING, "attribute": "member", "value": slapd::ALICE_DN }
    ]});
    let mut root = server.root().await;
    root.modify(
        ENGINEERING,
        vec![ldap3::Mod::Delete("member", [slapd::ALICE_DN].into())],
    )
    .await
    .expect("modify request")
    .success()
    .expect("remove alice from engineering");

    let r = ldap
        .expecting(
            Operation::RemoveGroupMemberships,
            "alice",
            Some(earlier),
            Outcome::Done,
        )
        .await;
    let pre = r.pre_state.expect("pre-state");
    assert_eq!(pre["groups"], json!([DEVS, ENGINEERING, VPN]));
    ldap.expecting(
        Operation::RestoreGroupMemberships,
        "alice",
        Some(pre),
        Outcome::Done,
    )
    .await;
    assert_eq!(memberships(&server).await, before);
}

#[tokio::test]
async fn a_group_that_cannot_lose_its_last_member_fails_the_action_but_not_the_rest() {
    let server = Slapd::start();
    let ldap = service(&server);
    let solo = "cn=solo,ou=groups,dc=example,dc=org";
    let mut root = server.root().await;
    root.add(
        solo,
        vec![
            ("objectClass", ["groupOfNames"].into()),
            ("cn", ["solo"].into()),
            ("member", [slapd::ALICE_DN].into()),
        ],
    )
    .await
    .expect("add request")
    .success()
    .expect("add group solo");
    let before = memberships(&server).await;

    let r = ldap
        .execute(&request(Operation::RemoveGroupMemberships, "alice", None))
        .await;
    let Outcome::Failed { reason } = &r.outcome else {
        panic!("alice is still in `solo`: the action must fail: {r:?}");
    };
    assert!(reason.contains("objectClassViolation"), "{reason}");
    assert!(reason.contains("placeholder"), "{reason}");
    let pre = r.pre_state.clone().expect("pre-state even on failure");
    assert_eq!(pre["groups"], json!([DEVS, ENGINEERING, solo, VPN]));
    assert_eq!(
        server.values(ENGINEERING, "member").await,
        vec![slapd::BOB_DN],
        "the other groups were still cleared"
    );
    assert_eq!(server.values(solo, "member").await, vec![slapd::ALICE_DN]);

    ldap.expecting(
        Operation::RestoreGroupMemberships,
        "alice",
        Some(pre),
        Outcome::Done,
    )
    .await;
    assert_eq!(memberships(&server).await, before);
}

#[tokio::test]
async fn an_ambiguous_subject_fails_and_locks_nobody() {
    let server = Slapd::start();
    let ldap = service(&server);
    let r = ldap
        .execute(&request(
            Operation::DisableAccount,
            "team@example.org",
            None,
        ))
        .await;
    let Outcome::Failed { reason } = &r.outcome else {
        panic!("two entries match: must fail: {r:?}");
    };
    assert!(reason.contains("matches 2 entries"), "{reason}");
    assert!(server.can_bind(slapd::ALICE_DN, slapd::ALICE_PW).await);
    assert!(server.can_bind(slapd::BOB_DN, slapd::BOB_PW).await);
}

#[tokio::test]
async fn filter_injection_matches_nobody() {
    let server = Slapd::start();
    let ldap = service(&server);
    for subject in ["*)(uid=*", "*", "alice)(|(uid=*", "*)(|(objectClass=*"] {
        for op in [Operation::DisableAccount, Operation::RemoveGroupMemberships] {
            let r = ldap.execute(&request(op, subject, None)).await;
            assert_eq!(r.outcome, Outcome::NotFound, "{op} {subject:?}: {r:?}");
        }
    }
    assert!(server.can_bind(slapd::ALICE_DN, slapd::ALICE_PW).await);
    assert!(server.can_bind(slapd::BOB_DN, slapd::BOB_PW).await);
    assert_eq!(server.values(ENGINEERING, "member").await.len(), 2);
}

#[tokio::test]
async fn group_memberships_list_every_group_holding_the_user_and_change_nothing() {
    let server = Slapd::start();
    let ldap = service(&server);
    let before = memberships(&server).await;
    assert!(ldap.lists_groups());
    let Memberships::Groups(mut groups) = ldap.group_memberships("alice").await else {
        panic!("groups expected");
    };
    groups.sort();
    // member, uniqueMember and memberUid groups alike: the same probes as the removal.
    assert_eq!(groups, [DEVS, ENGINEERING, VPN]);
    assert_eq!(
        ldap.group_memberships("mallory@example.org").await,
        Memberships::NotFound
    );
    assert_eq!(memberships(&server).await, before, "read-only");
}

#[tokio::test]
async fn unknown_user_is_not_found() {
    let server = Slapd::start();
    let ldap = service(&server);
    for op in [
        Operation::DisableAccount,
        Operation::EnableAccount,
        Operation::RemoveGroupMemberships,
    ] {
        let r = ldap
            .execute(&request(op, "mallory@example.org", None))
            .await;
        assert_eq!(r.outcome, Outcome::NotFound, "{op}: {r:?}");
    }
}

#[tokio::test]
async fn wrong_bind_password_fails_terminally_with_a_fix() {
    let server = Slapd::start();
    let ldap = connector(&server, &server.url, slapd::SERVICE_DN, "not-the-password");
    let r = ldap
        .execute(&request(Operation::DisableAccount, "alice", None))
        .await;
    let Outcome::Failed { reason } = r.outcome else {
        panic!("bad credentials must be terminal: {r:?}");
    };
    assert!(reason.contains("invalidCredentials"), "{reason}");
    assert!(reason.contains("bind_password"), "{reason}");
    let report = ldap.check().await;
    assert!(!report.ok);
    assert!(report.fix.is_some());
    assert!(server.can_bind(slapd::ALICE_DN, slapd::ALICE_PW).await);
}

#[tokio::test]
async fn missing_write_permission_fails_with_the_acl_hint() {
    let server = Slapd::start();
    let ldap = connector(&server, &server.url, slapd::READER_DN, slapd::READER_PW);
    let r = ldap
        .execute(&request(Operation::DisableAccount, "alice", None))
        .await;
    let Outcome::Failed { reason } = r.outcome else {
        panic!("insufficient rights must be terminal: {r:?}");
    };
    assert!(reason.contains("insufficientAccessRights"), "{reason}");
    assert!(reason.contains("docs/connectors/ldap.md"), "{reason}");
    assert!(server.can_bind(slapd::ALICE_DN, slapd::ALICE_PW).await);

    let r = ldap
        .execute(&request(Operation::RemoveGroupMemberships, "alice", None))
        .await;
    assert!(matches!(r.outcome, Outcome::Failed { .. }), "{r:?}");
    assert_eq!(server.values(ENGINEERING, "member").await.len(), 2);
}

#[tokio::test]
async fn unreachable_server_is_retried() {
    let server = Slapd::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = closed.local_addr().expect("port").port();
    drop(closed);
    let ldap = connector(
        &server,
        &format!("ldap://127.0.0.1:{port}"),
        slapd::SERVICE_DN,
        slapd::SERVICE_PW,
    );
    let r = ldap
        .execute(&request(Operation::DisableAccount, "alice", None))
        .await;
    assert!(matches!(r.outcome, Outcome::Retry { .. }), "{r:?}");
    assert!(!ldap.check().await.ok);
}

#[tokio::test]
async fn check_passes_and_changes_nothing() {
    let server = Slapd::start();
    let ldap = service(&server);
    let before = memberships(&server).await;
    let report = ldap.check().await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.connector, "directory");
    assert_eq!(memberships(&server).await, before);
    assert!(server.can_bind(slapd::ALICE_DN, slapd::ALICE_PW).await);
}

/// The operational tests use the service account; this shows its grants are really that narrow, so
/// those tests prove the documented ACLs suffice.
#[tokio::test]
async fn service_account_sees_only_what_the_documented_acls_grant() {
    let server = Slapd::start();
    let as_service = |dn: &'static str, attr: &'static str| {
        let server = &server;
        async move {
            server
                .values_as(slapd::SERVICE_DN, slapd::SERVICE_PW, dn, attr)
                .await
        }
    };
    assert_eq!(as_service(slapd::ALICE_DN, "uid").await, vec!["alice"]);
    assert_eq!(as_service(ENGINEERING, "member").await.len(), 2);
    for attr in ["cn", "sn", "userPassword", "homeDirectory"] {
        assert!(
            as_service(slapd::ALICE_DN, attr).await.is_empty(),
            "service account must not read {attr}"
        );
    }
    assert!(as_service(slapd::SERVICE_DN, "cn").await.is_empty());
}

#[tokio::test]
async fn revoke_sessions_is_unsupported() {
    let server = Slapd::start();
    let ldap = service(&server);
    assert!(!ldap.supports(Operation::RevokeSessions));
    assert!(ldap.supports(Operation::DisableAccount));
    let r = ldap
        .execute(&request(Operation::RevokeSessions, "alice", None))
        .await;
    assert!(matches!(r.outcome, Outcome::Failed { .. }), "{r:?}");
}

/// The `active_directory` flavor's LDAP logic against slapd with an AD-shaped schema. What this cannot
/// show is AD's own effect (a disabled account refused at bind): that needs a Samba AD DC.
#[tokio::test]
async fn ad_flavor_toggles_only_the_accountdisable_bit() {
    let server = Slapd::start();
    let ad = connector_of(
        &server,
        &server.url,
        slapd::SERVICE_DN,
        slapd::SERVICE_PW,
        LdapFlavor::ActiveDirectory,
    );
    let uac = |dn: &'static str| {
        let server = &server;
        async move { server.values(dn, "userAccountControl").await }
    };

    // By userPrincipalName (the default AD filter); DONT_EXPIRE_PASSWORD (0x10000) must survive.
    let r = ad
        .expecting(
            Operation::DisableAccount,
            "carol@corp.example.org",
            None,
            Outcome::Done,
        )
        .await;
    let pre = r.pre_state.expect("prior userAccountControl recorded");
    assert_eq!(pre["userAccountControl"], 66048);
    assert_eq!(uac(slapd::CAROL_DN).await, vec!["66050"]);
    let again = ad
        .execute(&request(Operation::DisableAccount, "carol", None))
        .await;
    assert_eq!(again.outcome, Outcome::AlreadyDone);
    ad.expecting(Operation::EnableAccount, "carol", Some(pre), Outcome::Done)
        .await;
    assert_eq!(uac(slapd::CAROL_DN).await, vec!["66048"]);

    // Dave was disabled before deprovd acted: disable is a no-op and its reversal keeps him disabled.
    let r = ad
        .expecting(
            Operation::DisableAccount,
            "dave",
            None,
            Outcome::AlreadyDone,
        )
        .await;
    ad.expecting(
        Operation::EnableAccount,
        "dave",
        r.pre_state,
        Outcome::AlreadyDone,
    )
    .await;
    assert_eq!(uac(slapd::DAVE_DN).await, vec!["514"]);

    // Group removal uses `member` only; round trip restores it.
    let staff = "cn=ad-staff,ou=groups,dc=example,dc=org";
    let before = server.values(staff, "member").await;
    let r = ad
        .expecting(
            Operation::RemoveGroupMemberships,
            "carol",
            None,
            Outcome::Done,
        )
        .await;
    assert_eq!(server.values(staff, "member").await, vec![slapd::BOB_DN]);
    ad.expecting(
        Operation::RestoreGroupMemberships,
        "carol",
        r.pre_state,
        Outcome::Done,
    )
    .await;
    assert_eq!(server.values(staff, "member").await, before);
}

#[tokio::test]
async fn ldaps_and_starttls_trust_a_private_ca() {
    let server = Slapd::start_tls();
    let ldaps = server.ldaps_url.clone().expect("TLS server");
    let ca = server.ca_file.clone().expect("CA file");
    let over_ldaps = connector_with(
        &server,
        &ldaps,
        slapd::SERVICE_DN,
        slapd::SERVICE_PW,
        LdapFlavor::OpenLdap,
        &format!("ca_file = \"{}\"", ca.display()),
    );
    let r = over_ldaps
        .expecting(Operation::DisableAccount, "alice", None, Outcome::Done)
        .await;
    assert!(!server.can_bind(slapd::ALICE_DN, slapd::ALICE_PW).await);

    let over_starttls = connector_with(
        &server,
        &server.url,
        slapd::SERVICE_DN,
        slapd::SERVICE_PW,
        LdapFlavor::OpenLdap,
        &format!("starttls = true\nca_file = \"{}\"", ca.display()),
    );
    over_starttls
        .expecting(
            Operation::EnableAccount,
            "alice",
            r.pre_state,
            Outcome::Done,
        )
        .await;
    assert!(server.can_bind(slapd::ALICE_DN, slapd::ALICE_PW).await);
}

#[tokio::test]
async fn untrusted_certificate_fails_terminally_with_a_fix() {
    let server = Slapd::start_tls();
    let ldaps = server.ldaps_url.clone().expect("TLS server");
    // No ca_file: the system store does not know the throwaway CA.
    let ldap = connector(&server, &ldaps, slapd::SERVICE_DN, slapd::SERVICE_PW);
    let r = ldap
        .execute(&request(Operation::DisableAccount, "alice", None))
        .await;
    let Outcome::Failed { reason } = r.outcome else {
        panic!("an untrusted certificate must not be retried: {r:?}");
    };
    assert!(reason.contains("TLS"), "{reason}");
    assert!(server.can_bind(slapd::ALICE_DN, slapd::ALICE_PW).await);
}

/// slapd in the connector contract suite: lock and group removal, then back; alice's lock and every
/// group's members as before.
pub(crate) async fn slapd_contract_case() -> crate::kit::contract::Case {
    let server = Arc::new(Slapd::start());
    let ldap = service(&server);
    let s = server.clone();
    crate::kit::contract::Case {
        name: "slapd",
        connector: ldap,
        subject: "alice".into(),
        pairs: vec![
            (Operation::DisableAccount, Operation::EnableAccount),
            (
                Operation::RemoveGroupMemberships,
                Operation::RestoreGroupMemberships,
            ),
        ],
        state: Box::new(move || {
            let s = s.clone();
            Box::pin(async move {
                let lock = s.values(slapd::ALICE_DN, "pwdAccountLockedTime").await;
                format!("{lock:?} {:?}", memberships(&s).await)
            })
        }),
        settle: None,
        keep: Box::new(server),
    }
}
