//! AgentExceptions on the real control plane (operator, webhook and the API server's own
//! admission policies): a time-boxed waiver of named policy rules lets a named agent through
//! (GOVERNED_RESTRICTED, the exception in its status and in its signed proof, the requester
//! stamped by the API server; a new approval is admitted at apply, and one the operator had
//! Denied is judged again and counts) until it ends by itself; creating one needs the verb
//! `except` (`promote` is not enough); an exception waives only the rules it names; and one by
//! label selector covers the agents it selects and no other.

use std::collections::BTreeMap;
use std::time::Duration;

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::conditions::{READY, find};
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::promotion::{PromotionOutcome, Requester};
use agentgov_api::{Agent, AgentException, AgentExceptionSpec, AgentPromotion, PolicyBundleSpec};
use agentgov_e2e::admission::*;
use agentgov_e2e::{api_error_message, approval, wait_for};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

/// The budget limit the tests' agents (250 USD a month, examples/agent-governed.yaml) exceed.
const LIMIT: f64 = 100.0;

/// The shipped policy with a monthly budget limit of `max`.
fn bundle(version: &str, max: f64) -> PolicyBundleSpec {
    let mut spec = default_bundle_spec();
    spec.version = version.into();
    spec.data.max_monthly_budget_usd = max;
    spec
}

/// Denied by the policy for its budget (the limit of 100), in the sandbox tier.
fn denied_for_budget(agent: &Agent) -> bool {
    agent.status.as_ref().is_some_and(|s| {
        s.governance_status == Some(GovernanceStatus::Sandbox)
            && s.policy.is_some()
            && s.denies
                .iter()
                .any(|d| d.contains("monthlyBudgetUsd") && d.contains("100"))
    })
}

/// Governed agents `names` (each with its labels) that the namespace's policy denies for their
/// budget. The webhook judges a governed spec at apply, so they are created under a limit of
/// 1000 and the limit is lowered to 100 afterwards; returns once the operator has judged each
/// under the lower limit.
async fn over_budget(setup: &Setup, agents: &[(&str, &[(&str, &str)])]) {
    bundle_in_force(setup, &bundle("1", 1000.0)).await;
    for (name, labels) in agents {
        let mut agent = Agent::new(name, governed_spec());
        if !labels.is_empty() {
            agent.metadata.labels = Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            );
        }
        admitted(
            setup,
            &format!("agent {name}"),
            creating(&setup.agents(), &agent),
        )
        .await;
    }
    bundle_in_force(setup, &bundle("2", LIMIT)).await;
    for (name, _) in agents {
        let agent = wait_agent(setup, name, "denied for its budget", denied_for_budget).await;
        assert!(agent.status.expect("judged").exceptions.is_empty());
    }
}

/// An AgentException named `name` waiving `rules` for `agents` (and those `selector` selects),
/// ending at `expires_at`.
fn exception(
    name: &str,
    rules: &[&str],
    agents: &[&str],
    selector: Option<LabelSelector>,
    expires_at: Timestamp,
) -> AgentException {
    AgentException::new(
        name,
        AgentExceptionSpec {
            rules: rules.iter().map(|r| r.to_string()).collect(),
            agents: agents.iter().map(|a| a.to_string()).collect(),
            selector,
            justification: format!("E2E-{name}: risk accepted for the test"),
            expires_at: Time(expires_at),
            requested_by: None,
        },
    )
}

/// `seconds` from now, to the second (as the API server stores times).
fn in_seconds(seconds: i64) -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second() + seconds).expect("a timestamp")
}

/// The AgentExceptions API as `user` (impersonated).
async fn exceptions_as(setup: &Setup, user: &str) -> Api<AgentException> {
    Api::namespaced(client_as(user).await, &setup.ns.name)
}

/// Give `user` the verb `except` on the namespace's agents (all of them) and the right to
/// create and read AgentExceptions; wait until RBAC says so.
async fn exceptor(setup: &Setup, user: &str) {
    grant(
        setup,
        &format!("{user}-exceptor"),
        user,
        json!([
            {"apiGroups": ["agentgov.dev"], "resources": ["agents"],
             "verbs": ["get", "list", "watch", "except"]},
            {"apiGroups": ["agentgov.dev"], "resources": ["agentexceptions"],
             "verbs": ["get", "list", "watch", "create"]},
        ]),
    )
    .await;
    wait_rbac(setup, user, "except").await;
    wait_access(setup, user, "agentgov.dev", "agentexceptions", "", "create").await;
}

