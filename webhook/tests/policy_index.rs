//! The PolicyBundle index fed by watch events: activeSpec must hash to activeHash, compiled
//! engines are reused by hash, a version that does not compile keeps the last good one, and a
//! relist forgets bundles that are gone.
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

use agentgov_api::PolicyBundle;
use agentgov_api::hash::policy_hash;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::policy_bundle::{PolicyBundleSpec, PolicyBundleStatus, RegoModule};
use agentgov_webhook::metrics::Metrics;
use agentgov_webhook::policy::PolicyIndex;
use kube::runtime::watcher::Event;

fn bundle(
    ns: &str,
    name: &str,
    active: Option<&PolicyBundleSpec>,
    claimed: Option<String>,
) -> PolicyBundle {
    let mut b = PolicyBundle::new(name, default_bundle_spec());
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

#[tokio::test]
async fn listing_puts_the_active_version_in_force_and_sets_synced() {
    let metrics = Metrics::new();
    let idx = index(&metrics);
    let spec = default_bundle_spec();
    assert!(!idx.synced());
    idx.apply_event(Event::Init).await;
    idx.apply_event(Event::InitApply(bundle(
        "team-a",
        "default",
        Some(&spec),
        None,
    )))
    .await;
    // Another name in the same namespace is not the bundle in force.
    idx.apply_event(Event::InitApply(bundle(
        "team-a",
        "draft",
        Some(&other_spec()),
        None,
    )))
    .await;
    // No active version yet: no policy.
    idx.apply_event(Event::InitApply(bundle("team-b", "default", None, None)))
        .await;
    assert!(!idx.synced());
    idx.apply_event(Event::InitDone).await;
    assert!(idx.synced());
    assert_eq!(
        idx.get("team-a").unwrap().hash(),
        policy_hash(&spec).unwrap()
    );
    assert!(idx.get("team-b").is_none());
    assert_eq!(loads(&metrics, "success"), 1);
}

#[tokio::test]
async fn status_only_events_do_not_recompile() {
    let metrics = Metrics::new();
    let idx = index(&metrics);
    let spec = default_bundle_spec();
    idx.apply_event(Event::Init).await;
    idx.apply_event(Event::InitDone).await;
    for ns in ["team-a", "team-b", "team-a", "team-a"] {
        idx.apply_event(Event::Apply(bundle(ns, "default", Some(&spec), None)))
            .await;
    }
    assert_eq!(loads(&metrics, "success"), 1, "one compile for one hash");
    assert_eq!(idx.cached_engines(), 1);
}

#[tokio::test]
async fn hash_mismatch_means_no_policy() {
    let metrics = Metrics::new();
    let idx = index(&metrics);
    let spec = default_bundle_spec();
    idx.apply_event(Event::Apply(bundle("team-a", "default", Some(&spec), None)))
        .await;
    assert!(idx.get("team-a").is_some());
    idx.apply_event(Event::Apply(bundle(
        "team-a",
        "default",
        Some(&spec),
        Some("f".repeat(64)),
    )))
    .await;
    assert!(idx.get("team-a").is_none());
    assert_eq!(loads(&metrics, "error"), 1);
}

#[tokio::test]
async fn a_version_that_does_not_compile_keeps_the_last_good_one() {
    let metrics = Metrics::new();
    let idx = index(&metrics);
    let good = default_bundle_spec();
    idx.apply_event(Event::Apply(bundle("team-a", "default", Some(&good), None)))
        .await;
    idx.apply_event(Event::Apply(bundle(
        "team-a",
        "default",
        Some(&broken_spec()),
        None,
    )))
    .await;
    assert_eq!(
        idx.get("team-a").unwrap().hash(),
        policy_hash(&good).unwrap()
    );
    assert_eq!(loads(&metrics, "error"), 1);
    // Other namespaces are untouched, and a good new version replaces the old one.
    idx.apply_event(Event::Apply(bundle("team-b", "default", Some(&good), None)))
        .await;
    idx.apply_event(Event::Apply(bundle(
        "team-a",
        "default",
        Some(&other_spec()),
        None,
    )))
    .await;
    assert_eq!(
        idx.get("team-a").unwrap().hash(),
        policy_hash(&other_spec()).unwrap()
    );
    assert!(idx.get("team-b").is_some());
    // A bad version with nothing before it: no policy.
    idx.apply_event(Event::Apply(bundle(
        "team-c",
        "default",
        Some(&broken_spec()),
        None,
    )))
    .await;
    assert!(idx.get("team-c").is_none());
}

#[tokio::test]
async fn delete_and_relist_forget_bundles() {
    let metrics = Metrics::new();
    let idx = index(&metrics);
    let spec = default_bundle_spec();
    idx.apply_event(Event::Apply(bundle("team-a", "default", Some(&spec), None)))
        .await;
    idx.apply_event(Event::Apply(bundle("team-b", "default", Some(&spec), None)))
        .await;
    idx.apply_event(Event::Delete(bundle(
        "team-a",
        "default",
        Some(&spec),
        None,
    )))
    .await;
    assert!(idx.get("team-a").is_none());
    assert!(idx.get("team-b").is_some());
    // A relist after a disconnect that no longer shows team-b.
    idx.apply_event(Event::Init).await;
    idx.apply_event(Event::InitApply(bundle(
        "team-c",
        "default",
        Some(&spec),
        None,
    )))
    .await;
    // Until InitDone the old view stays in force.
    assert!(idx.get("team-b").is_some());
    idx.apply_event(Event::InitDone).await;
    assert!(idx.get("team-b").is_none());
    assert!(idx.get("team-c").is_some());
    assert_eq!(idx.cached_engines(), 1);
}
