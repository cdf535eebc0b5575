//! [`plan`] over plain data: numbering, renumbering on return, approvals recorded, pruning.

use agentgov_api::hash::spec_hash;
use agentgov_api::revision::RevisionApproval;

use super::*;

fn hash(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn rev(n: u8, revision: i64) -> Known {
    Known {
        name: revision_name("auditor", &hash(n)),
        spec_hash: hash(n),
        revision,
        approval: None,
    }
}

fn approval(who: &str) -> RevisionApproval {
    RevisionApproval {
        approved_by: vec![who.into()],
        policy_hash: "p".repeat(64),
        approved_at: "2026-01-01T00:00:00Z".into(),
        approvals: vec![format!("auditor-{who}")],
    }
}

fn want<'a>(current: &'a str, limit: usize) -> Want<'a> {
    Want {
        agent: "auditor",
        current,
        approval: None,
        approved: None,
        limit,
    }
}

#[test]
fn a_first_spec_is_revision_one() {
    let current = hash(1);
    assert_eq!(
        plan(&[], &want(&current, 10)),
        [Step::Create {
            name: revision_name("auditor", &current),
            revision: 1
        }]
    );
}

#[test]
fn a_new_spec_is_the_newest_revision_and_an_unchanged_one_writes_nothing() {
    let known = [rev(1, 1), rev(2, 2)];
    let current = hash(3);
    assert_eq!(
        plan(&known, &want(&current, 10)),
        [Step::Create {
            name: revision_name("auditor", &current),
            revision: 3
        }]
    );
    assert_eq!(plan(&known, &want(&hash(2), 10)), []);
}

#[test]
fn a_spec_that_comes_back_is_renumbered_to_the_newest() {
    let known = [rev(1, 1), rev(2, 2)];
    assert_eq!(
        plan(&known, &want(&hash(1), 10)),
        [Step::Renumber {
            name: revision_name("auditor", &hash(1)),
            revision: 3
        }]
    );
}

#[test]
fn the_approval_in_force_is_recorded_once() {
    let current = hash(1);
    let alice = approval("alice");
    let mut w = want(&current, 10);
    w.approval = Some(&alice);
    // With the revision it is created with.
    assert_eq!(
        plan(&[], &w),
        [
            Step::Create {
                name: revision_name("auditor", &current),
                revision: 1
            },
            Step::Annotate {
                name: revision_name("auditor", &current),
                approval: alice.clone()
            }
        ]
    );
    // On a revision without it; not again.
    assert_eq!(
        plan(&[rev(1, 1)], &w),
        [Step::Annotate {
            name: revision_name("auditor", &current),
            approval: alice.clone()
        }]
    );
    let mut recorded = rev(1, 1);
    recorded.approval = Some(alice.clone());
    assert_eq!(plan(std::slice::from_ref(&recorded), &w), []);
    // Signed again under a new policy (a revalidation): the same approval, nothing written.
    let resigned = RevisionApproval {
        policy_hash: "q".repeat(64),
        approved_at: "2026-02-01T00:00:00Z".into(),
        ..alice.clone()
    };
    w.approval = Some(&resigned);
    assert_eq!(plan(std::slice::from_ref(&recorded), &w), []);
    // Approved again by someone else (after a rollback, say): recorded.
    let bob = approval("bob");
    w.approval = Some(&bob);
    assert_eq!(
        plan(&[recorded], &w),
        [Step::Annotate {
            name: revision_name("auditor", &current),
            approval: bob.clone()
        }]
    );
}

#[test]
fn revisions_beyond_the_limit_are_pruned_oldest_first_but_never_the_current_or_approved() {
    let known: Vec<Known> = (1..=4).map(|n| rev(n, i64::from(n))).collect();
    // A fifth spec with a limit of 3: two go, the oldest.
    let current = hash(5);
    let steps = plan(&known, &want(&current, 3));
    assert_eq!(
        steps[1..],
        [
            Step::Delete {
                name: revision_name("auditor", &hash(1))
            },
            Step::Delete {
                name: revision_name("auditor", &hash(2))
            }
        ]
    );
    // Revision 1 is the approved one: it stays; 2 and 3 go.
    let approved = hash(1);
    let mut w = want(&current, 3);
    w.approved = Some(&approved);
    let deleted: Vec<Step> = plan(&known, &w).into_iter().skip(1).collect();
    assert_eq!(
        deleted,
        [
            Step::Delete {
                name: revision_name("auditor", &hash(2))
            },
            Step::Delete {
                name: revision_name("auditor", &hash(3))
            }
        ]
    );
    // The current spec came back as the oldest: renumbered, kept; the next oldest go.
    let back = hash(1);
    let steps = plan(&known, &want(&back, 2));
    assert_eq!(
        steps,
        [
            Step::Renumber {
                name: revision_name("auditor", &hash(1)),
                revision: 5
            },
            Step::Delete {
                name: revision_name("auditor", &hash(2))
            },
            Step::Delete {
                name: revision_name("auditor", &hash(3))
            }
        ]
    );
    // Within the limit, nothing goes.
    assert_eq!(plan(&known, &want(&hash(4), 4)), []);
}

