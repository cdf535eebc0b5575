//! The in-process parts of the load benchmark: many governed agents, the cost of one review
//! without TLS or HTTP (with and without the check memo), and the resident memory of the Agent
//! cache and the memo with N agents.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgov_api::Agent;
use agentgov_api::admission::{AdmissionContext, AgentView, check_agent, check_agent_with};
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::keyring::KeyRing;
use agentgov_webhook::admit::review_pod;
use agentgov_webhook::cache::{Caches, trim_for_cache};
use agentgov_webhook::decide::View;
use agentgov_webhook::keys::Keys;
use agentgov_webhook::policy::PolicyIndex;
use agentgov_webhook::testing::StaticView;
use kube::runtime::watcher::Event;
use serde_json::json;

use crate::common::*;

/// The name of the i-th of many agents.
pub fn many_name(i: usize) -> String {
    format!("agent-{i:05}")
}

/// A governed agent as the watch delivers it after `kubectl apply` and the operator's status:
/// labels, the last-applied annotation, a proof, a policy reference, two conditions (managed
/// fields are dropped by the webhook's cache).
pub fn realistic_agent(name: &str, signing: &KeyRing, policy_hash: &str, rv: usize) -> Agent {
    let uid = format!("00000000-0000-4000-8000-{rv:012}");
    let agent = signed_agent_uid(name, &uid, governed_spec(), signing, policy_hash);
    let mut value = serde_json::to_value(&agent).unwrap();
    let applied = json!({
        "apiVersion": "agentgov.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name, "namespace": NS},
        "spec": value["spec"].clone(),
    });
    value["metadata"]["resourceVersion"] = json!(rv.to_string());
    value["metadata"]["generation"] = json!(1);
    value["metadata"]["labels"] = json!({"app.kubernetes.io/name": name, "team": NS});
    value["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": applied.to_string(),
    });
    value["metadata"]["finalizers"] = json!(["agentgov.dev/finalizer"]);
    let status = &mut value["status"];
    status["policy"] = json!({"name": "default", "version": "v1", "hash": policy_hash});
    status["observedGeneration"] = json!(1);
    status["conditions"] = json!([
        {"type": "Ready", "status": "True", "reason": "GovernedValid",
         "message": "the proof verifies against the policy in force",
         "lastTransitionTime": "2026-01-10T09:00:00Z", "observedGeneration": 1},
        {"type": "PolicyCompliant", "status": "True", "reason": "Allowed",
         "message": "promotion policy allows the agent",
         "lastTransitionTime": "2026-01-10T09:00:00Z", "observedGeneration": 1},
    ]);
    serde_json::from_value(value).unwrap()
}

/// A governed agent signed under an older policy than the one in force.
pub const OLDER: &str = "signed-under-an-older-policy";

/// Pod review bodies naming the first `n` of many agents.
pub fn many_bodies(n: usize) -> Vec<axum::body::Bytes> {
    (0..n)
        .map(|i| axum::body::Bytes::from(bytes(&pod_review(Some(&many_name(i))))))
        .collect()
}

fn per_op(iterations: u32, run: impl FnMut()) -> Duration {
    let mut run = run;
    // A few rounds; the fastest is the least disturbed by the other users of the cores.
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                run();
            }
            start.elapsed() / iterations
        })
        .min()
        .unwrap()
}

fn micros(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e6)
}

