//! Watching the admission guards: the ValidatingAdmissionPolicies, MutatingAdmissionPolicies
//! and bindings the chain of trust rests on (`agentgov_api::guards`). While one is missing or
//! differs from the shipped one, the operator signs nothing: it says so in the agents' Ready
//! condition, in its log, in the metric `agentgov_trust_guards_missing` and in an Event; when
//! they are back, every agent is judged again.
//!
//! Which guards are required depends on the cluster: the API server's discovery says whether it
//! serves MutatingAdmissionPolicy. If it does, every guard is required (deleting a MAP stops
//! signing). If it does not (Kubernetes before 1.36), the ValidatingAdmissionPolicies and their
//! bindings alone are (`GuardMode::ValidatingOnly`): the MAP kinds are not watched, the log says
//! so once (TRUST_GUARDS_VALIDATING_ONLY) and `agentgov_trust_guards_mode` shows it. Until
//! discovery answers nothing is signed; a validating-only operator asks again every minute and
//! requires every guard from the moment the API is served (never the other way while it runs).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use std::time::Duration;

use agentgov_api::guards::{self, GuardKind, GuardMode, Guards};
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::context::GuardState;
use crate::error::Result;
use crate::metrics::Metrics;

/// How often a validating-only operator asks again whether MutatingAdmissionPolicy is served.
const REDISCOVERY: Duration = Duration::from_secs(60);

/// What the watches have seen: each kind's guards (by name, their spec), which kinds have
/// listed at least once, and the mode discovery found (`None` until it answers).
#[derive(Default)]
struct Seen {
    live: Guards,
    listed: BTreeMap<GuardKind, bool>,
    mode: Option<GuardMode>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabel {
    mode: &'static str,
}

/// `agentgov_trust_guards_mode{mode}`: 1 for the mode the operator requires, 0 for the other;
/// both 0 until discovery answers.
#[derive(Clone)]
pub struct ModeGauge(Family<ModeLabel, Gauge>);

impl ModeGauge {
    pub fn register(registry: &mut Registry) -> Self {
        let family = Family::<ModeLabel, Gauge>::default();
        registry.register(
            "agentgov_trust_guards_mode",
            "1 for the admission guards the operator requires: full (the API server serves MutatingAdmissionPolicy: every guard) or validating-only (it does not: the ValidatingAdmissionPolicies alone; clients fill spec.requestedBy, spec changes carry no changed-by); 0 for the other",
            family.clone(),
        );
        let gauge = ModeGauge(family);
        gauge.set(None);
        gauge
    }

