//! Watching the admission guards: the ValidatingAdmissionPolicies, MutatingAdmissionPolicies
//! and bindings the chain of trust rests on (`agentgov_api::guards`). While one is missing or
//! differs from the shipped one, the operator signs nothing: it says so in the agents' Ready
//! condition, in its log, in the metric `agentgov_trust_guards_missing` and in an Event; when
//! they are back, every agent is judged again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use agentgov_api::guards::{self, GuardKind, Guards};
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::context::GuardState;
use crate::error::Result;
use crate::metrics::Metrics;

/// What the watches have seen: each kind's guards (by name, their spec), and which kinds have
/// listed at least once.
#[derive(Default)]
struct Seen {
    live: Guards,
    listed: BTreeMap<GuardKind, bool>,
}

/// Start watching the four kinds. `changed` is bumped whenever signing becomes possible or
/// impossible, so that every agent is judged again.
pub fn start(
    client: &Client,
    prefix: &str,
    state: GuardState,
    metrics: Metrics,
    changed: watch::Sender<u64>,
) -> Result<()> {
    let expected = Arc::new(guards::expected(prefix)?);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let check = {
        let expected = Arc::clone(&expected);
        let seen = Arc::clone(&seen);
        move || {
            let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            let problems = if GuardKind::ALL
                .iter()
                .all(|k| seen.listed.get(k).copied().unwrap_or(false))
            {
                let problems = guards::check(&expected, &seen.live);
                (!problems.is_empty()).then(|| {
                    problems
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            } else {
                Some("the admission guards have not been listed yet".to_string())
            };
            drop(seen);
            metrics.set_guards_missing(problems.is_some());
            if state.set(problems.clone()) {
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
    spawn::<MutatingAdmissionPolicy>(
        client,
        GuardKind::MutatingPolicy,
        prefix,
        &seen,
        &check,
        |o| o.spec.as_ref().and_then(to_json),
    );
    spawn::<MutatingAdmissionPolicyBinding>(
        client,
        GuardKind::MutatingBinding,
        prefix,
        &seen,
        &check,
        |o| o.spec.as_ref().and_then(to_json),
    );
    Ok(())
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