/// One thread, no TLS, no HTTP: the seven checks alone and a whole Pod review (parse, decide),
/// each fresh and through the memo, and the parts around a review (the answer, the decision log
/// line), beside the baseline's whole answer. Printed as a Markdown table.
pub fn micro(memo_view: &StaticView, fresh_view: &StaticView, ring: KeyRing) {
    let expiry = ExpiryPolicy::default();
    let agent = memo_view.agent(NS, GOVERNED).unwrap();
    let keys = memo_view.keys();
    let policy = memo_view.policy(NS).unwrap();
    let view = AgentView {
        namespace: NS,
        name: GOVERNED,
        uid: agent.metadata.uid.as_deref().unwrap_or_default(),
        spec: &agent.spec,
        status: agent.status.as_ref(),
        created: hours_ago(3),
    };
    let ctx = AdmissionContext {
        active_policy_hash: Some(policy.hash()),
        recheck: None,
        keys: &keys.ring,
        now: now(),
        expiry: &expiry,
    };
    let memo = memo_view.memo.as_ref().unwrap();
    let checks_fresh = per_op(2_000, || {
        check_agent(&view, &ctx).unwrap();
    });
    let checks_memo = per_op(20_000, || {
        let derived = memo.for_agent(NS, GOVERNED, &agent, &keys);
        check_agent_with(&view, &ctx, &derived).unwrap();
    });
    let body = bytes(&pod_review(Some(GOVERNED)));
    let sandbox_body = bytes(&pod_review(Some(SANDBOX)));
    let review_fresh = per_op(2_000, || {
        assert!(review_pod(&body, fresh_view, &expiry, now()).allowed());
    });
    let review_memo = per_op(5_000, || {
        assert!(review_pod(&body, memo_view, &expiry, now()).allowed());
    });
    // The same review through the cache the binary uses (a kube reflector store), as the load
    // scenarios use the test view.
    let policies = Arc::new(PolicyIndex::new("default", Default::default()));
    policies.insert(NS, policy.clone());
    let (caches, mut writer) = Caches::detached(policies, Keys::new(ring));
    let event = Event::Apply((*agent).clone());
    writer.apply_watcher_event(&event);
    caches.observe(&event);
    let review_caches = per_op(5_000, || {
        assert!(review_pod(&body, &caches, &expiry, now()).allowed());
    });
    // Signed under an older policy than the one in force: the policy in force is asked, once per
    // agent version with the memo, on every review without it.
    let older_body = bytes(&pod_review(Some(OLDER)));
    let review_older_memo = per_op(5_000, || {
        assert!(review_pod(&older_body, memo_view, &expiry, now()).allowed());
    });
    let review_older_fresh = per_op(500, || {
        assert!(review_pod(&older_body, fresh_view, &expiry, now()).allowed());
    });
    let review_sandbox = per_op(5_000, || {
        assert!(review_pod(&sandbox_body, memo_view, &expiry, now()).allowed());
    });
    let parse_only = per_op(5_000, || {
        agentgov_webhook::review::parse_pod(&body).unwrap();
    });
    let baseline = per_op(5_000, || {
        crate::baseline_answer(&body);
    });
    // What the API server sends for a Deployment's Pod (8 KB, most of it managed fields and
    // container fields no decision reads), parsed as a review is, beside skimming it whole
    // without keeping a field: what reading it costs any serde_json parse.
    let deployment_body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../e2e/bench/fixtures/pod-review-deployment.json"
    ))
    .unwrap();
    let parse_deployment = per_op(5_000, || {
        agentgov_webhook::review::parse_pod(&deployment_body).unwrap();
    });
    let skim_deployment = per_op(5_000, || {
        serde_json::from_slice::<serde::de::IgnoredAny>(&deployment_body).unwrap();
    });
    let parse_whole = per_op(5_000, || {
        agentgov_webhook::review::parse(&body).unwrap();
    });
    let reviewed = review_pod(&body, memo_view, &expiry, now());
    let metrics = agentgov_webhook::metrics::Metrics::new();
    let log = per_op(5_000, || {
        agentgov_webhook::decision_log::record(
            &metrics,
            agentgov_webhook::metrics::ReviewKind::pod,
            &reviewed.facts,
            &reviewed.decision,
        );
    });
    // The same line through tracing-subscriber's own JSON format, as before `JsonLine`.
    let tracing_json = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(std::io::sink)
        .finish();
    let log_tracing_json = tracing::subscriber::with_default(tracing_json, || {
        per_op(5_000, || {
            agentgov_webhook::decision_log::record(
                &metrics,
                agentgov_webhook::metrics::ReviewKind::pod,
                &reviewed.facts,
                &reviewed.decision,
            );
        })
    });
    let encode = per_op(5_000, || {
        serde_json::to_vec(&reviewed.answer()).unwrap();
    });
    println!();
    println!("| in-process, 1 thread (fastest of 5 rounds) | µs per review |");
    println!("|---|---|");
    println!(
        "| seven checks of a governed agent, fresh (`check_agent`) | {} |",
        micros(checks_fresh)
    );
    println!(
        "| seven checks of a governed agent, memo hit (`check_agent_with`) | {} |",
        micros(checks_memo)
    );
    println!(
        "| whole governed Pod review (parse + decide), fresh | {} |",
        micros(review_fresh)
    );
    println!(
        "| whole governed Pod review, memo hit | {} |",
        micros(review_memo)
    );
    println!(
        "| whole governed Pod review, memo hit, through the binary's cache (`Caches`) | {} |",
        micros(review_caches)
    );
    println!(
        "| whole governed Pod review, proof under an older policy, verdict remembered (memo hit) | {} |",
        micros(review_older_memo)
    );
    println!(
        "| whole governed Pod review, proof under an older policy, fresh (policy evaluated) | {} |",
        micros(review_older_fresh)
    );
    println!(
        "| whole sandbox Pod review (restricted level checked) | {} |",
        micros(review_sandbox)
    );
    println!(
        "| of which: parsing the Pod AdmissionReview (the fields decisions read) | {} |",
        micros(parse_only)
    );
    println!(
        "| parsing a Deployment's Pod AdmissionReview as the API server sends it ({} bytes, `e2e/bench/fixtures/pod-review-deployment.json`) | {} |",
        deployment_body.len(),
        micros(parse_deployment)
    );
    println!(
        "| for comparison: skimming that body without keeping a field (serde_json into `IgnoredAny`: the least any serde parse of it costs) | {} |",
        micros(skim_deployment)
    );
    println!(
        "| for comparison: the baseline's whole answer (parse of the uid only, encoding) | {} |",
        micros(baseline)
    );
    println!(
        "| for comparison: parsing it whole (`AdmissionReview<DynamicObject>`, as Agent reviews are) | {} |",
        micros(parse_whole)
    );
    println!(
        "| outside the review: the answer, built and encoded | {} |",
        micros(encode)
    );
    println!(
        "| outside the review: decision log line (JSON, to a sink) and counter | {} |",
        micros(log)
    );
    println!(
        "| for comparison: the same line in tracing-subscriber's JSON format | {} |",
        micros(log_tracing_json)
    );
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// Resident memory of the real Agent cache (a kube reflector store, fed as the watch feeds it,
/// trimmed as the watch trims) and the memo, with `n` governed agents each reviewed once.
pub fn rss(n: usize) {
    let signing = SigningKeys::new("k1");
    let engine = policy();
    let policies = Arc::new(PolicyIndex::new("default", Default::default()));
    policies.insert(NS, engine.clone());
    let (caches, mut writer) = Caches::detached(policies, Keys::new(signing.verification(&[])));
    let expiry = ExpiryPolicy::default();
    let start = status_kib("VmRSS:");

    for i in 0..n {
        let mut agent = realistic_agent(&many_name(i), &signing.ring, engine.hash(), i + 1);
        // What the watch does to every Agent before the reflector caches it.
        trim_for_cache(&mut agent);
        let event = Event::Apply(agent);
        writer.apply_watcher_event(&event);
        caches.observe(&event);
    }
    let cached = status_kib("VmRSS:");

    let started = Instant::now();
    for i in 0..n {
        let body = bytes(&pod_review(Some(&many_name(i))));
        assert!(review_pod(&body, &caches, &expiry, now()).allowed());
    }
    let cold = started.elapsed();
    let remembered = status_kib("VmRSS:");
    let started = Instant::now();
    for i in 0..n {
        let body = bytes(&pod_review(Some(&many_name(i))));
        assert!(review_pod(&body, &caches, &expiry, now()).allowed());
    }
    let warm = started.elapsed();
    let (entries, stats) = caches.memo_stats();
    let done = status_kib("VmRSS:");

    println!("| {n} governed agents, in process | VmRSS MiB | delta MiB |");
    println!("|---|---|---|");
    println!(
        "| start (runtime-free; compiled policy, fixtures) | {} | |",
        mib(start)
    );
    println!(
        "| Agent cache filled (reflector store) | {} | +{} |",
        mib(cached),
        mib(cached.saturating_sub(start))
    );
    println!(
        "| each agent's Pod reviewed once (memo: {entries} entries) | {} | +{} |",
        mib(remembered),
        mib(remembered.saturating_sub(cached))
    );
    println!(
        "| each reviewed again (memo hits) | {} | +{} |",
        mib(done),
        mib(done.saturating_sub(remembered))
    );
    println!("| peak (VmHWM) | {} | |", mib(status_kib("VmHWM:")));
    println!();
    println!(
        "first pass (memo misses): {:.1} µs per review; second pass (hits): {:.1} µs per review; memo {:?}",
        cold.as_secs_f64() * 1e6 / n as f64,
        warm.as_secs_f64() * 1e6 / n as f64,
        stats
    );
}
