//! The admission guards (`crds/guards/admission-policies.yaml`) installed as shipped, or under
//! another name prefix (an identical set, for a test that removes one without touching the
//! shipped guards, which every parallel test relies on). Where the API server serves no
//! MutatingAdmissionPolicy (a control plane started with it switched off, as on Kubernetes
//! before 1.36), the validating guards alone, as the chart installs them there.

use std::time::Duration;

use agentgov_api::Agent;
use agentgov_api::agent::GovernanceStatus;
use agentgov_api::conditions::{READY, find};
use agentgov_api::guards::GuardMode;
use anyhow::{Context as _, Result, anyhow, ensure};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The shipped guards as JSON documents, named with `prefix`.
pub fn documents(prefix: &str) -> Result<Vec<serde_json::Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(agentgov_api::guards::GUARDS_YAML) {
        let mut value = serde_json::Value::deserialize(doc).context("parse the guards")?;
        for pointer in ["/metadata/name", "/spec/policyName"] {
            if let Some(name) = value.pointer_mut(pointer) {
                let renamed = name
                    .as_str()
                    .and_then(|n| n.strip_prefix(agentgov_api::guards::DEFAULT_PREFIX))
                    .map(|rest| format!("{prefix}{rest}"));
                if let Some(renamed) = renamed {
                    *name = serde_json::Value::String(renamed);
                }
            }
        }
        docs.push(value);
    }
    Ok(docs)
}

/// Whether the API server serves MutatingAdmissionPolicy (its discovery of
/// admissionregistration.k8s.io/v1), as the operator asks it.
pub async fn mutating_served(client: &Client) -> Result<bool> {
    let served = client
        .list_api_group_resources("admissionregistration.k8s.io/v1")
        .await
        .context("discover admissionregistration.k8s.io/v1")?;
    let mode = GuardMode::from_served(served.resources.iter().map(|r| r.name.as_str()));
    Ok(mode == GuardMode::Full)
}

/// The guards this cluster can hold, as JSON documents named with `prefix`: all of them, or the
/// validating ones alone where MutatingAdmissionPolicy is not served.
async fn documents_for(client: &Client, prefix: &str) -> Result<Vec<serde_json::Value>> {
    let mutating = mutating_served(client).await?;
    Ok(documents(prefix)?
        .into_iter()
        .filter(|doc| {
            mutating
                || !doc["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("Mutating")
        })
        .collect())
}

/// Server-side apply every guard the cluster can hold, named with `prefix`, and wait until the
/// API server enforces them: a dry-run AgentPromotion comes back stamped with its requester, or,
/// without MutatingAdmissionPolicy, one that names no requester is refused.
pub async fn install(client: &Client, prefix: &str) -> Result<()> {
    apply_all(client, prefix).await?;
    let mutating = mutating_served(client).await?;
    let promotions: Api<agentgov_api::AgentPromotion> = Api::namespaced(client.clone(), "default");
    let probe = crate::approval("e2e-guard-probe", &"0".repeat(64));
    let dry_run = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    crate::wait_for(std::time::Duration::from_secs(30), || {
        let promotions = promotions.clone();
        let probe = probe.clone();
        let dry_run = dry_run.clone();
        async move {
            match promotions.create(&dry_run, &probe).await {
                Ok(created) if mutating => created.spec.requested_by.map(|_| ()),
                Err(kube::Error::Api(status)) if !mutating => status
                    .message
                    .contains("spec.requestedBy is missing")
                    .then_some(()),
                _ => None,
            }
        }
    })
    .await
    .with_context(|| {
        if mutating {
            "the admission guards never took effect (no requestedBy stamped on a dry-run AgentPromotion)"
        } else {
            "the validating admission guards never took effect (a dry-run AgentPromotion without requestedBy was not refused)"
        }
    })
}

async fn apply_all(client: &Client, prefix: &str) -> Result<()> {
    for doc in documents_for(client, prefix).await? {
        match doc["kind"].as_str().unwrap_or_default() {
            "ValidatingAdmissionPolicy" => apply::<ValidatingAdmissionPolicy>(client, doc).await?,
            "ValidatingAdmissionPolicyBinding" => {
                apply::<ValidatingAdmissionPolicyBinding>(client, doc).await?
            }
            "MutatingAdmissionPolicy" => apply::<MutatingAdmissionPolicy>(client, doc).await?,
            "MutatingAdmissionPolicyBinding" => {
                apply::<MutatingAdmissionPolicyBinding>(client, doc).await?
            }
            other => return Err(anyhow!("unexpected kind {other} in the guards")),
        }
    }
    Ok(())
}

async fn apply<K>(client: &Client, doc: serde_json::Value) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(doc).context("a guard")?;
    let name = object.meta().name.clone().unwrap_or_default();
    Api::<K>::all(client.clone())
        .patch(
            &name,
            &PatchParams::apply("agentgov-e2e").force(),
            &Patch::Apply(&object),
        )
        .await
        .with_context(|| format!("apply {} {name}", K::kind(&())))?;
    Ok(())
}

