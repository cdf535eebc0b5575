//! The PolicyBundle index fed by watch events: the newest spec that compiles is in force (the
//! operator need not have written its status), compiled engines and compile failures are
//! remembered by hash, a version that does not compile keeps the last good one (or, after a
//! restart, the operator's activeSpec if it hashes to activeHash), and a relist forgets bundles
//! that are gone.
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

use agentgov_api::effective::effective_hash;
use agentgov_api::hash::policy_hash;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::policy_bundle::{PolicyBundleSpec, PolicyBundleStatus, RegoModule};
use agentgov_api::{ClusterPolicyBundle, ClusterPolicyBundleSpec, PolicyBundle};
use agentgov_webhook::metrics::Metrics;
use agentgov_webhook::policy::PolicyIndex;
use kube::runtime::watcher::Event;

/// A bundle whose spec is `spec`, with the operator's status claiming `active` (hashed as
/// `claimed`, or its true hash).
fn bundle(
    ns: &str,
    name: &str,
    spec: &PolicyBundleSpec,
    active: Option<&PolicyBundleSpec>,
    claimed: Option<String>,
) -> PolicyBundle {
    let mut b = PolicyBundle::new(name, spec.clone());
    b.metadata.namespace = Some(ns.to_string());
    b.status = Some(PolicyBundleStatus {
        active_hash: claimed.or_else(|| active.map(|s| policy_hash(s).unwrap())),
        active_version: active.map(|s| s.version.clone()),
        active_spec: active.cloned(),
        ..PolicyBundleStatus::default()
    });
    b
}

fn broken_spec() -> PolicyBundleSpec {
    let mut spec = default_bundle_spec();
    spec.version = "2.0.0-broken".into();
    spec.modules = vec![RegoModule {
        name: "broken.rego".into(),
        rego: "package agentgov.promotion\n\ndecision := {".into(),
    }];
    spec
}

fn other_spec() -> PolicyBundleSpec {
    let mut spec = default_bundle_spec();
    spec.version = "1.1.0".into();
    spec.data.max_monthly_budget_usd = 500.0;
    spec
}

fn loads(metrics: &Metrics, result: &str) -> u64 {
    let needle = format!("policy_bundle_load_total{{result=\"{result}\"}} ");
    metrics
        .encode()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&needle)?.parse().ok())
        .unwrap_or(0)
}

fn index(metrics: &Metrics) -> PolicyIndex {
    PolicyIndex::new("default", metrics.policy_bundle_load.clone())
}

fn hash_of(spec: &PolicyBundleSpec) -> String {
    policy_hash(spec).unwrap()
}

fn in_force(idx: &PolicyIndex, ns: &str) -> Option<String> {
    idx.get(ns).map(|p| p.hash().to_string())
}

#[tokio::test]
async fn listing_puts_the_newest_version_that_compiles_in_force_and_sets_synced() {
    let metrics = Metrics::new();
    let idx = index(&metrics);
    let (good, newer) = (default_bundle_spec(), other_spec());
    assert!(!idx.synced());
    idx.apply_event(Event::Init).await;
    // The operator has not put `newer` in force yet (it may be down): the webhook does.
    idx.apply_event(Event::InitApply(bundle(
        "team-a",
        "default",
        &newer,
        Some(&good),
        None,
    )))
    .await;
    // Another name in the same namespace is not the bundle in force.
    idx.apply_event(Event::InitApply(bundle(
        "team-a", "draft", &good, None, None,
    )))
    .await;
    // Nothing that compiles, no operator status: no policy.
    idx.apply_event(Event::InitApply(bundle(
        "team-b",
        "default",
        &broken_spec(),
        None,
        None,
    )))
    .await;
    assert!(!idx.synced());
    idx.apply_event(Event::InitDone).await;
    assert!(!idx.synced(), "the cluster floors are not listed yet");
    idx.apply_floor_event(Event::Init).await;
    idx.apply_floor_event(Event::InitDone).await;
    assert!(idx.synced());
    assert_eq!(in_force(&idx, "team-a"), Some(hash_of(&newer)));
    assert!(idx.get("team-b").is_none());
    assert_eq!(loads(&metrics, "success"), 1);
    assert_eq!(loads(&metrics, "error"), 1);
}

#[tokio::test]
async fn status_only_events_do_not_recompile() {
    let metrics = Metrics::new();
    let idx = index(&metrics);
    let spec = default_bundle_spec();
    idx.apply_event(Event::Init).await;
    idx.apply_event(Event::InitDone).await;
    for ns in ["team-a", "team-b", "team-a", "team-a"] {
        idx.apply_event(Event::Apply(bundle(
            ns,
            "default",
            &spec,
            Some(&spec),
            None,
        )))
        .await;
    }
    assert_eq!(loads(&metrics, "success"), 1, "one compile for one hash");
    assert_eq!(idx.cached_engines(), 1);
    // A broken version is compiled once, however often the operator writes its status.
    for _ in 0..3 {
        idx.apply_event(Event::Apply(bundle(
            "team-c",
            "default",
            &broken_spec(),
            None,
            None,
        )))
        .await;
    }
    assert_eq!(loads(&metrics, "error"), 1);
}

