//! Signed PolicyBundles on the real control plane (`--require-signed-bundles`): an unsigned
//! bundle is refused at apply and a signed one is put in force; a bundle signed then edited, or
//! signed by a key the policy-signing ring does not hold, is refused naming the key; and with
//! the webhook bypassed the operator still puts no unsigned or tampered version in force (the
//! last good version stays, and the bundle says why).

use std::path::PathBuf;

use agentgov_api::PolicyBundle;
use agentgov_api::bundle_signature::sign_bundle;
use agentgov_api::conditions::{READY, find};
use agentgov_api::hash::policy_hash;
use agentgov_api::keyring::{KeyRing, KeyRingConfig, generate_ed25519};
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::policy_bundle::PolicyBundleSpec;
use agentgov_e2e::admission::*;
use agentgov_e2e::operator::log_dir;
use agentgov_e2e::{apply_bundle, wait_for};
use kube::api::Api;

const BUNDLE_UNSIGNED: &str = "ADMISSION_DENY_BUNDLE_UNSIGNED";

/// A policy-signing ring (its private half stays in the test, as it would stay offline) and
/// the file of its public half, for the operator and the webhook.
struct PolicyKeys {
    ring: KeyRing,
    public: PathBuf,
}

fn policy_keys(tag: &str, key_id: &str) -> PolicyKeys {
    let config = KeyRingConfig {
        active_key_id: Some(key_id.into()),
        keys: vec![generate_ed25519(key_id).expect("a policy-signing key")],
        revoked: vec![],
    };
    let public = log_dir().join(format!(
        "{tag}-{}-{}-policy-ring.pub.json",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    ));
    let verification = config.verification_only().expect("the public half");
    std::fs::write(
        &public,
        serde_json::to_vec(&verification).expect("serialize the ring"),
    )
    .expect("write the public policy-signing ring");
    PolicyKeys {
        ring: KeyRing::from_config(&config).expect("the ring loads"),
        public,
    }
}

async fn signed_setup(prefix: &str, keys: &PolicyKeys) -> Setup {
    let public = keys.public.to_str().expect("a UTF-8 path");
    let flags = ["--require-signed-bundles", "--bundle-keys", public];
    setup_with_flags(prefix, KeyKind::Ed25519, &flags, &flags).await
}

fn sign(keys: &PolicyKeys, spec: &PolicyBundleSpec) -> PolicyBundleSpec {
    sign_bundle(&keys.ring, spec).expect("sign the bundle")
}

/// A merge patch that makes the bundle's spec `spec`.
fn spec_patch(spec: &PolicyBundleSpec) -> serde_json::Value {
    serde_json::json!({ "spec": spec })
}

/// A second version of the shipped bundle: another budget limit.
fn version_two() -> PolicyBundleSpec {
    let mut spec = default_bundle_spec();
    spec.version = "2.0.0".into();
    spec.data.max_monthly_budget_usd = 123.0;
    spec
}

