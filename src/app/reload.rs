//! Reloads beside the file watchers: SIGHUP (live and shadow policy bundles, the API's TLS
//! certificate), and the shadow bundle's own loading and watcher.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::append_best_effort;
use crate::api::ApiState;
use crate::audit::{Actor, AuditDraft, AuditKind};
use crate::pipeline::Shadow;
use crate::policy::{Policies, PolicyConfig, PolicyError};
use crate::telemetry::Metrics;

/// The `[policy] shadow_dir` bundle, compiled with the live bundle's settings; `None` without one.
pub(super) fn load_shadow(cfg: &PolicyConfig) -> Result<Option<Arc<Shadow>>, PolicyError> {
    let Some(dir) = &cfg.shadow_dir else {
        return Ok(None);
    };
    let mut shadow_cfg = cfg.clone();
    shadow_cfg.dir = Some(dir.clone());
    shadow_cfg.shadow_dir = None;
    let policies = Policies::load(&shadow_cfg)?;
    info!(dir = %dir.display(), digest = %policies.digest(), "shadow policies loaded: evaluated beside the live bundle, never executed");
    Ok(Some(Arc::new(Shadow::new(policies))))
}

/// Hot reload of the shadow bundle on file change (as `watch` says), until `stop`.
pub(super) async fn watch_shadow(shadow: Arc<Shadow>, stop: watch::Receiver<bool>) {
    let _ = shadow.policies.clone().spawn_watcher(stop).await;
}

pub(super) async fn reload_on_sighup(
    policies: Arc<Policies>,
    shadow: Option<Arc<Shadow>>,
    tls: Option<Arc<crate::api::tls::ServerTls>>,
    metrics: Arc<Metrics>,
    api: Arc<ApiState>,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("cannot listen for SIGHUP; policy and certificate reload only by file change");
        return;
    };
    loop {
        // Decide inside `select!`, act outside it: the stop branch's borrow of the watch channel is
        // not `Send` and must not live across the audit append's await.
        let hup_received = tokio::select! {
            _ = hup.recv() => true,
            _ = stop.wait_for(|s| *s) => false,
        };
        if !hup_received {
            return;
        }
        // The certificate first: it is what a rotation script sends SIGHUP for. It logs and counts
        // its own outcome; SIGHUP retries even a set the watcher refused.
        if let Some(tls) = &tls {
            let tls = tls.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || tls.reload("SIGHUP", true)).await {
                error!(error = %e, "TLS reload task failed");
            }
        }
        if let Some(s) = &shadow {
            match s.policies.reload() {
                Ok(digest) => info!(%digest, "shadow policies reloaded on SIGHUP"),
                Err(e) => {
                    error!(error = %e, "shadow policy reload rejected; the previous shadow bundle stays")
                }
            }
        }
        // The error as text at once: `PolicyError` is not `Send`.
        match policies.reload().map_err(|e| e.to_string()) {
            Ok(digest) => {
                metrics.policy_reload(crate::telemetry::ReloadOutcome::Ok);
                info!(%digest, "policies reloaded on SIGHUP")
            }
            Err(e) => {
                metrics.policy_reload(crate::telemetry::ReloadOutcome::Rejected);
                error!(error = %e, "policy reload rejected; the previous bundle keeps serving");
                // A successful reload is recorded by `audit_policy_changes` (it sees the new
                // digest); a rejected one changes no digest, so it is recorded here.
                if let Some(store) = api.store.get() {
                    let mut d = AuditDraft::new(
                        AuditKind::PolicyReload,
                        Actor::system("sighup"),
                        serde_json::json!({ "outcome": "rejected", "error": e }),
                    );
                    d.policy_digest = Some(policies.digest().to_string());
                    append_best_effort(store.as_ref(), d).await;
                }
            }
        }
    }
}