/// An AgentPromotion named `name` approving the agent's current spec.
async fn approval_of(setup: &Setup, agent: &str, name: &str) -> AgentPromotion {
    let current = setup.agents().get(agent).await.expect("the agent");
    let hash = agentgov_api::hash::spec_hash(&current.spec).expect("a spec hash");
    let mut promotion = approval(agent, &hash);
    promotion.metadata.name = Some(name.to_string());
    promotion
}

/// The AgentPromotions API as `user` (impersonated).
async fn promotions_as(setup: &Setup, user: &str) -> Api<AgentPromotion> {
    Api::namespaced(client_as(user).await, &setup.ns.name)
}

/// `user` approves the agent's current spec with an AgentPromotion named `name`; it must be
/// admitted (used while the webhook is not registered: only the API server's guards judge it).
async fn approve_as(setup: &Setup, user: &str, agent: &str, name: &str) -> AgentPromotion {
    let promotion = approval_of(setup, agent, name).await;
    promotions_as(setup, user)
        .await
        .create(&PostParams::default(), &promotion)
        .await
        .unwrap_or_else(|e| panic!("{user} approves {agent}: {}", api_error_message(&e)))
}

/// `user`'s approval `name` of the agent, through the webhook: refused by the policy at apply
/// for the agent's budget.
async fn approval_refused_for_budget(setup: &Setup, user: &str, agent: &str, name: &str) {
    let promotion = approval_of(setup, agent, name).await;
    let message = refused(
        setup,
        &format!("{user}'s approval of {agent}"),
        "ADMISSION_DENY_POLICY",
        creating(&promotions_as(setup, user).await, &promotion),
    )
    .await;
    assert!(
        message.contains("agentpromotions.validate.agentgov.dev")
            && message.contains("monthlyBudgetUsd 250 is above the org limit of 100"),
        "{message}"
    );
}

/// Wait until the operator has observed the exception: Ready=True (Active) and applying to
/// exactly `agents`.
async fn wait_exception_active(setup: &Setup, name: &str, agents: &[&str]) -> AgentException {
    let api: Api<AgentException> = setup.ns.api();
    let expected: Vec<String> = agents.iter().map(|a| a.to_string()).collect();
    let active = wait_for(WAIT, || {
        let (api, expected) = (api.clone(), expected.clone());
        async move {
            let exception = api.get(name).await.ok()?;
            let status = exception.status.as_ref()?;
            let ready = find(&status.conditions, READY)?;
            (ready.status == "True" && ready.reason == "Active" && status.agents == expected)
                .then_some(exception)
        }
    })
    .await;
    match active {
        Ok(exception) => exception,
        Err(_) => panic!(
            "AgentException {name} never became Active for {agents:?}; it is {:#?}\n{}",
            api.get(name).await.ok(),
            setup.diagnostics()
        ),
    }
}

/// Wait until an Event with `reason` about the agent `regarding` exists.
async fn wait_event(setup: &Setup, regarding: &str, reason: &str) {
    let found = wait_for(WAIT, || async {
        event_reasons(setup, regarding)
            .await
            .iter()
            .any(|r| r == reason)
            .then_some(())
    })
    .await;
    if found.is_err() {
        panic!(
            "no {reason} Event for agent {regarding} (events: {:?})\n{}",
            event_reasons(setup, regarding).await,
            setup.diagnostics()
        );
    }
}

