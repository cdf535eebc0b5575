//! The chain of trust on a cluster without MutatingAdmissionPolicy (as Kubernetes 1.30 to 1.35):
//! the ValidatingAdmissionPolicies alone, with clients filling `spec.requestedBy` themselves.
//!
//! Needs a control plane whose API server serves no MutatingAdmissionPolicy, so this target is
//! left out of the ordinary suite (`test = false` in e2e/Cargo.toml: `cargo test` runs it only
//! when named) and `make e2e` runs it on a cluster of its own:
//!
//! ```sh
//! AGENTGOV_APISERVER_FLAGS="--runtime-config=admissionregistration.k8s.io/v1/mutatingadmissionpolicies=false,admissionregistration.k8s.io/v1/mutatingadmissionpolicybindings=false --disable-admission-plugins=MutatingAdmissionPolicy" \
//!   bash e2e/controlplane/cluster.sh exec -- \
//!   cargo test -p agentgov-e2e --test trust_validating_only -- --test-threads=2
//! ```
//!
//! (The runtime-config alone makes kube-apiserver v1.37 exit: its MutatingAdmissionPolicy
//! admission plugin waits for an informer of the switched-off API, so the plugin is disabled
//! too.)
//!
//! Shown, with the webhook deregistered: the operator requires only the validating guards (and
//! says so); a user with `promote` who names themselves in `requestedBy` gets the agent promoted
//! and the proof names them; `requestedBy` missing, or naming someone else, and a user without
//! `promote`, are refused by the API server; an unstamped spec change is admitted and the bundle
//! history's actor is unknown; the operator signs nothing while a VAP binding is missing.

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::guards::UNKNOWN_ACTOR;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::promotion::{PromotionOutcome, Requester};
use agentgov_api::{Agent, AgentPromotion, PolicyBundle};
use agentgov_e2e::admission::*;
use agentgov_e2e::operator::{KeyFile, Operator, log_dir, metric_value};
use agentgov_e2e::{TestNamespace, api_error_message, approval, client, install_crds, wait_for};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

const VALIDATING_ONLY: &str = r#"agentgov_trust_guards_mode{mode="validating-only"}"#;
const FULL: &str = r#"agentgov_trust_guards_mode{mode="full"}"#;

/// These tests mean nothing on a cluster that serves MutatingAdmissionPolicy: fail, saying how
/// they are run.
async fn require_no_mutating_admission_policy(client: &Client) {
    let served = agentgov_e2e::guards::mutating_served(client)
        .await
        .expect("discovery");
    assert!(
        !served,
        "this control plane serves MutatingAdmissionPolicy: run these tests on one started with \
         AGENTGOV_APISERVER_FLAGS (see the top of e2e/tests/trust_validating_only.rs, or make e2e)"
    );
}

/// Who the API server says `client`'s user is (`kubectl auth whoami`): what a client fills into
/// `spec.requestedBy` where nothing stamps it.
async fn whoami(client: Client) -> Requester {
    let review = Api::<SelfSubjectReview>::all(client)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("a SelfSubjectReview");
    let user = review
        .status
        .and_then(|s| s.user_info)
        .expect("the reviewed user");
    Requester {
        username: user.username.unwrap_or_default(),
        uid: user.uid.unwrap_or_default(),
        groups: user.groups.unwrap_or_default(),
    }
}

/// An approval of the agent's current spec, created as `user`, named `name`, naming `requester`.
async fn approve_as(
    setup: &Setup,
    user: &str,
    agent: &str,
    name: &str,
    requester: Option<Requester>,
) -> kube::Result<AgentPromotion> {
    let current = setup.agents().get(agent).await.expect("the agent");
    let hash = agentgov_api::hash::spec_hash(&current.spec).expect("a spec hash");
    let mut promotion = approval(agent, &hash);
    promotion.metadata.name = Some(name.to_string());
    promotion.spec.requested_by = requester;
    Api::<AgentPromotion>::namespaced(client_as(user).await, &setup.ns.name)
        .create(&PostParams::default(), &promotion)
        .await
}

