//! The kubectl plugin's `approve` (with `--as`) and `bulk` on the real control plane, run as a
//! user runs them:
//! - four eyes: under a bundle requiring two approvers, `promote --as alice` then `approve --as
//!   bob --wait` make the agent GOVERNED_VALID with both in the proof; approving twice as the
//!   same identity, approving what nobody promoted, and approving what is in force are refused
//!   with a sentence. alice and bob hold only what an approver needs (a Role in the test).
//! - bulk over a label selection: `extend --by 1h --yes` moves each selected sandbox's expiry an
//!   hour later (no other agent's); without `--yes` and with no terminal it refuses and changes
//!   nothing; `promote --yes` creates one AgentPromotion per governed agent; `demote --yes`
//!   makes them contained sandboxes; `delete --yes` deletes exactly the selection. Preview
//!   lines (stderr) and per-agent result lines (stdout) are asserted.
//!
//! Each test has its own namespace, operator and registered webhook (`admission::setup`).

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use agentgov_api::agent::{AgentMode, AgentSpec, GovernanceStatus};
use agentgov_api::hash::spec_hash;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::policy_bundle::ApprovalsData;
use agentgov_api::{Agent, AgentPromotion};
use agentgov_e2e::admission::*;
use agentgov_e2e::plugin::{Plugin, Run, promotions};
use agentgov_e2e::wait_for;
use jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, ObjectMeta};
use serde_json::json;

/// What an approver needs, and no more: read agents and hold `promote` on them; read and create
/// AgentPromotions. (Who they are, a SelfSubjectReview, every authenticated user may ask.)
async fn approver(setup: &Setup, user: &str) {
    grant(
        setup,
        &format!("{user}-approver"),
        user,
        json!([
            {"apiGroups": ["agentgov.dev"], "resources": ["agents"], "verbs": ["get", "promote"]},
            {"apiGroups": ["agentgov.dev"], "resources": ["agentpromotions"],
             "verbs": ["get", "list", "create"]},
        ]),
    )
    .await;
    wait_rbac(setup, user, "promote").await;
    wait_access(setup, user, "agentgov.dev", "agentpromotions", "", "create").await;
}