#[tokio::test]
async fn an_exception_lets_a_named_agent_through_one_rule_until_it_ends() {
    let mut setup = setup("exc-named").await;
    over_budget(&setup, &[("pricey", &[])]).await;
    person(&setup, "alice", true).await;
    person(&setup, "dave", true).await;
    exceptor(&setup, "carol").await;

    // alice, who holds `promote`, approves: the webhook refuses it at apply (the policy denies
    // the budget). One that reaches the operator anyway (made while the webhook was away) is
    // Denied by it.
    approval_refused_for_budget(&setup, "alice", "pricey", "refused-alice").await;
    setup.deregister().await;
    approve_as(&setup, "alice", "pricey", "by-alice").await;
    wait_outcome(&setup, "by-alice", PromotionOutcome::Denied).await;
    let agent = setup.agents().get("pricey").await.unwrap();
    assert!(denied_for_budget(&agent), "{:#?}", agent.status);
    setup.reregister().await;

    // carol, who holds `except`, waives the budget rule for it, for a minute. The requester
    // she claims is replaced by the API server with who she is.
    let expires_at = in_seconds(60);
    let mut waiver = exception("pricey-pilot", &["budget"], &["pricey"], None, expires_at);
    waiver.spec.requested_by = Some(Requester {
        username: "the-cfo".into(),
        uid: String::new(),
        groups: vec!["finance".into()],
    });
    let created = exceptions_as(&setup, "carol")
        .await
        .create(&PostParams::default(), &waiver)
        .await
        .unwrap_or_else(|e| panic!("carol creates the exception: {}", api_error_message(&e)));
    let stamped = created.spec.requested_by.expect("spec.requestedBy stamped");
    assert_eq!(stamped.username, "carol", "stamped by the API server");
    assert!(
        !stamped.groups.contains(&"finance".to_string()),
        "{stamped:?}"
    );

    // The operator judges the agent again: the same approval, Denied before, now promotes it,
    // restricted, with the exception in its status and in its signed proof.
    let agent = wait_agent(&setup, "pricey", "GOVERNED_RESTRICTED", |a| {
        governance(a) == Some(GovernanceStatus::GovernedRestricted)
    })
    .await;
    let status = agent.status.clone().unwrap();
    assert!(status.denies.is_empty(), "{:?}", status.denies);
    assert_eq!(status.exceptions.len(), 1, "{:?}", status.exceptions);
    assert_eq!(status.exceptions[0].name, "pricey-pilot");
    assert_eq!(status.exceptions[0].rules, vec!["budget".to_string()]);
    assert_eq!(status.exceptions[0].requested_by.as_deref(), Some("carol"));
    assert!(
        status.warnings.iter().any(
            |w| w.starts_with("[exception pricey-pilot] waives (budget): ")
                && w.contains("monthlyBudgetUsd")
        ),
        "{:?}",
        status.warnings
    );
    let proof = status.proof.expect("a signed proof");
    assert_eq!(proof.exceptions.len(), 1, "{:?}", proof.exceptions);
    assert_eq!(proof.exceptions[0].name, "pricey-pilot");
    assert_eq!(proof.exceptions[0].rules, vec!["budget".to_string()]);
    assert_eq!(proof.exceptions[0].requested_by, "carol");
    let ends: Timestamp = proof.exceptions[0]
        .expires_at
        .parse()
        .expect("an RFC 3339 end");
    assert_eq!(ends, expires_at, "the proof's end is the exception's");
    assert_eq!(proof.approvers[0].username, "alice");
    wait_outcome(&setup, "by-alice", PromotionOutcome::Approved).await;
    wait_exception_active(&setup, "pricey-pilot", &["pricey"]).await;
    wait_event(&setup, "pricey", "ExceptionApplied").await;
    assert_reported(
        &setup,
        "agentgov_policy_exceptions_applied_total{code=\"budget\"}",
        "EXCEPTION_APPLIED",
        "pricey",
    )
    .await;
    // Its Pods are admitted while the exception is in force.
    pod_admitted(&setup, "pricey-0", "pricey").await;
    // A new approval while the exception is in force is admitted through the webhook too (the
    // policy's only deny is waived). Checked without stopping the test: its end is checked
    // below either way, and the test fails at its end if this did not hold.
    let later = approval_of(&setup, "pricey", "by-dave").await;
    let webhook_gap = admitted_within(&promotions_as(&setup, "dave").await, &later, SETTLE).await;

    // Nobody acts: once it ends the agent is judged again without it and invalidated.
    let left = Duration::try_from(Timestamp::now().duration_until(expires_at)).unwrap_or_default();
    let agent = agentgov_e2e::wait_agent(
        &setup.agents(),
        "pricey",
        "GOVERNED_INVALIDATED after the exception ended",
        left + Duration::from_secs(30),
        |a| governance(a) == Some(GovernanceStatus::GovernedInvalidated),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", setup.diagnostics()));
    assert!(
        Timestamp::now() >= expires_at,
        "invalidated before the exception ended"
    );
    let status = agent.status.unwrap();
    assert!(status.exceptions.is_empty(), "{:?}", status.exceptions);
    assert!(
        status
            .denies
            .iter()
            .any(|d| d.contains("monthlyBudgetUsd") && d.contains("100")),
        "{:?}",
        status.denies
    );
    assert!(
        !status.warnings.iter().any(|w| w.starts_with("[exception")),
        "{:?}",
        status.warnings
    );
    wait_event(&setup, "pricey", "ExceptionEnded").await;
    assert!(
        setup
            .operator
            .logs()
            .lines()
            .any(|l| l.contains("\"EXCEPTION_ENDED\"") && l.contains("\"pricey\"")),
        "{}",
        tail(&setup.operator.logs(), 40)
    );
    wait_outcome(&setup, "by-alice", PromotionOutcome::Denied).await;
    // The exception itself says it ended.
    let api: Api<AgentException> = setup.ns.api();
    wait_for(WAIT, || async {
        let e = api.get("pricey-pilot").await.ok()?;
        let ready = find(&e.status?.conditions, READY)?.clone();
        (ready.status == "False" && ready.reason == "Expired").then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the exception is not Ready=False/Expired\n{}",
            setup.diagnostics()
        )
    });
    // And its Pods are refused: the proof was signed under an exception that has ended.
    let message = pod_denied(&setup, "pricey-1", "pricey", PROOF_MISSING).await;
    assert!(message.contains("pricey-pilot"), "{message}");
    if let Err(refusal) = webhook_gap {
        panic!(
            "while AgentException pricey-pilot waived the budget for pricey, dave's new approval was refused at apply: {refusal}\n{}",
            setup.diagnostics()
        );
    }
}