#[tokio::test]
async fn without_mutating_admission_policy_a_promoter_who_names_themselves_is_approved() {
    let mut setup = setup("tv-approve").await;
    require_no_mutating_admission_policy(&setup.client).await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    // The operator requires the validating guards alone (all in place: it may sign), and says so.
    let mode = wait_for(WAIT, || async {
        let metrics = setup.operator.metrics().await;
        (metric_value(&metrics, VALIDATING_ONLY) == Some(1.0)
            && metric_value(&metrics, FULL) == Some(0.0)
            && metric_value(&metrics, "agentgov_trust_guards_missing") == Some(0.0))
        .then_some(())
    })
    .await;
    if let Err(e) = mode {
        panic!(
            "{e:#}: the operator does not require the validating guards alone\n{}\n{}",
            setup.operator.metrics().await,
            setup.diagnostics()
        );
    }
    // The operator sets the gauge, then logs: the line can reach the file a moment later.
    let logged = wait_for(WAIT, || async {
        let logs = setup.operator.logs();
        logs.contains("TRUST_GUARDS_VALIDATING_ONLY")
            .then_some(logs)
    })
    .await;
    let logs = logged.unwrap_or_else(|e| panic!("{e:#}: not logged\n{}", setup.operator.logs()));
    assert_eq!(
        logs.matches("TRUST_GUARDS_VALIDATING_ONLY").count(),
        1,
        "logged once:\n{logs}"
    );
    assert!(logs.contains("spec.requestedBy"), "{logs}");
    // Nothing stamps the bundle's changes: its history does not guess who made them (it was
    // applied by the field manager "e2e").
    let bundle = setup.ns.api::<PolicyBundle>().get("default").await.unwrap();
    let history = bundle.status.unwrap().history;
    assert_eq!(
        history.first().and_then(|v| v.actor.as_deref()),
        Some(UNKNOWN_ACTOR),
        "{history:?}"
    );

    // The API server alone from here.
    setup.deregister().await;
    person(&setup, "mallory", false).await;
    person(&setup, "alice", true).await;
    person(&setup, "bob", true).await;
    let alice_client = client_as("alice").await;
    let alice_agents: Api<Agent> = Api::namespaced(alice_client.clone(), &setup.ns.name);
    // No changed-by stamp needed: the changed-by VAP allows an absent annotation.
    alice_agents
        .create(
            &PostParams::default(),
            &Agent::new("auditor", governed_spec()),
        )
        .await
        .expect("an agent without the changed-by annotation is admitted");
    let alice = whoami(alice_client).await;
    assert_eq!(alice.username, "alice");

    // requestedBy missing: refused, saying what to fill in.
    let message = api_error_message(
        &approve_as(&setup, "alice", "auditor", "no-requester", None)
            .await
            .expect_err("nothing stamps requestedBy here"),
    );
    for expected in [
        "ValidatingAdmissionPolicy",
        "spec.requestedBy is missing",
        "fill spec.requestedBy.username with your username",
        "username alice",
        "system:authenticated",
    ] {
        assert!(message.contains(expected), "{expected}: {message}");
    }
    // Someone else named: refused, whoever is named.
    let message = api_error_message(
        &approve_as(
            &setup,
            "bob",
            "auditor",
            "bob-as-alice",
            Some(alice.clone()),
        )
        .await
        .expect_err("bob may not approve in alice's name"),
    );
    assert!(
        message.contains("spec.requestedBy must be the requesting user")
            && message.contains("username bob"),
        "{message}"
    );
    // No `promote`: refused, though mallory names herself.
    let mallory = whoami(client_as("mallory").await).await;
    let message = api_error_message(
        &approve_as(&setup, "mallory", "auditor", "by-mallory", Some(mallory))
            .await
            .expect_err("mallory holds no promote"),
    );
    assert!(
        message.contains("ValidatingAdmissionPolicy") && message.contains("may not approve"),
        "{message}"
    );

    // alice, named by herself: approved, and the proof names her.
    let approved = approve_as(&setup, "alice", "auditor", "by-alice", Some(alice.clone()))
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", api_error_message(&e), setup.diagnostics()));
    assert_eq!(approved.spec.requested_by.as_ref(), Some(&alice));
    let agent = wait_agent(&setup, "auditor", "GOVERNED_VALID", |a| {
        governance(a) == Some(GovernanceStatus::GovernedValid)
    })
    .await;
    let proof = agent.status.as_ref().unwrap().proof.clone().unwrap();
    let approvers: Vec<&str> = proof
        .approvers
        .iter()
        .map(|a| a.username.as_str())
        .collect();
    assert_eq!(approvers, vec!["alice"]);
    wait_outcome(&setup, "by-alice", PromotionOutcome::Approved).await;

    // A changed-by annotation, where a client writes one, still names no one but the requester.
    let error = alice_agents
        .patch(
            "auditor",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"annotations": {"agentgov.dev/changed-by": "bob"}},
                "spec": {"description": "edited"},
            })),
        )
        .await
        .expect_err("alice may not stamp bob");
    assert!(
        api_error_message(&error).contains("must name the requesting user, alice"),
        "{}",
        api_error_message(&error)
    );
}