#[tokio::test]
async fn approve_as_a_second_identity_after_promote_as_the_first() {
    let setup = setup("cli-approve").await;
    let mut bundle = default_bundle_spec();
    bundle.data.approvals = Some(ApprovalsData { required: 2 });
    bundle_in_force(&setup, &bundle).await;
    approver(&setup, "alice").await;
    approver(&setup, "bob").await;
    let ns = setup.ns.name.as_str();
    let plugin = Plugin::new(ns);
    create_agent(&setup, "auditor", governed_spec()).await;
    let hash = spec_hash(&governed_spec()).unwrap();
    let short = &hash[..12];
    // The operator has judged the spec: it awaits two approvers.
    wait_agent(&setup, "auditor", "awaiting 2 approvals", |a| {
        a.status
            .as_ref()
            .and_then(|s| s.approval.as_ref())
            .is_some_and(|ap| ap.spec_hash == hash && ap.required == 2)
    })
    .await;
    let not_awaiting =
        format!("error: agent {ns}/auditor is not awaiting approval at spec hash {short}: ");

    // Nobody promoted it yet: approve is not the first step.
    let message = plugin.error(&["approve", "auditor", "--as", "bob"]).await;
    assert_eq!(
        message,
        format!(
            "{not_awaiting}nobody has approved it yet; start with `kubectl agentgov promote auditor`"
        )
    );

    // alice promotes it (impersonated: the API server stamps alice as the requester).
    let run = plugin
        .ok(&["promote", "auditor", "--as", "alice", "--reason", "CHG-1"])
        .await;
    let first = format!("auditor-{}", &hash[..10]);
    assert_eq!(
        run.stdout,
        format!("agentpromotion.agentgov.dev/{first} created\n"),
        "{run:#?}"
    );
    let alices = setup.ns.api::<AgentPromotion>().get(&first).await.unwrap();
    assert_eq!(alices.spec.requested_by.unwrap().username, "alice");

    // alice again: the operator counts distinct approvers, so it is refused.
    let message = plugin
        .error(&["approve", "auditor", "--as", "alice", "--reason", "CHG-1"])
        .await;
    assert_eq!(
        message,
        format!(
            "error: alice already approved agent {ns}/auditor at spec hash {short}: the policy counts distinct approvers, so another identity must approve"
        )
    );
    assert_eq!(
        promotions(&setup).await.len(),
        1,
        "a refusal creates nothing"
    );

    // A server dry run as bob: judged, nothing created.
    let run = plugin
        .ok(&["approve", "auditor", "--as", "bob", "--dry-run=server"])
        .await;
    assert!(
        run.stdout.ends_with(" created (server dry run)\n"),
        "{run:#?}"
    );
    assert_eq!(
        promotions(&setup).await.len(),
        1,
        "a dry run creates nothing"
    );

    // bob approves and waits: GOVERNED_VALID, both approvers in the proof.
    let run = plugin
        .ok(&[
            "approve",
            "auditor",
            "--as",
            "bob",
            "--reason",
            "CHG-1",
            "--wait",
            "--timeout",
            "90s",
        ])
        .await;
    assert!(
        run.stdout
            .starts_with(&format!("agentpromotion.agentgov.dev/{first}-"))
            && run.stdout.ends_with(" created\n"),
        "the name taken by alice's, bob's is generated: {run:#?}"
    );
    assert!(
        run.stderr.contains(&format!(
            "the policy in force allows approving agent {ns}/auditor at spec hash {short}"
        )),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains(&format!(
            "agent {ns}/auditor at spec hash {short}: approved by alice, bob (2 of 2), none more needed"
        )),
        "{run:#?}"
    );
    assert!(
        run.stderr.trim_end().ends_with(&format!(
            "agent {ns}/auditor is GOVERNED_VALID for spec hash {short}"
        )),
        "{run:#?}"
    );
    let auditor = setup.agents().get("auditor").await.unwrap();
    assert_eq!(governance(&auditor), Some(GovernanceStatus::GovernedValid));
    let proof = auditor.status.unwrap().proof.unwrap();
    let approvers: Vec<&str> = proof
        .approvers
        .iter()
        .map(|a| a.username.as_str())
        .collect();
    assert_eq!(approvers, ["alice", "bob"]);
    let requesters: Vec<String> = promotions(&setup)
        .await
        .into_iter()
        .map(|p| p.spec.requested_by.unwrap().username)
        .collect();
    assert_eq!(requesters.len(), 2, "{requesters:?}");

    // In force now: nothing awaits approval (bob again).
    let message = plugin.error(&["approve", "auditor", "--as", "bob"]).await;
    assert_eq!(
        message,
        format!("{not_awaiting}it is GOVERNED_VALID for this spec")
    );
    // The API server judges the impersonated identity: carol holds no Role here.
    let message = plugin.error(&["approve", "auditor", "--as", "carol"]).await;
    assert!(
        message.contains(r#"User "carol" cannot get resource "agents""#),
        "{message}"
    );
}

/// `name` with `spec` and the label `group=value`, created through the webhook.
async fn labelled(setup: &Setup, name: &str, spec: AgentSpec, label: (&str, &str)) -> Agent {
    let agent = Agent {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(label.0.into(), label.1.into())])),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    };
    admitted(
        setup,
        &format!("agent {name}"),
        creating(&setup.agents(), &agent),
    )
    .await
}

