//! `POST /v1/admit`'s wire format and its step from body to decision: what a request may hold
//! (unknown fields, names, bounds), the answer's JSON, and decisions through the real decide
//! path over a [`StaticView`] (signed governed agents: `tests/external_decisions.rs`).

use agentgov_api::agent::AgentStatus;
use agentgov_api::keyring::{KeyRing, KeyRingConfig};
use agentgov_api::runtime::RuntimeSpec;
use agentgov_api::testing::sandbox_spec;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::*;
use crate::testing::StaticView;

const NS: &str = "team-a";
const SANDBOX: &str = "scratchpad";
const DIGEST: &str = "sha256:4f2b9c1e0d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";

fn now() -> Timestamp {
    Timestamp::constant(1_768_046_400, 0)
}

fn approved() -> String {
    format!("ghcr.io/acme/scratchpad@{DIGEST}")
}

/// A sandbox agent created an hour ago (a sandbox needs no proof), approving `images` when
/// given.
fn sandbox(name: &str, images: Option<&[&str]>) -> Agent {
    let mut spec = sandbox_spec();
    spec.runtime = images.map(|images| RuntimeSpec {
        images: images.iter().map(|i| i.to_string()).collect(),
        ..RuntimeSpec::default()
    });
    let mut agent = Agent::new(name, spec);
    agent.metadata.namespace = Some(NS.into());
    agent.metadata.uid = Some(format!("uid-{name}"));
    let created = now()
        .checked_sub(SignedDuration::from_hours(1))
        .expect("in range");
    agent.metadata.creation_timestamp = Some(Time(created));
    agent.status = Some(AgentStatus {
        governance_status: Some(GovernanceStatus::Sandbox),
        ..AgentStatus::default()
    });
    agent
}

fn view(agents: impl IntoIterator<Item = Agent>) -> StaticView {
    // Sandboxes carry no proof: no key is read.
    let keyring = KeyRing::from_config(&KeyRingConfig::default()).unwrap();
    let mut view = StaticView::new(keyring);
    for agent in agents {
        view.add_agent(agent);
    }
    view
}

fn ask(view: &StaticView, body: &Value) -> Admitted {
    let body = serde_json::to_vec(body).unwrap();
    admit(
        &body,
        view,
        &ExpiryPolicy::default(),
        now(),
        "CN=orchestrator",
    )
}

fn answer_json(admitted: &Admitted) -> Value {
    serde_json::to_value(&admitted.answer).unwrap()
}

#[test]
fn a_request_is_names_and_optional_images() {
    let full = AdmitRequest::parse(
        br#"{"namespace":"team-a","agent":"auditor","images":["ghcr.io/acme/agent@sha256:00"]}"#,
    )
    .unwrap();
    assert_eq!(full.namespace, "team-a");
    assert_eq!(full.agent, "auditor");
    assert_eq!(full.images, ["ghcr.io/acme/agent@sha256:00"]);
    for body in [
        r#"{"namespace":"team-a","agent":"auditor"}"#,
        r#"{"namespace":"team-a","agent":"auditor","images":null}"#,
        r#"{"namespace":"team-a","agent":"auditor","images":[]}"#,
    ] {
        let request = AdmitRequest::parse(body.as_bytes()).unwrap();
        assert!(request.images.is_empty(), "{body}");
    }
    // The client serializes the same type: what it sends parses back the same.
    let sent = serde_json::to_vec(&full).unwrap();
    assert_eq!(AdmitRequest::parse(&sent).unwrap(), full);
}