#[tokio::test]
async fn without_mutating_admission_policy_nothing_is_signed_while_a_vap_binding_is_missing() {
    // A copy of the guards of this test's own (validating ones only, as the cluster serves no
    // other) and an operator that requires that copy: the shipped guards stay.
    let client = client().await;
    require_no_mutating_admission_policy(&client).await;
    install_crds(&client).await.unwrap();
    let ns = TestNamespace::new(&client, "tv-guard").await.unwrap();
    let prefix = format!("e2e-{}-", ns.name);
    agentgov_e2e::guards::install(&client, &prefix)
        .await
        .unwrap();
    let keys = KeyFile::new(&log_dir().join(format!("{}-keys", ns.name)), "key-1").unwrap();
    let operator =
        Operator::start(&ns.name, &keys.path, "a", &["--guard-prefix", &prefix]).unwrap();
    // The validating copy is all it requires: it may sign.
    wait_for(WAIT, || async {
        let metrics = operator.metrics().await;
        (metric_value(&metrics, "agentgov_trust_guards_missing") == Some(0.0)
            && metric_value(&metrics, VALIDATING_ONLY) == Some(1.0))
        .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.logs()));
    agentgov_e2e::apply_bundle_in_force(&ns, default_bundle_spec(), WAIT)
        .await
        .unwrap();

    let binding = format!("{prefix}promotion");
    agentgov_e2e::guards::delete_validating_binding(&client, &binding)
        .await
        .unwrap();
    let agents: Api<Agent> = ns.api();
    agents
        .create(
            &PostParams::default(),
            &Agent::new("auditor", governed_spec()),
        )
        .await
        .unwrap();
    // The admin approves, naming themselves (the shipped VAP still checks that).
    let current = agents.get("auditor").await.unwrap();
    let mut promotion = approval(
        "auditor",
        &agentgov_api::hash::spec_hash(&current.spec).unwrap(),
    );
    promotion.spec.requested_by = Some(whoami(client.clone()).await);
    ns.api::<AgentPromotion>()
        .create(&PostParams::default(), &promotion)
        .await
        .unwrap_or_else(|e| panic!("{}", api_error_message(&e)));
    // Held unsigned while the binding is missing; signed once the guards are back.
    agentgov_e2e::guards::held_until_restored(
        &client,
        &agents,
        "auditor",
        (&prefix, &binding),
        || operator.metrics(),
        || operator.logs(),
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", operator.logs()));
    agentgov_e2e::guards::uninstall(&client, &prefix)
        .await
        .unwrap();
}