/// Dry-run the creation of `object` until it is admitted (the webhook's caches catch up), for
/// `within` at most, then create it for real; the API server's last message when it is not.
async fn admitted_within(
    api: &Api<AgentPromotion>,
    object: &AgentPromotion,
    within: Duration,
) -> Result<AgentPromotion, String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match api.create(&dry_run(), object).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(api_error_message(&e));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    api.create(&PostParams::default(), object)
        .await
        .map_err(|e| {
            format!(
                "admitted on a dry run, refused for real: {}",
                api_error_message(&e)
            )
        })
}

#[tokio::test]
async fn an_exception_needs_the_verb_except_and_waives_nothing_else() {
    let mut setup = setup("exc-verb").await;
    over_budget(&setup, &[("pricey", &[])]).await;
    // bob may approve and may create AgentExceptions as far as RBAC goes, but holds no `except`.
    person(&setup, "bob", true).await;
    grant(
        &setup,
        "bob-exceptions",
        "bob",
        json!([{"apiGroups": ["agentgov.dev"], "resources": ["agentexceptions"],
                "verbs": ["get", "list", "watch", "create"]}]),
    )
    .await;
    wait_access(
        &setup,
        "bob",
        "agentgov.dev",
        "agentexceptions",
        "",
        "create",
    )
    .await;
    let bobs = exceptions_as(&setup, "bob").await;
    let named = exception("by-bob", &["budget"], &["pricey"], None, in_seconds(3600));
    let error = bobs
        .create(&PostParams::default(), &named)
        .await
        .expect_err("bob holds no except");
    let message = api_error_message(&error);
    assert!(
        matches!(&error, kube::Error::Api(s) if s.code == 403),
        "403 Forbidden expected: {error:?}"
    );
    assert!(
        message.contains("ValidatingAdmissionPolicy")
            && message.contains("bob may not waive policy rules for agent")
            && message.contains("'except'"),
        "{message}"
    );
    // Not by label either.
    let selected = exception(
        "by-bob-selector",
        &["budget"],
        &[],
        Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("team".into(), "pilot".into())])),
            match_expressions: None,
        }),
        in_seconds(3600),
    );
    let error = bobs
        .create(&PostParams::default(), &selected)
        .await
        .expect_err("bob holds no except");
    let message = api_error_message(&error);
    assert!(
        message.contains("may not waive policy rules for agents selected by label")
            && message.contains("'except'"),
        "{message}"
    );
    let stored = setup
        .ns
        .api::<AgentException>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(stored.items.is_empty(), "{:?}", stored.items);

    // carol holds `except`, and waives the temperature rule: the budget still denies.
    exceptor(&setup, "carol").await;
    exceptions_as(&setup, "carol")
        .await
        .create(
            &PostParams::default(),
            &exception(
                "pricey-temperature",
                &["temperature"],
                &["pricey"],
                None,
                in_seconds(3600),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("carol creates the exception: {}", api_error_message(&e)));
    // Once the operator has observed the exception, an approval is judged with it in force:
    // the webhook refuses it at apply, and the operator, when it reaches it anyway (made while
    // the webhook was away), denies it.
    wait_exception_active(&setup, "pricey-temperature", &["pricey"]).await;
    approval_refused_for_budget(&setup, "bob", "pricey", "refused-bob").await;
    setup.deregister().await;
    approve_as(&setup, "bob", "pricey", "by-bob").await;
    wait_outcome(&setup, "by-bob", PromotionOutcome::Denied).await;
    let agent = setup.agents().get("pricey").await.unwrap();
    assert!(denied_for_budget(&agent), "{:#?}", agent.status);
    let status = agent.status.unwrap();
    assert!(status.proof.is_none());
    assert!(status.exceptions.is_empty(), "{:?}", status.exceptions);
    assert!(
        !status.warnings.iter().any(|w| w.starts_with("[exception")),
        "{:?}",
        status.warnings
    );
    let promotion = setup
        .ns
        .api::<AgentPromotion>()
        .get("by-bob")
        .await
        .unwrap();
    let denies = promotion.status.unwrap().denies;
    assert!(
        denies.iter().any(|d| d.contains("monthlyBudgetUsd")),
        "{denies:?}"
    );
    assert!(
        !event_reasons(&setup, "pricey")
            .await
            .iter()
            .any(|r| r == "ExceptionApplied")
    );
}