/// Delete the ValidatingAdmissionPolicyBinding named `name` (a guard's binding).
pub async fn delete_validating_binding(client: &Client, name: &str) -> Result<()> {
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
        .with_context(|| format!("delete ValidatingAdmissionPolicyBinding {name}"))?;
    Ok(())
}

/// Delete every guard named with `prefix` (a test's own copy; never the shipped ones).
pub async fn uninstall(client: &Client, prefix: &str) -> Result<()> {
    if prefix == agentgov_api::guards::DEFAULT_PREFIX {
        return Err(anyhow!("the shipped guards are not a test's to delete"));
    }
    for doc in documents_for(client, prefix).await? {
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let params = DeleteParams::default();
        let deleted = match doc["kind"].as_str().unwrap_or_default() {
            "ValidatingAdmissionPolicy" => Api::<ValidatingAdmissionPolicy>::all(client.clone())
                .delete(&name, &params)
                .await
                .map(|_| ()),
            "ValidatingAdmissionPolicyBinding" => {
                Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
                    .delete(&name, &params)
                    .await
                    .map(|_| ())
            }
            "MutatingAdmissionPolicy" => Api::<MutatingAdmissionPolicy>::all(client.clone())
                .delete(&name, &params)
                .await
                .map(|_| ()),
            "MutatingAdmissionPolicyBinding" => {
                Api::<MutatingAdmissionPolicyBinding>::all(client.clone())
                    .delete(&name, &params)
                    .await
                    .map(|_| ())
            }
            other => return Err(anyhow!("unexpected kind {other} in the guards")),
        };
        match deleted {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e).with_context(|| format!("delete {name}")),
        }
    }
    Ok(())
}

/// With the binding `binding` of the guard set under `prefix` deleted: the operator (`metrics`
/// its `/metrics` text, `logs` its log) holds agent `name` unsigned (Ready False for
/// TrustGuardsMissing naming the binding, no proof, the gauge `agentgov_trust_guards_missing` at
/// 1, a TRUST_GUARDS_MISSING line); with the set installed again, it signs it (GOVERNED_VALID).
pub async fn held_until_restored<M, F>(
    client: &Client,
    agents: &Api<Agent>,
    name: &str,
    (prefix, binding): (&str, &str),
    metrics: M,
    logs: impl Fn() -> String,
    wait: Duration,
) -> Result<()>
where
    M: Fn() -> F,
    F: std::future::Future<Output = String>,
{
    let agent = crate::wait_agent(agents, name, "held: guards missing", wait, |a| {
        a.status
            .as_ref()
            .and_then(|s| find(&s.conditions, READY))
            .is_some_and(|c| c.reason == "TrustGuardsMissing")
    })
    .await?;
    let status = agent.status.unwrap_or_default();
    let ready = find(&status.conditions, READY).context("no Ready condition")?;
    ensure!(
        ready.message.contains(binding),
        "Ready does not name {binding}: {}",
        ready.message
    );
    ensure!(status.proof.is_none(), "signed while a guard is missing");
    let gauge = crate::operator::metric_value(&metrics().await, "agentgov_trust_guards_missing");
    ensure!(
        gauge == Some(1.0),
        "agentgov_trust_guards_missing is {gauge:?}"
    );
    ensure!(
        logs().contains("TRUST_GUARDS_MISSING"),
        "no TRUST_GUARDS_MISSING line"
    );
    // Restored: signing resumes.
    install(client, prefix).await?;
    crate::wait_agent(agents, name, "GOVERNED_VALID", wait, |a| {
        a.status.as_ref().and_then(|s| s.governance_status) == Some(GovernanceStatus::GovernedValid)
    })
    .await?;
    Ok(())
}
