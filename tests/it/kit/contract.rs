//! The connector contract suite: every target the suite can run (the vendor fakes, slapd, and the
//! real SCIM server when installed) goes through the same round trip, the way the ledger conformance
//! suite runs every case on both stores:
//!
//! contain → contain again (`already_done`, nothing changed) → restore from the first pre-state →
//! the target's state equals the state before.
//!
//! Each vendor model contributes its case (`vendors::<vendor>::contract_case()`), and each real
//! server its own next to its tests; the table below lists them. The per-connector tests keep
//! asserting the wire details; this suite asserts the one guarantee every connector shares.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use deprovd::{Connector, Operation, Outcome};

use super::connector::run;
use super::fake::{Fake, Vendor};
use super::vendors;

/// A snapshot of the target's state as a comparable string (the state model's `Debug`).
pub(crate) type StateFn =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// Disable the account and remove its group memberships; restore both.
pub(crate) const DISABLE_AND_UNGROUP: [(Operation, Operation); 2] = [
    (Operation::DisableAccount, Operation::EnableAccount),
    (
        Operation::RemoveGroupMemberships,
        Operation::RestoreGroupMemberships,
    ),
];

/// A state reader over a vendor fake: what `show` prints of the vendor's model (leaving out what a
/// round trip cannot give back, such as cleared sessions).
pub(crate) fn fake_state<V: Vendor>(fake: &Fake<V>, show: fn(&V) -> String) -> StateFn {
    let fake = fake.clone();
    Box::new(move || {
        let state = fake.vendor(|v| show(v));
        Box::pin(async move { state })
    })
}

/// One target under the contract.
pub(crate) struct Case {
    pub name: &'static str,
    pub connector: Arc<dyn Connector>,
    pub subject: String,
    /// (contain, restore) operations; contained in order, restored in reverse order.
    pub pairs: Vec<(Operation, Operation)>,
    /// The target state the round trip must leave as it found it.
    pub state: StateFn,
    /// Called after every operation, for targets whose changes settle asynchronously
    /// (CrowdStrike's containment is `pending` until the sensor acts).
    pub settle: Option<Box<dyn Fn() + Send + Sync>>,
    /// Servers, fakes and secret files that must live as long as the case.
    pub keep: Box<dyn std::any::Any + Send>,
}

impl Case {
    fn settle(&self) {
        if let Some(f) = &self.settle {
            f();
        }
    }
}

/// Run the round trip on `case`; panics naming the case and the step that broke the contract.
pub(crate) async fn check(case: Case) {
    let name = case.name;
    let c = &*case.connector;
    let before = (case.state)().await;
    let mut pre_states = Vec::new();
    for (contain, _) in &case.pairs {
        let first = run(c, *contain, &case.subject, None).await;
        assert_eq!(
            first.outcome,
            Outcome::Done,
            "{name}: {contain:?} on a live subject is done: {}",
            first.summary
        );
        case.settle();
        let contained = (case.state)().await;
        assert_ne!(contained, before, "{name}: {contain:?} changed the target");
        let again = run(c, *contain, &case.subject, None).await;
        assert_eq!(
            again.outcome,
            Outcome::AlreadyDone,
            "{name}: {contain:?} again is already_done: {}",
            again.summary
        );
        case.settle();
        assert_eq!(
            (case.state)().await,
            contained,
            "{name}: a repeated {contain:?} changes nothing"
        );
        pre_states.push(first.pre_state);
    }
    for ((_, restore), pre) in case.pairs.iter().zip(pre_states).rev() {
        let r = run(c, *restore, &case.subject, pre).await;
        assert_eq!(
            r.outcome,
            Outcome::Done,
            "{name}: {restore:?} from the recorded pre-state is done: {}",
            r.summary
        );
        case.settle();
    }
    assert_eq!(
        (case.state)().await,
        before,
        "{name}: contain → restore leaves the target as it was"
    );
}

/// Every target, one after the other (a failure names its case). SCIM needs scim2-server; without it
/// that case is skipped with the reason printed.
#[tokio::test]
async fn every_connector_contains_repeats_as_already_done_and_restores_the_state_it_found() {
    let mut cases = vec![
        vendors::okta::contract_case().await,
        vendors::entra::contract_case().await,
        vendors::keycloak::contract_case().await,
        vendors::crowdstrike::contract_case().await,
        vendors::slack::contract_case().await,
        crate::ldap::slapd_contract_case().await,
    ];
    match crate::scim_server::scim_contract_case().await {
        Ok(case) => cases.push(case),
        Err(reason) => eprintln!("contract: SCIM case skipped: {reason}"),
    }
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    for case in cases {
        check(case).await;
    }
    eprintln!("contract: held for {names:?}");
}