#[test]
fn a_revision_is_read_back_from_what_the_operator_writes() {
    let mut agent = Agent::new("auditor", crate::fixtures::governed_spec());
    agent.metadata.namespace = Some(crate::fixtures::NAMESPACE.into());
    agent.metadata.uid = Some("uid-1".into());
    let current = spec_hash(&agent.spec).unwrap();
    let object = new_revision(&agent, &revision_name("auditor", &current), &current, 7).unwrap();
    assert!(owned_by(&object, "uid-1"));
    assert!(!owned_by(&object, "uid-2"));
    assert_eq!(
        object.labels().get(AGENT_LABEL).map(String::as_str),
        Some("auditor")
    );
    let data: RevisionData<agentgov_api::AgentSpec> =
        serde_json::from_value(object.data.0.clone()).unwrap();
    assert_eq!(data.spec, agent.spec);
    assert_eq!(spec_hash(&data.spec).unwrap(), current);
    assert_eq!(
        known(&object),
        Some(Known {
            name: revision_name("auditor", &current),
            spec_hash: current,
            revision: 7,
            approval: None,
        })
    );
}

fn revision_of(agent: &str, uid: &str, n: u8, revision: i64) -> ControllerRevision {
    let mut object = Agent::new(agent, crate::fixtures::governed_spec());
    object.metadata.namespace = Some(crate::fixtures::NAMESPACE.into());
    object.metadata.uid = Some(uid.into());
    new_revision(&object, &revision_name(agent, &hash(n)), &hash(n), revision).unwrap()
}

fn page(items: &[ControllerRevision], next: Option<&str>) -> http::Response<kube::client::Body> {
    let body = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevisionList",
        "metadata": {"continue": next.unwrap_or_default()},
        "items": items,
    });
    http::Response::builder()
        .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

#[tokio::test]
async fn a_fresh_operator_lists_a_namespaces_revisions_once_in_pages_and_each_agent_takes_its_own()
{
    let (service, mut handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let api: Api<ControllerRevision> = Api::namespaced(
        kube::Client::new(service, crate::fixtures::NAMESPACE),
        crate::fixtures::NAMESPACE,
    );
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.unwrap();
        let query = request.uri().query().unwrap_or_default().to_string();
        assert!(
            query.contains("labelSelector=agentgov.dev%2Fagent"),
            "{query}"
        );
        assert!(
            query.contains("limit=500") && !query.contains("continue="),
            "{query}"
        );
        send.send_response(page(
            &[
                revision_of("a", "uid-a", 1, 1),
                revision_of("b", "uid-b", 1, 1),
            ],
            Some("page-2"),
        ));
        let (request, send) = handle.next_request().await.unwrap();
        let query = request.uri().query().unwrap_or_default().to_string();
        assert!(query.contains("continue=page-2"), "{query}");
        send.send_response(page(&[revision_of("a", "uid-a", 2, 2)], None));
        // No third request: the namespace is listed once.
        assert!(handle.next_request().await.is_none());
    });
    let converged = Converged::default();
    let a = converged
        .take_listed(&api, crate::fixtures::NAMESPACE, "uid-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        a.iter()
            .map(|k| (k.spec_hash.clone(), k.revision))
            .collect::<Vec<_>>(),
        [(hash(1), 1), (hash(2), 2)]
    );
    // Taken: a second look of the same agent lists for itself.
    let again = converged.take_listed(&api, crate::fixtures::NAMESPACE, "uid-a");
    assert_eq!(again.await.unwrap(), None);
    let b = converged.take_listed(&api, crate::fixtures::NAMESPACE, "uid-b");
    assert_eq!(b.await.unwrap().map(|k| k.len()), Some(1));
    // An agent with none listed (or gone before its look): nothing from the list.
    converged.forget("uid-c");
    let c = converged.take_listed(&api, crate::fixtures::NAMESPACE, "uid-c");
    assert_eq!(c.await.unwrap(), None);
    drop(api);
    server.await.unwrap();
}
