//! Operator availability on a real control plane: a restart in the middle of a revalidation of
//! many agents converges (level-triggered), of two replicas only the Lease holder writes, and a
//! leader stopped with SIGTERM turns not-ready, exits with 0 within its grace and releases the
//! Lease, so that the standby takes over in seconds (the failover time is printed).

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::{Agent, PolicyBundle, PolicyBundleSpec};
use agentgov_e2e::admission::governed_spec;
use agentgov_e2e::operator::{KeyFile, Operator, http_get, log_dir};
use agentgov_e2e::{TestNamespace, client, install_crds, manifest, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, PostParams};

const AGENTS: usize = 300;

/// The operator's Lease lasts this long without renewal (`operator/src/leader.rs`): a leader
/// that dies is replaced after at most this; one that shuts down must hand over well before.
const LEASE: Duration = Duration::from_secs(15);

async fn apply_bundle(ns: &TestNamespace, spec: PolicyBundleSpec) {
    agentgov_e2e::apply_bundle(ns, spec).await.unwrap();
}

async fn count(api: &Api<Agent>, status: GovernanceStatus, policy_hash: Option<&str>) -> usize {
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items
        .iter()
        .filter(|a| {
            let s = a.status.as_ref();
            s.and_then(|s| s.governance_status) == Some(status)
                && policy_hash.is_none_or(|h| {
                    s.and_then(|s| s.policy.as_ref())
                        .is_some_and(|p| p.hash == h)
                })
        })
        .count()
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_revalidation_converges() {
    let client = client().await;
    install_crds(&client).await.unwrap();
    let ns = TestNamespace::new(&client, "op-restart").await.unwrap();
    let keys = KeyFile::new(&log_dir().join(format!("{}-keys", ns.name)), "key-1").unwrap();
    apply_bundle(&ns, default_bundle_spec()).await;
    let spec = manifest::<Agent>("examples/agent-governed.yaml")
        .unwrap()
        .spec;
    let agents: Api<Agent> = ns.api();
    agentgov_e2e::create_agents(&ns, "agent", AGENTS, &spec)
        .await
        .unwrap();
    agentgov_e2e::approve_agents(&ns, "agent", AGENTS, &spec)
        .await
        .unwrap();
    let mut first =
        Operator::start(&ns.name, &keys.path, "first", &["--status-qps", "100"]).unwrap();
    wait_for(Duration::from_secs(120), || {
        let agents = agents.clone();
        async move {
            (count(&agents, GovernanceStatus::GovernedValid, None).await == AGENTS).then_some(())
        }
    })
    .await
    .unwrap_or_else(|_| panic!("all agents promoted; log:\n{}", first.logs()));

    // A stricter policy invalidates every agent; the operator dies partway through.
    let mut strict = default_bundle_spec();
    strict.version = "strict".into();
    strict.data.max_monthly_budget_usd = 10.0;
    let strict_hash = agentgov_api::hash::policy_hash(&strict).unwrap();
    apply_bundle(&ns, strict).await;
    wait_for(Duration::from_secs(60), || {
        let agents = agents.clone();
        async move {
            (count(&agents, GovernanceStatus::GovernedInvalidated, None).await > 0).then_some(())
        }
    })
    .await
    .expect("the revalidation started");
    first.kill();
    let halfway = count(&agents, GovernanceStatus::GovernedInvalidated, None).await;
    assert!(
        halfway < AGENTS,
        "the kill came too late to test a restart ({halfway} done)"
    );

    let second = Operator::start(&ns.name, &keys.path, "second", &[]).unwrap();
    wait_for(Duration::from_secs(120), || {
        let agents = agents.clone();
        let strict_hash = strict_hash.clone();
        async move {
            (count(
                &agents,
                GovernanceStatus::GovernedInvalidated,
                Some(&strict_hash),
            )
            .await
                == AGENTS)
                .then_some(())
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "every agent judged against the strict policy after the restart; log:\n{}",
            second.logs()
        )
    });
    // No agent is left in force under a policy that no longer is: each keeps only its last
    // proof, signed against the first policy, as the record of what was approved.
    let list = agents.list(&ListParams::default()).await.unwrap();
    assert!(list.items.iter().all(|a| {
        a.status
            .as_ref()
            .unwrap()
            .proof
            .as_ref()
            .is_none_or(|p| p.policy_hash != strict_hash)
    }));
    let bundles: Api<PolicyBundle> = ns.api();
    let summary = wait_for(Duration::from_secs(60), || {
        let bundles = bundles.clone();
        let strict_hash = strict_hash.clone();
        async move {
            let b = bundles.get("default").await.ok()?;
            b.status?
                .last_revalidation
                .filter(|r| r.policy_hash == strict_hash)
        }
    })
    .await
    .expect("a revalidation summary for the strict policy");
    assert_eq!(summary.errors, 0);
    assert_eq!(summary.valid + summary.restricted, 0);
}

/// The governed example created as `name` and approved by a promoter.
async fn create_approved(agents: &Api<Agent>, ns: &TestNamespace, name: &str) {
    agents
        .create(&PostParams::default(), &Agent::new(name, governed_spec()))
        .await
        .unwrap();
    agentgov_e2e::approve(agents, &ns.api(), name)
        .await
        .unwrap();
}

/// Wait (at most 60 s) until agent `name` carries a proof.
async fn signed(agents: &Api<Agent>, name: &str) -> anyhow::Result<()> {
    wait_for(Duration::from_secs(60), || {
        let agents = agents.clone();
        async move { agents.get(name).await.ok()?.status?.proof.map(|_| ()) }
    })
    .await
    .map(|_| ())
}

/// Who holds the operator's Lease.
async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get("agentgov-operator")
        .await
        .ok()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

#[tokio::test]
async fn of_two_replicas_only_the_leader_writes() {
    let client = client().await;
    install_crds(&client).await.unwrap();
    let ns = TestNamespace::new(&client, "op-leader").await.unwrap();
    let keys = KeyFile::new(&log_dir().join(format!("{}-keys", ns.name)), "key-1").unwrap();
    apply_bundle(&ns, default_bundle_spec()).await;
    let mut one = Operator::start(&ns.name, &keys.path, "one", &[]).unwrap();
    let mut two = Operator::start(&ns.name, &keys.path, "two", &[]).unwrap();
    let leases: Api<Lease> = ns.api();
    let first_holder = wait_for(Duration::from_secs(30), || holder(&leases))
        .await
        .expect("a Lease holder");
    let agents: Api<Agent> = ns.api();
    create_approved(&agents, &ns, "first").await;
    signed(&agents, "first").await.expect("the leader promotes");
    let (leader, standby) = if first_holder == "operator-one" {
        (&mut one, &mut two)
    } else {
        (&mut two, &mut one)
    };
    assert!(leader.logs().contains("became leader"));
    assert!(
        !standby.logs().contains("became leader"),
        "only one replica leads"
    );
    assert!(
        !standby.logs().contains("PROMOTION_SUCCESS"),
        "the standby writes nothing"
    );

    // The leader dies; the standby takes over and promotes the next agent.
    leader.kill();
    create_approved(&agents, &ns, "second").await;
    let promoted = signed(&agents, "second").await;
    assert!(
        promoted.is_ok(),
        "the standby takes over; its log:\n{}",
        standby.logs()
    );
    assert!(standby.logs().contains("became leader"));
}

#[tokio::test]
async fn a_leader_stopped_by_sigterm_exits_cleanly_and_the_standby_takes_over_in_seconds() {
    let client = client().await;
    install_crds(&client).await.unwrap();
    let ns = TestNamespace::new(&client, "op-sigterm").await.unwrap();
    let keys = KeyFile::new(&log_dir().join(format!("{}-keys", ns.name)), "key-1").unwrap();
    apply_bundle(&ns, default_bundle_spec()).await;
    let grace = Duration::from_secs(5);
    let flags = ["--shutdown-grace", "5s"];
    let mut one = Operator::start(&ns.name, &keys.path, "one", &flags).unwrap();
    let mut two = Operator::start(&ns.name, &keys.path, "two", &flags).unwrap();
    let leases: Api<Lease> = ns.api();
    let first = wait_for(Duration::from_secs(30), || holder(&leases))
        .await
        .expect("a Lease holder");
    let (leader, standby, standby_id) = if first == "operator-one" {
        (&mut one, &mut two, "operator-two")
    } else {
        (&mut two, &mut one, "operator-one")
    };
    let agents: Api<Agent> = ns.api();
    create_approved(&agents, &ns, "first").await;
    signed(&agents, "first").await.expect("the leader promotes");
    let ready = |port: u16| async move {
        http_get(port, "/readyz")
            .await
            .ok()
            .and_then(|r| r.lines().next().map(|l| l.contains(" 200")))
    };
    assert_eq!(
        ready(leader.metrics_port).await,
        Some(true),
        "the leader is ready"
    );

    // SIGTERM the leader; an agent approved meanwhile must be promoted by the standby.
    let sigterm = Instant::now();
    leader.process().terminate().unwrap();
    create_approved(&agents, &ns, "second").await;
    let (mut exited, mut held, mut acted) = (None, None, None);
    let mut probes_after_sigterm = Vec::new();
    while acted.is_none() || exited.is_none() {
        assert!(
            sigterm.elapsed() < Duration::from_secs(90),
            "after SIGTERM: exit {exited:?}, lease {held:?}, promotion {acted:?}\nleader log:\n{}\nstandby log:\n{}",
            leader.logs(),
            standby.logs()
        );
        if exited.is_none() {
            if let Some(probe) = ready(leader.metrics_port).await {
                probes_after_sigterm.push(probe);
            }
            if let Some(status) = leader.process().exited() {
                exited = Some((sigterm.elapsed(), status));
            }
        }
        if held.is_none() && holder(&leases).await.as_deref() == Some(standby_id) {
            held = Some(sigterm.elapsed());
        }
        if acted.is_none()
            && let Ok(second) = agents.get("second").await
            && second.status.and_then(|s| s.proof).is_some()
        {
            acted = Some(sigterm.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (exit_after, status) = exited.unwrap();
    let held = held.expect("the standby holds the Lease before it promotes");
    let acted = acted.unwrap();
    println!(
        "failover after SIGTERM of the leader: it exited after {exit_after:?}, the standby held \
         the Lease after {held:?} and promoted the next agent after {acted:?} \
         (lease duration {LEASE:?})"
    );

    // The leader: readiness off first, then a clean exit within its grace, the Lease released.
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        leader.logs()
    );
    assert!(
        exit_after < grace + Duration::from_secs(5),
        "exited after {exit_after:?} (grace {grace:?})"
    );
    // (A probe sent as the signal arrives may still be answered 200; none after a 503.)
    let not_ready = probes_after_sigterm.iter().position(|ready| !ready);
    assert!(
        not_ready.is_none_or(|i| !probes_after_sigterm[i..].contains(&true)),
        "/readyz said ready again after saying not ready: {probes_after_sigterm:?}"
    );
    let log = leader.logs();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from the leader's log:\n{log}"))
    };
    assert!(at(r#""signal":"SIGTERM""#) < at("lease released"));
    assert!(at("lease released") < at(r#""message":"stopped""#));
    // The standby: it took the released Lease well before the lease could have expired.
    assert!(
        held < LEASE * 2 / 3,
        "the standby took over after {held:?}; log:\n{}",
        standby.logs()
    );
    assert!(standby.logs().contains("became leader"));
}