/// The stdout lines of a bulk run, sorted.
fn results(run: &Run) -> Vec<String> {
    let mut lines: Vec<String> = run.stdout.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// A time as the plugin prints it (RFC 3339, whole seconds).
fn time(at: Timestamp) -> String {
    at.round(jiff::Unit::Second).unwrap().to_string()
}

fn created(agent: &Agent) -> Timestamp {
    agent.metadata.creation_timestamp.as_ref().unwrap().0
}

#[tokio::test]
async fn bulk_extend_promote_demote_and_delete_a_label_selection() {
    let setup = setup("cli-bulk").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    let ns = setup.ns.name.as_str();
    let plugin = Plugin::new(ns);
    let mut labs = Vec::new();
    for name in ["lab-1", "lab-2", "lab-3"] {
        labs.push(labelled(&setup, name, sandbox_spec(3_600), ("team", "lab")).await);
    }
    labelled(&setup, "other", sandbox_spec(3_600), ("team", "other")).await;

    // Without --yes and without a terminal: the preview, then a refusal; nothing changes.
    let args = ["bulk", "extend", "--by", "1h", "-l", "team=lab"];
    let run = plugin.run(&args).await;
    let message = run.failed(&args);
    assert_eq!(
        message,
        "error: stdin is not a terminal, so there is no one to confirm: pass --yes to proceed (nothing was changed)"
    );
    let preview: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        preview[0].split_whitespace().collect::<Vec<_>>(),
        ["AGENT", "NOW", "AFTER"],
        "{run:#?}"
    );
    for (row, lab) in preview[1..4].iter().zip(&labs) {
        let hour = SignedDuration::from_hours(1);
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            columns,
            [
                format!("{ns}/{}", lab.metadata.name.as_deref().unwrap()),
                time(created(lab) + hour),
                time(created(lab) + hour + hour),
            ],
            "{run:#?}"
        );
    }
    assert_eq!(preview.len(), 5, "{run:#?}");
    for lab in ["lab-1", "lab-2", "lab-3"] {
        let agent = setup.agents().get(lab).await.unwrap();
        assert_eq!(
            agent.spec.sandbox.unwrap().ttl_seconds,
            Some(3_600),
            "{lab}"
        );
    }

    // Admission has the last word: alice may patch agents but lacks the verb `extend`, so
    // each extension is refused, one error line per agent, exit 1.
    grant(
        &setup,
        "alice-editor",
        "alice",
        json!([{"apiGroups": ["agentgov.dev"], "resources": ["agents"],
                "verbs": ["get", "list", "patch"]}]),
    )
    .await;
    wait_rbac(&setup, "alice", "patch").await;
    let run = plugin
        .run(&[
            "bulk", "extend", "--by", "1h", "-l", "team=lab", "--yes", "--as", "alice",
        ])
        .await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(
        run.stderr.lines().last(),
        Some("error: 3 of 3 agents failed"),
        "{run:#?}"
    );
    for (line, lab) in results(&run).iter().zip(["lab-1", "lab-2", "lab-3"]) {
        assert!(
            line.starts_with(&format!(
                "agent {ns}/{lab}: error: the API server refused to extend agent {ns}/{lab}: "
            )) && line.contains("alice may not move the expiry of sandbox"),
            "{run:#?}"
        );
    }

    // --yes: each selected sandbox lives an hour longer; `other` is untouched.
    let run = plugin
        .ok(&["bulk", "extend", "--by", "1h", "-l", "team=lab", "--yes"])
        .await;
    let expected: Vec<String> = labs
        .iter()
        .map(|lab| {
            format!(
                "agent {ns}/{}: extended to {}",
                lab.metadata.name.as_deref().unwrap(),
                time(created(lab) + SignedDuration::from_hours(2))
            )
        })
        .collect();
    assert_eq!(results(&run), expected, "{run:#?}");
    for lab in ["lab-1", "lab-2", "lab-3"] {
        let agent = setup.agents().get(lab).await.unwrap();
        assert_eq!(
            agent.spec.sandbox.unwrap().ttl_seconds,
            Some(7_200),
            "{lab}"
        );
        let fields = agent.metadata.managed_fields.unwrap_or_default();
        assert!(
            fields
                .iter()
                .any(|f| f.manager.as_deref() == Some("kubectl-agentgov")),
            "{lab}: written under the plugin's field manager"
        );
    }
    let other = setup.agents().get("other").await.unwrap();
    assert_eq!(other.spec.sandbox.unwrap().ttl_seconds, Some(3_600));

    // Two governed requests: one AgentPromotion each.
    for name in ["gov-1", "gov-2"] {
        labelled(&setup, name, governed_spec(), ("tier", "gov")).await;
    }
    let hash = spec_hash(&governed_spec()).unwrap();
    let run = plugin
        .ok(&[
            "bulk", "promote", "-l", "tier=gov", "--reason", "CHG-2", "--yes",
        ])
        .await;
    assert_eq!(
        results(&run),
        [
            format!(
                "agent {ns}/gov-1: approved by agentpromotion gov-1-{}",
                &hash[..10]
            ),
            format!(
                "agent {ns}/gov-2: approved by agentpromotion gov-2-{}",
                &hash[..10]
            ),
        ],
        "{run:#?}"
    );
    let row = |l: &str| {
        l.starts_with(&format!("{ns}/gov-1 "))
            && l.ends_with(&format!("approved at spec hash {}", &hash[..12]))
    };
    assert!(run.stderr.lines().any(row), "the preview: {run:#?}");
    let mut approved: Vec<String> = promotions(&setup)
        .await
        .into_iter()
        .map(|p| {
            assert_eq!(p.spec.reason.as_deref(), Some("CHG-2"));
            p.spec.agent
        })
        .collect();
    approved.sort();
    assert_eq!(approved, ["gov-1", "gov-2"]);
    for name in ["gov-1", "gov-2"] {
        wait_agent(&setup, name, "GOVERNED_VALID", |a| {
            governance(a) == Some(GovernanceStatus::GovernedValid)
        })
        .await;
    }

    // Demote: contained sandboxes that live two hours from now.
    let before = Timestamp::now();
    let run = plugin
        .ok(&["bulk", "demote", "-l", "tier=gov", "--ttl", "2h", "--yes"])
        .await;
    let lines = results(&run);
    assert_eq!(lines.len(), 2, "{run:#?}");
    for (line, name) in lines.iter().zip(["gov-1", "gov-2"]) {
        assert!(
            line.starts_with(&format!("agent {ns}/{name}: demoted to a sandbox until ")),
            "{run:#?}"
        );
        let agent = setup.agents().get(name).await.unwrap();
        assert_eq!(agent.spec.mode, AgentMode::Sandbox);
        let until = agent.spec.sandbox.unwrap().expires_at.unwrap().0;
        assert!(line.ends_with(&time(until)), "{line}");
        let after = Timestamp::now();
        let two = SignedDuration::from_hours(2);
        assert!(
            until >= time_floor(before + two)
                && until <= after + two + SignedDuration::from_secs(1),
            "{until}"
        );
        let c = agent.spec.anatomy.containment;
        assert!(!c.external_calls && !c.persistent_writes);
        assert_eq!(
            agent.spec.anatomy.capabilities,
            governed_spec().anatomy.capabilities
        );
    }
    for name in ["gov-1", "gov-2"] {
        wait_agent(&setup, name, "SANDBOX", |a| {
            governance(a) == Some(GovernanceStatus::Sandbox)
        })
        .await;
    }
    // Sandboxes now: demote again skips them all.
    let run = plugin.ok(&["bulk", "demote", "-l", "tier=gov"]).await;
    assert_eq!(run.stdout, "", "{run:#?}");
    assert!(run.stderr.ends_with("nothing to change\n"), "{run:#?}");

    // Delete: refused without --yes; a server dry run deletes nothing; --yes deletes exactly
    // the selection.
    let args = ["bulk", "delete", "-l", "team=lab"];
    let message = plugin.error(&args).await;
    assert!(message.contains("pass --yes"), "{message}");
    let run = plugin
        .ok(&["bulk", "delete", "-l", "team=lab", "--dry-run=server"])
        .await;
    assert_eq!(
        results(&run),
        ["lab-1", "lab-2", "lab-3"].map(|n| format!("agent {ns}/{n}: deleted (server dry run)")),
        "{run:#?}"
    );
    assert_eq!(
        setup
            .agents()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        6
    );
    let run = plugin
        .ok(&["bulk", "delete", "-l", "team=lab", "--yes"])
        .await;
    assert_eq!(
        results(&run),
        ["lab-1", "lab-2", "lab-3"].map(|n| format!("agent {ns}/{n}: deleted")),
        "{run:#?}"
    );
    let agents = setup.agents();
    wait_for(WAIT, || async {
        let mut names: Vec<String> = agents
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter_map(|a| a.metadata.name)
            .collect();
        names.sort();
        (names == ["gov-1", "gov-2", "other"]).then_some(())
    })
    .await
    .expect("exactly the selection deleted");
}

/// `at` rounded down to the second (the API server keeps whole seconds).
fn time_floor(at: Timestamp) -> Timestamp {
    Timestamp::from_second(at.as_second()).unwrap()
}
