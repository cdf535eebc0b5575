//! Break-glass: the way past the seven admission checks on Pods is deleting the webhook's
//! ValidatingWebhookConfiguration (an exception never waives them: they protect the proof). The
//! operator watches that configuration by name (`--webhook-configuration`; off when empty) and,
//! while it is gone, says so everywhere an admin looks: the metric
//! `agentgov_webhook_configuration_missing` (and the chart's alert on it), the log code
//! BREAK_GLASS, and the `AdmissionGuarded` condition (False) on every agent, whose Pods nobody
//! checks meanwhile; the agents' status writes publish a `BreakGlass` Event each. When the
//! configuration is back, the condition goes and every agent is judged again.

use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::metrics::Metrics;

/// The agents' condition that says whether their Pods are checked at admission.
pub const ADMISSION_GUARDED: &str = "AdmissionGuarded";

/// Whether the webhook configuration is in place: `None` while unknown (or not watched).
#[derive(Clone, Default)]
pub struct WebhookState(Arc<RwLock<Option<bool>>>);

impl WebhookState {
    /// Why the agents' Pods are not checked at admission, if they are not.
    pub fn missing(&self, name: &str) -> Option<String> {
        let present = *self.0.read().unwrap_or_else(PoisonError::into_inner);
        (present == Some(false)).then(|| {
            format!(
                "the ValidatingWebhookConfiguration {name} was deleted (break-glass): the Pods of this agent are not checked at admission until it is restored (helm upgrade)"
            )
        })
    }

    /// Record whether it is present; true when that changed.
    fn set(&self, present: bool) -> bool {
        let mut state = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let changed = *state != Some(present);
        *state = Some(present);
        changed
    }
}

/// Watch the ValidatingWebhookConfiguration `name`. `changed` is bumped whenever it goes or
/// comes back, so that every agent is judged again (their `AdmissionGuarded` condition).
pub fn start(
    client: &Client,
    name: &str,
    state: WebhookState,
    metrics: Metrics,
    changed: watch::Sender<u64>,
) {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let name = name.to_string();
    tokio::spawn(async move {
        let mut listed_present = false;
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        while let Some(event) = events.next().await {
            let present = match event {
                Ok(Event::Init) => {
                    listed_present = false;
                    continue;
                }
                Ok(Event::InitApply(c)) => {
                    listed_present |= c.name_any() == name;
                    continue;
                }
                Ok(Event::InitDone) => listed_present,
                Ok(Event::Apply(c)) if c.name_any() == name => true,
                Ok(Event::Delete(c)) if c.name_any() == name => false,
                Ok(_) => continue,
                Err(e) => {
                    warn!(error = %e, "webhook configuration watch error; retrying with backoff");
                    continue;
                }
            };
            metrics
                .webhook_configuration_missing
                .set(i64::from(!present));
            if !state.set(present) {
                continue;
            }
            if present {
                info!(
                    configuration = %name,
                    "the webhook configuration is in place: agents' Pods are checked at admission"
                );
            } else {
                error!(
                    code = "BREAK_GLASS",
                    configuration = %name,
                    "the webhook configuration is gone (break-glass): no agent's Pods are checked at admission until it is restored"
                );
            }
            changed.send_modify(|n| *n += 1);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_only_once_known_to_be_gone() {
        let state = WebhookState::default();
        assert!(state.missing("hook").is_none(), "unknown is not missing");
        assert!(state.set(false));
        assert!(state.missing("hook").is_some_and(|m| m.contains("hook")));
        assert!(!state.set(false), "no change");
        assert!(state.set(true));
        assert!(state.missing("hook").is_none());
    }
}