#[test]
fn unknown_fields_and_other_shapes_are_refused_with_the_reason() {
    let unknown =
        AdmitRequest::parse(br#"{"namespace":"team-a","agent":"a","image":"x"}"#).unwrap_err();
    let text = unknown.to_string();
    assert!(text.contains("unknown field `image`"), "{text}");
    assert!(text.contains("expected one of"), "{text}");
    for (body, says) in [
        (&b"{\"agent\":\"a\"}"[..], "missing field `namespace`"),
        (b"{\"namespace\":\"n\"}", "missing field `agent`"),
        (b"{\"namespace\":\"n\",\"agent\":1}", "invalid type"),
        (
            b"{\"namespace\":\"n\",\"agent\":\"a\",\"images\":\"x\"}",
            "invalid type",
        ),
        (b" [\"team-a\", \"a\"]", "not an array"),
        (b"1", "invalid type"),
        (b"not json", "expected"),
        (b"", "EOF"),
        (
            b"{\"namespace\":\"n\",\"agent\":\"\xff\"}",
            "invalid unicode",
        ),
    ] {
        let err = AdmitRequest::parse(body).unwrap_err();
        assert!(matches!(err, RequestError::Json(_)), "{err:?}");
        assert!(err.to_string().contains(says), "{body:?}: {err}");
    }
}

#[test]
fn names_and_images_are_bounded() {
    let request = |namespace: &str, agent: &str, images: Vec<String>| AdmitRequest {
        namespace: namespace.into(),
        agent: agent.into(),
        images,
    };
    let ok = |r: AdmitRequest| r.validate().map(|()| r);
    assert!(ok(request("team-a", "a.b-c", vec![])).is_ok());
    assert!(ok(request(&"n".repeat(63), &"a".repeat(253), vec![])).is_ok());
    for namespace in ["", "Team", "team_a", "-a", "a-", "a.b", &"n".repeat(64)] {
        let err = request(namespace, "a", vec![]).validate().unwrap_err();
        assert!(matches!(err, RequestError::Namespace(_)), "{namespace:?}");
    }
    for agent in ["", "A", "a..b", ".a", "a.", "a/b", "a b", &"a".repeat(254)] {
        let err = request("n", agent, vec![]).validate().unwrap_err();
        assert!(matches!(err, RequestError::Agent(_)), "{agent:?}");
    }
    // A long name is quoted back cut, not whole.
    let long = request("n", &"A".repeat(10_000), vec![])
        .validate()
        .unwrap_err();
    assert!(long.to_string().len() < 300, "{long}");
    let many = vec![approved(); MAX_IMAGES + 1];
    assert_eq!(
        request("n", "a", many).validate(),
        Err(RequestError::TooManyImages(MAX_IMAGES + 1))
    );
    assert!(ok(request("n", "a", vec![approved(); MAX_IMAGES])).is_ok());
    for bad in [
        String::new(),
        "x".repeat(MAX_IMAGE_BYTES + 1),
        "a b".into(),
        "a\nb".into(),
    ] {
        let images = vec![approved(), bad.clone()];
        assert_eq!(
            request("n", "a", images).validate(),
            Err(RequestError::Image(1)),
            "{bad:?}"
        );
    }
}

#[test]
fn an_allow_names_the_agent_its_status_its_spec_and_no_proof_of_a_sandbox() {
    let agent = sandbox(SANDBOX, Some(&[&approved()]));
    let spec = serde_json::to_value(&agent.spec).unwrap();
    let view = view([agent]);
    let admitted = ask(
        &view,
        &json!({"namespace": NS, "agent": SANDBOX, "images": [approved()]}),
    );
    assert!(admitted.decision.allowed());
    assert_eq!(
        answer_json(&admitted),
        json!({
            "allowed": true,
            "code": "ADMISSION_ALLOW",
            "message": "a SANDBOX agent: passed the seven checks",
            "agent": SANDBOX,
            "namespace": NS,
            "governanceStatus": "SANDBOX",
            "spec": spec,
        })
    );
    // Logged as the Pod CREATE it is judged as, by the certificate that asked.
    assert_eq!(admitted.facts.operation, "CREATE");
    assert_eq!(admitted.facts.namespace, NS);
    assert_eq!(admitted.facts.requester, "CN=orchestrator");
    assert_eq!(admitted.decision.agent.as_deref(), Some(SANDBOX));
}

#[test]
fn images_are_bound_as_a_pods_are() {
    let view = view([
        sandbox(SANDBOX, Some(&[&approved()])),
        sandbox("unbound", None),
    ]);
    let other = approved().replace("scratchpad", "other");
    let denied = ask(
        &view,
        &json!({"namespace": NS, "agent": SANDBOX, "images": [approved(), other]}),
    );
    assert_eq!(denied.decision.code, DecisionCode::DenyRuntimeMismatch);
    let answer = answer_json(&denied);
    assert_eq!(answer["allowed"], json!(false));
    assert_eq!(answer["code"], json!("ADMISSION_DENY_RUNTIME_MISMATCH"));
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("images[1] runs"), "{message}");
    assert!(!message.contains("images[0]"), "{message}");
    // A tag alone is not pinned; a tag beside the approved digest names the same content.
    let tagged = approved().replace('@', ":1.0@");
    let ok = ask(
        &view,
        &json!({"namespace": NS, "agent": SANDBOX, "images": [tagged]}),
    );
    assert!(ok.decision.allowed(), "{:?}", ok.decision);
    let tag = ask(
        &view,
        &json!({"namespace": NS, "agent": SANDBOX, "images": ["ghcr.io/acme/scratchpad:1.0"]}),
    );
    assert_eq!(tag.decision.code, DecisionCode::DenyRuntimeMismatch);
    // No image named: refused for an agent that binds its runtime, allowed for one that does not.
    let none = ask(&view, &json!({"namespace": NS, "agent": SANDBOX}));
    assert_eq!(none.decision.code, DecisionCode::DenyRuntimeMismatch);
    assert!(
        none.answer.message.contains("no image is named"),
        "{none:?}"
    );
    let unbound = ask(&view, &json!({"namespace": NS, "agent": "unbound"}));
    assert!(unbound.decision.allowed(), "{:?}", unbound.decision);
}