#[tokio::test]
async fn an_unsigned_bundle_is_refused_when_signatures_are_required_and_a_signed_one_is_put_in_force()
 {
    let keys = policy_keys("sb-admit", "policy-1");
    let setup = signed_setup("sb-admit", &keys).await;
    let bundles: Api<PolicyBundle> = setup.ns.api();

    let message = refused(
        &setup,
        "an unsigned bundle",
        BUNDLE_UNSIGNED,
        creating(
            &bundles,
            &PolicyBundle::new("default", default_bundle_spec()),
        ),
    )
    .await;
    assert!(message.contains("not signed"), "{message}");

    // Signed: admitted and put in force.
    bundle_in_force(&setup, &sign(&keys, &default_bundle_spec())).await;

    // Signed, then edited (its data, or only its version label): refused, naming the key.
    let mut edited = sign(&keys, &version_two());
    edited.data.max_monthly_budget_usd = 100_000.0;
    let message = refused(
        &setup,
        "a bundle signed then edited",
        BUNDLE_UNSIGNED,
        patching(&bundles, "default", None, spec_patch(&edited)),
    )
    .await;
    assert!(
        message.contains("policy-1") && message.contains("does not verify"),
        "{message}"
    );
    let mut relabelled = sign(&keys, &version_two());
    relabelled.version = "2.0.1".into();
    refused(
        &setup,
        "a bundle signed then relabelled",
        BUNDLE_UNSIGNED,
        patching(&bundles, "default", None, spec_patch(&relabelled)),
    )
    .await;

    // Signed by a key the ring does not hold: refused, naming that key.
    let rogue = policy_keys("sb-rogue", "rogue-key");
    let message = refused(
        &setup,
        "a bundle signed by an unknown key",
        BUNDLE_UNSIGNED,
        patching(
            &bundles,
            "default",
            None,
            spec_patch(&sign(&rogue, &version_two())),
        ),
    )
    .await;
    assert!(message.contains("rogue-key"), "{message}");

    // The next signed version goes in force.
    bundle_in_force(&setup, &sign(&keys, &version_two())).await;
}

/// The bundle's status once the operator has looked at generation `generation`.
async fn refused_by_operator(setup: &Setup, generation: i64, reason: &str) -> String {
    let bundles: Api<PolicyBundle> = setup.ns.api();
    wait_for(WAIT, || {
        let bundles = bundles.clone();
        async move {
            let status = bundles.get("default").await.ok()?.status?;
            let ready = find(&status.conditions, READY)?;
            (ready.status == "False"
                && ready.reason == reason
                && ready.observed_generation == Some(generation))
            .then(|| ready.message.clone())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", setup.diagnostics()))
}

async fn active_hash(setup: &Setup) -> Option<String> {
    setup
        .ns
        .api::<PolicyBundle>()
        .get("default")
        .await
        .ok()?
        .status?
        .active_hash
}

async fn generation(setup: &Setup) -> i64 {
    setup
        .ns
        .api::<PolicyBundle>()
        .get("default")
        .await
        .expect("the bundle")
        .metadata
        .generation
        .expect("a generation")
}

#[tokio::test]
async fn without_the_webhook_the_operator_puts_no_unsigned_or_tampered_version_in_force() {
    let keys = policy_keys("sb-bypass", "policy-1");
    let mut setup = signed_setup("sb-bypass", &keys).await;
    let first = sign(&keys, &default_bundle_spec());
    bundle_in_force(&setup, &first).await;
    let good = policy_hash(&first).expect("a hash");
    setup.deregister().await;

    // Unsigned, written with no webhook to ask: the API server takes it, the operator does not.
    apply_bundle(&setup.ns, version_two())
        .await
        .expect("the API server takes it without the webhook");
    let message = refused_by_operator(&setup, generation(&setup).await, "SignatureMissing").await;
    assert!(message.contains("not signed"), "{message}");
    assert_eq!(active_hash(&setup).await.as_deref(), Some(good.as_str()));

    // Signed, then edited: refused, naming the key; the last good version stays.
    let mut tampered = sign(&keys, &version_two());
    tampered.modules[0]
        .rego
        .push_str("\n# edited after signing\n");
    apply_bundle(&setup.ns, tampered)
        .await
        .expect("the API server takes it without the webhook");
    let message = refused_by_operator(&setup, generation(&setup).await, "SignatureInvalid").await;
    assert!(message.contains("policy-1"), "{message}");
    assert_eq!(active_hash(&setup).await.as_deref(), Some(good.as_str()));
    let operator_log = setup.operator.logs();
    assert!(
        operator_log.contains("POLICY_SIGNATURE_INVALID"),
        "{}",
        tail(&operator_log, 20)
    );

    // Signed properly: in force.
    bundle_in_force(&setup, &sign(&keys, &version_two())).await;
}