#[tokio::test]
async fn after_a_restart_a_broken_spec_falls_back_to_the_operators_verified_status() {
    let metrics = Metrics::new();
    let idx = index(&metrics);
    let good = default_bundle_spec();
    idx.apply_event(Event::Apply(bundle(
        "team-a",
        "default",
        &broken_spec(),
        Some(&good),
        None,
    )))
    .await;
    assert_eq!(in_force(&idx, "team-a"), Some(hash_of(&good)));
    // A status whose activeSpec does not hash to activeHash is not trusted.
    idx.apply_event(Event::Apply(bundle(
        "team-b",
        "default",
        &broken_spec(),
        Some(&good),
        Some("f".repeat(64)),
    )))
    .await;
    assert!(idx.get("team-b").is_none());
}

#[tokio::test]
async fn a_version_that_does_not_compile_keeps_the_last_good_one() {
    let metrics = Metrics::new();
    let idx = index(&metrics);
    let good = default_bundle_spec();
    idx.apply_event(Event::Apply(bundle("team-a", "default", &good, None, None)))
        .await;
    // A broken version, with the operator's status still naming an older version: the last
    // good version in this process stays.
    idx.apply_event(Event::Apply(bundle(
        "team-a",
        "default",
        &broken_spec(),
        Some(&other_spec()),
        None,
    )))
    .await;
    assert_eq!(in_force(&idx, "team-a"), Some(hash_of(&good)));
    assert_eq!(loads(&metrics, "error"), 1);
    // Other namespaces are untouched, and a good new version replaces the old one.
    idx.apply_event(Event::Apply(bundle("team-b", "default", &good, None, None)))
        .await;
    idx.apply_event(Event::Apply(bundle(
        "team-a",
        "default",
        &other_spec(),
        None,
        None,
    )))
    .await;
    assert_eq!(in_force(&idx, "team-a"), Some(hash_of(&other_spec())));
    assert!(idx.get("team-b").is_some());
}

#[tokio::test]
async fn delete_and_relist_forget_bundles() {
    let metrics = Metrics::new();
    let idx = index(&metrics);
    let spec = default_bundle_spec();
    idx.apply_event(Event::Apply(bundle("team-a", "default", &spec, None, None)))
        .await;
    idx.apply_event(Event::Apply(bundle("team-b", "default", &spec, None, None)))
        .await;
    idx.apply_event(Event::Delete(bundle(
        "team-a", "default", &spec, None, None,
    )))
    .await;
    assert!(idx.get("team-a").is_none());
    assert!(idx.get("team-b").is_some());
    // A relist after a disconnect that no longer shows team-b.
    idx.apply_event(Event::Init).await;
    idx.apply_event(Event::InitApply(bundle(
        "team-c", "default", &spec, None, None,
    )))
    .await;
    // Until InitDone the old view stays in force.
    assert!(idx.get("team-b").is_some());
    idx.apply_event(Event::InitDone).await;
    assert!(idx.get("team-b").is_none());
    assert!(idx.get("team-c").is_some());
    assert_eq!(idx.cached_engines(), 1);
}

fn floor(spec: &PolicyBundleSpec) -> ClusterPolicyBundle {
    ClusterPolicyBundle::new(
        "default",
        ClusterPolicyBundleSpec {
            policy: spec.clone(),
            max_exception_days: None,
        },
    )
}

/// The floor is part of every namespace's policy: alone where a namespace has no bundle, with
/// the namespace's bundle (one hash of both) where it has one; a change of either changes the
/// policy of the namespaces it governs, and only those.
#[tokio::test]
async fn the_floor_governs_every_namespace_and_composes_with_its_bundle() {
    let metrics = Metrics::new();
    let idx = index(&metrics);
    let base = default_bundle_spec();
    let other = other_spec();
    idx.apply_event(Event::Apply(bundle(
        "team-a", "default", &other, None, None,
    )))
    .await;
    assert_eq!(in_force(&idx, "team-a"), Some(hash_of(&other)));
    assert!(
        idx.get("team-b").is_none(),
        "no bundle, no floor: no policy"
    );
    assert!(idx.floor_data().is_none());

    idx.apply_floor_event(Event::Apply(floor(&base))).await;
    assert_eq!(
        in_force(&idx, "team-b"),
        Some(hash_of(&base)),
        "the floor alone"
    );
    let both = effective_hash(Some(&hash_of(&base)), Some(&hash_of(&other)))
        .unwrap()
        .unwrap();
    assert_eq!(in_force(&idx, "team-a"), Some(both.clone()));
    assert_eq!(idx.get("team-a").unwrap().layers().count(), 2);
    assert_eq!(idx.floor_data().unwrap().max_monthly_budget_usd, 1000.0);

    // A namespace bundle changes only its namespace's policy.
    let mut third = other_spec();
    third.version = "1.2.0".into();
    third.data.max_monthly_budget_usd = 400.0;
    idx.apply_event(Event::Apply(bundle(
        "team-a", "default", &third, None, None,
    )))
    .await;
    assert_ne!(in_force(&idx, "team-a"), Some(both));
    assert_eq!(in_force(&idx, "team-b"), Some(hash_of(&base)));

    // The floor deleted: each namespace is back to its own bundle, or to nothing.
    idx.apply_floor_event(Event::Delete(floor(&base))).await;
    assert_eq!(in_force(&idx, "team-a"), Some(hash_of(&third)));
    assert!(idx.get("team-b").is_none());
}