#[test]
fn unknown_deleted_expired_uncontained_and_unsynced_are_denied() {
    let mut deleting = sandbox("leaving", None);
    deleting.metadata.deletion_timestamp = Some(Time(now()));
    let mut expired = sandbox("old", None);
    expired.metadata.creation_timestamp = Some(Time(
        now()
            .checked_sub(SignedDuration::from_hours(48))
            .expect("in range"),
    ));
    let mut open = sandbox("open", None);
    open.spec.anatomy.containment.external_calls = true;
    let mut view = view([deleting, expired, open]);
    let code = |view: &StaticView, agent: &str| {
        let admitted = ask(view, &json!({"namespace": NS, "agent": agent}));
        assert!(!admitted.answer.allowed);
        assert_eq!(admitted.answer.code, admitted.decision.code.as_str());
        admitted.decision.code
    };
    assert_eq!(code(&view, "nobody"), DecisionCode::DenyAgentNotFound);
    assert_eq!(code(&view, "leaving"), DecisionCode::DenyAgentNotFound);
    assert_eq!(code(&view, "old"), DecisionCode::DenySandboxExpired);
    assert_eq!(code(&view, "open"), DecisionCode::DenyContainmentViolation);
    // The unknown agent is not in another namespace either.
    let elsewhere = ask(&view, &json!({"namespace": "team-b", "agent": "old"}));
    assert_eq!(elsewhere.decision.code, DecisionCode::DenyAgentNotFound);
    assert_eq!(elsewhere.answer.governance_status, None);
    view.synced = false;
    assert_eq!(code(&view, "old"), DecisionCode::DenyUnavailable);
}

#[test]
fn a_body_that_is_no_request_is_a_bad_request_deny() {
    let view = view([]);
    let admitted = admit(
        br#"{"namespace":"team-a","agent":"a","extra":1}"#,
        &view,
        &ExpiryPolicy::default(),
        now(),
        "",
    );
    assert_eq!(admitted.decision.code, DecisionCode::DenyBadRequest);
    let answer = answer_json(&admitted);
    assert_eq!(answer["allowed"], json!(false));
    assert_eq!(answer["code"], json!("ADMISSION_DENY_BAD_REQUEST"));
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `extra`"),
        "{answer}"
    );
    // Nothing was read, so nothing is named.
    assert!(answer.get("agent").is_none(), "{answer}");
    assert!(answer.get("namespace").is_none(), "{answer}");
}

