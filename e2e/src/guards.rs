//! The admission guards (`crds/guards/admission-policies.yaml`) installed as shipped, or under
//! another name prefix (an identical set, for a test that removes one without touching the
//! shipped guards, which every parallel test relies on).

use anyhow::{Context as _, Result, anyhow};
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

/// Server-side apply every guard, named with `prefix`, and wait until the API server enforces
/// them (a dry-run AgentPromotion comes back stamped with its requester).
pub async fn install(client: &Client, prefix: &str) -> Result<()> {
    apply_all(client, prefix).await?;
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
            let created = promotions.create(&dry_run, &probe).await.ok()?;
            created.spec.requested_by.map(|_| ())
        }
    })
    .await
    .context("the admission guards never took effect (no requestedBy stamped on a dry-run AgentPromotion)")
}

async fn apply_all(client: &Client, prefix: &str) -> Result<()> {
    for doc in documents(prefix)? {
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
    for doc in documents(prefix)? {
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