    fn set(&self, mode: Option<GuardMode>) {
        for each in GuardMode::ALL {
            self.0
                .get_or_create(&ModeLabel {
                    mode: each.as_str(),
                })
                .set(i64::from(mode == Some(each)));
        }
    }
}

/// Whether the API server serves MutatingAdmissionPolicy, from its discovery of
/// admissionregistration.k8s.io/v1.
async fn discover(client: &Client) -> kube::Result<GuardMode> {
    let served = client
        .list_api_group_resources("admissionregistration.k8s.io/v1")
        .await?;
    Ok(GuardMode::from_served(
        served.resources.iter().map(|r| r.name.as_str()),
    ))
}

/// Start watching the guards: the validating kinds at once, the mutating ones once discovery
/// says the API server serves them. `changed` is bumped whenever signing becomes possible or
/// impossible, so that every agent is judged again.
pub fn start(
    client: &Client,
    prefix: &str,
    state: GuardState,
    metrics: Metrics,
    mode_gauge: ModeGauge,
    changed: watch::Sender<u64>,
) -> Result<()> {
    let full = Arc::new(guards::expected_in(prefix, GuardMode::Full)?);
    let validating = Arc::new(guards::expected_in(prefix, GuardMode::ValidatingOnly)?);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let check = {
        let seen = Arc::clone(&seen);
        move || {
            let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            let problems = match seen.mode {
                None => Some(
                    "whether the API server serves MutatingAdmissionPolicy is not known yet (discovery has not answered)"
                        .to_string(),
                ),
                Some(mode)
                    if !mode
                        .kinds()
                        .iter()
                        .all(|k| seen.listed.get(k).copied().unwrap_or(false)) =>
                {
                    Some("the admission guards have not been listed yet".to_string())
                }
                Some(mode) => {
                    let expected = match mode {
                        GuardMode::Full => &full,
                        GuardMode::ValidatingOnly => &validating,
                    };
                    let problems = guards::check(expected, &seen.live);
                    (!problems.is_empty()).then(|| {
                        problems
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                }
            };
            // Published before the lock goes: two checks racing (watch events of two kinds on
            // two threads) must not let the older verdict land last. Seen in CI: "in place",
            // then a stale "not listed yet" that nothing corrected, and nothing was signed.
            metrics.set_guards_missing(problems.is_some());
            let flipped = state.set(problems.clone());
            drop(seen);
            if flipped {
                match &problems {
                    Some(why) => error!(
                        code = "TRUST_GUARDS_MISSING",
                        problems = %why,
                        "admission guards missing or altered: the operator signs nothing until they are restored"
                    ),
                    None => info!("admission guards in place: signing resumes"),
                }
                changed.send_modify(|n| *n += 1);
            }
        }
    };
    let check: Arc<dyn Fn() + Send + Sync> = Arc::new(check);
    spawn::<ValidatingAdmissionPolicy>(
        client,
        GuardKind::ValidatingPolicy,
        prefix,
        &seen,
        &check,
        |o| o.spec.as_ref().and_then(to_json),
    );
    spawn::<ValidatingAdmissionPolicyBinding>(
        client,
        GuardKind::ValidatingBinding,
        prefix,
        &seen,
        &check,
        |o| to_json(&o.spec),
    );
    let client = client.clone();
    let prefix = prefix.to_string();
    tokio::spawn(async move {
        let set_mode = |mode: GuardMode| {
            seen.lock().unwrap_or_else(PoisonError::into_inner).mode = Some(mode);
            mode_gauge.set(Some(mode));
            if mode == GuardMode::Full {
                spawn_mutating(&client, &prefix, &seen, &check);
            }
            check();
        };
        let mut wait = Duration::from_secs(1);
        let mode = loop {
            match discover(&client).await {
                Ok(mode) => break mode,
                Err(e) => {
                    warn!(error = %e, "cannot discover whether the API server serves MutatingAdmissionPolicy; nothing is signed until it answers; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        };
        set_mode(mode);
        if mode == GuardMode::Full {
            info!(
                "the API server serves MutatingAdmissionPolicy: every admission guard is required"
            );
            return;
        }
        warn!(
            code = "TRUST_GUARDS_VALIDATING_ONLY",
            "the API server serves no MutatingAdmissionPolicy (Kubernetes before 1.36, or the API switched off): \
             only the ValidatingAdmissionPolicies and their bindings are required. Clients must fill \
             spec.requestedBy of an AgentPromotion with their own identity (the API server still refuses any other), \
             and spec changes of Agents and PolicyBundles are not stamped agentgov.dev/changed-by \
             (the bundle history's actor is unknown)"
        );
        loop {
            tokio::time::sleep(REDISCOVERY).await;
            if let Ok(GuardMode::Full) = discover(&client).await {
                info!(
                    "the API server serves MutatingAdmissionPolicy now: every admission guard is required from here on"
                );
                set_mode(GuardMode::Full);
                return;
            }
        }
    });
    Ok(())
}

/// Watch the MutatingAdmissionPolicies and their bindings (only where the API server serves them).
fn spawn_mutating(
    client: &Client,
    prefix: &str,
    seen: &Arc<Mutex<Seen>>,
    check: &Arc<dyn Fn() + Send + Sync>,
) {
    spawn::<MutatingAdmissionPolicy>(
        client,
        GuardKind::MutatingPolicy,
        prefix,
        seen,
        check,
        |o| o.spec.as_ref().and_then(to_json),
    );
    spawn::<MutatingAdmissionPolicyBinding>(
        client,
        GuardKind::MutatingBinding,
        prefix,
        seen,
        check,
        |o| o.spec.as_ref().and_then(to_json),
    );
}

fn to_json<T: Serialize>(spec: &T) -> Option<serde_json::Value> {
    serde_json::to_value(spec).ok()
}

/// Watch one kind; keep the guards named with `prefix` in `seen`; check after every change.
fn spawn<K>(
    client: &Client,
    kind: GuardKind,
    prefix: &str,
    seen: &Arc<Mutex<Seen>>,
    check: &Arc<dyn Fn() + Send + Sync>,
    spec_of: fn(&K) -> Option<serde_json::Value>,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let prefix = prefix.to_string();
    let seen = Arc::clone(seen);
    let check = Arc::clone(check);
    tokio::spawn(async move {
        let mut relist: Option<Guards> = None;
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    warn!(kind = kind.kind(), error = %e, "admission guard watch error; retrying");
                    continue;
                }
            };
            let spec = |o: &K| {
                let name = o.name_any();
                if !name.starts_with(&prefix) {
                    return None;
                }
                let spec = spec_of(o).and_then(|s| guards::normalized(kind, s).ok())?;
                Some(((kind, name), spec))
            };
            {
                let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                match &event {
                    Event::Init => relist = Some(Guards::new()),
                    Event::InitApply(o) => {
                        if let (Some(fresh), Some((key, value))) = (relist.as_mut(), spec(o)) {
                            fresh.insert(key, value);
                        }
                    }
                    Event::InitDone => {
                        let fresh = relist.take().unwrap_or_default();
                        seen.live.retain(|(k, _), _| *k != kind);
                        seen.live.extend(fresh);
                        seen.listed.insert(kind, true);
                    }
                    Event::Apply(o) => {
                        let name = o.name_any();
                        match spec(o) {
                            Some((key, value)) => {
                                seen.live.insert(key, value);
                            }
                            None => {
                                seen.live.remove(&(kind, name));
                            }
                        }
                    }
                    Event::Delete(o) => {
                        seen.live.remove(&(kind, o.name_any()));
                    }
                }
            }
            if !matches!(event, Event::Init | Event::InitApply(_)) {
                check();
            }
        }
    });
}