#[tokio::test]
async fn an_exception_by_label_covers_the_agents_it_selects_and_no_other() {
    let mut setup = setup("exc-label").await;
    over_budget(
        &setup,
        &[("labelled", &[("team", "pilot")]), ("plain", &[])],
    )
    .await;
    exceptor(&setup, "carol").await;
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([("team".into(), "pilot".into())])),
        match_expressions: None,
    };
    exceptions_as(&setup, "carol")
        .await
        .create(
            &PostParams::default(),
            &exception("pilot", &["budget"], &[], Some(selector), in_seconds(3600)),
        )
        .await
        .unwrap_or_else(|e| panic!("carol creates the exception: {}", api_error_message(&e)));
    wait_exception_active(&setup, "pilot", &["labelled"]).await;
    // Approved by the cluster admin without the webhook (which judges approvals by the policy
    // alone: test 1 checks it with an exception in force).
    setup.deregister().await;
    approve(&setup, "labelled").await;
    let plain = approve(&setup, "plain").await;
    let agent = wait_agent(&setup, "labelled", "GOVERNED_RESTRICTED", |a| {
        governance(a) == Some(GovernanceStatus::GovernedRestricted)
    })
    .await;
    let status = agent.status.unwrap();
    assert_eq!(status.exceptions.len(), 1, "{:?}", status.exceptions);
    assert_eq!(status.exceptions[0].name, "pilot");
    assert_eq!(status.proof.unwrap().exceptions[0].name, "pilot");
    assert!(
        status
            .warnings
            .iter()
            .any(|w| w.starts_with("[exception pilot] waives (budget): ")),
        "{:?}",
        status.warnings
    );
    wait_outcome(
        &setup,
        plain.metadata.name.as_deref().unwrap(),
        PromotionOutcome::Denied,
    )
    .await;
    let agent = setup.agents().get("plain").await.unwrap();
    assert!(denied_for_budget(&agent), "{:#?}", agent.status);
    let status = agent.status.unwrap();
    assert!(status.proof.is_none());
    assert!(status.exceptions.is_empty(), "{:?}", status.exceptions);
}