#[test]
fn the_answer_is_camel_case_json_and_round_trips() {
    let answer = AdmitAnswer {
        allowed: false,
        code: "ADMISSION_DENY_SPEC_HASH_MISMATCH".into(),
        message: "spec changed".into(),
        agent: "a".into(),
        namespace: "n".into(),
        spec_hash: Some("ab".repeat(32)),
        governance_status: Some(GovernanceStatus::GovernedInvalidated),
        warnings: vec!["w".into()],
        spec: Some(sandbox_spec()),
        proof: Some(ProofBundle {
            version: 2,
            spec_hash: "ab".repeat(32),
            policy_hash: "cd".repeat(32),
            signature: "c2ln".into(),
            algorithm: agentgov_api::keyring::Algorithm::Ed25519,
            key_id: "k1".into(),
            signed_at: "2026-01-10T12:00:00Z".into(),
            agent_uid: "uid-a".into(),
            approvers: vec![],
            promotions: vec![],
            exceptions: Vec::new(),
        }),
    };
    let text = serde_json::to_string(&answer).unwrap();
    assert!(text.contains(r#""specHash":"abab"#), "{text}");
    assert!(
        text.contains(r#""governanceStatus":"GOVERNED_INVALIDATED""#),
        "{text}"
    );
    assert!(text.contains(r#""proof":{"version":2,"#), "{text}");
    assert!(text.contains(r#""spec":{"#), "{text}");
    assert_eq!(serde_json::from_str::<AdmitAnswer>(&text).unwrap(), answer);
}

#[test]
fn only_an_allowed_start_is_answered_with_the_spec_it_may_run() {
    let view = view([sandbox("lab", None), sandbox("bound", Some(&[&approved()]))]);
    let allowed = ask(&view, &json!({"namespace": NS, "agent": "lab"}));
    assert!(allowed.answer.allowed);
    assert_eq!(allowed.answer.spec, Some(sandbox_spec()));
    // A sandbox has no proof to show.
    assert_eq!(allowed.answer.proof, None);
    let denied = ask(
        &view,
        &json!({"namespace": NS, "agent": "bound", "images": ["elsewhere/x:1"]}),
    );
    assert_eq!(denied.decision.code, DecisionCode::DenyRuntimeMismatch);
    assert_eq!(denied.answer.spec, None);
    assert!(answer_json(&denied).get("spec").is_none());
}

fn identity(cn: &str) -> Identity {
    Identity {
        subject: format!("CN={cn},O=acme"),
        common_names: vec![cn.to_string()],
        ..Identity::default()
    }
}

#[test]
fn a_client_not_listed_is_refused_with_the_reason_it_can_act_on() {
    let listed = AdmitClients::parse(["CN=orchestrator-1"]).unwrap();
    assert!(unlisted(Some(&identity("orchestrator-1")), &listed).is_none());
    let refused = unlisted(Some(&identity("batch-runner")), &listed).unwrap();
    assert_eq!(refused.decision.code, DecisionCode::DenyUnauthorized);
    assert_eq!(refused.http_status(), StatusCode::FORBIDDEN);
    assert_eq!(refused.facts.requester, "CN=batch-runner,O=acme");
    assert_eq!(
        refused.answer.message,
        "the client certificate CN=batch-runner,O=acme is not one the webhook's --admit-clients (chart: webhook.admitClients) lists"
    );
    // Nothing was read of the request: nothing about an agent is answered.
    assert_eq!(refused.answer.agent, "");
    assert_eq!(refused.answer.spec_hash, None);
    let anonymous = unlisted(None, &listed).unwrap();
    assert!(
        anonymous
            .answer
            .message
            .contains("presented no certificate"),
        "{}",
        anonymous.answer.message
    );
    let nobody = unlisted(Some(&identity("orchestrator-1")), &AdmitClients::default()).unwrap();
    assert!(
        nobody
            .answer
            .message
            .contains("--admit-clients (chart: webhook.admitClients) is empty"),
        "{}",
        nobody.answer.message
    );
}

#[test]
fn the_http_status_says_whether_there_is_a_decision_about_the_agent() {
    let status = |code| {
        Admitted {
            facts: Facts::default(),
            decision: Decision::deny(code, None, "r"),
            answer: AdmitAnswer::default(),
        }
        .http_status()
    };
    for code in DecisionCode::ALL {
        let expected = match code {
            DecisionCode::DenyBadRequest => StatusCode::BAD_REQUEST,
            DecisionCode::DenyUnauthorized => StatusCode::FORBIDDEN,
            // Not about the agent: a client retries it.
            DecisionCode::DenyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::OK,
        };
        assert_eq!(status(code), expected, "{code:?}");
    }
}
