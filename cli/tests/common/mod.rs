//! The webhook served for real (the `agentgov_webhook` library's router and TLS server, mTLS
//! required) over a view set by hand, its certificates in a directory of their own, and the
//! `agentgov` binary run against it as an orchestrator outside Kubernetes runs it.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // tests may unwrap (clippy.toml: allow-unwrap-in-tests)

// The webhook's own test PKI (rcgen CAs and leaves) and mTLS server: one source of test
// certificates and of the served webhook.
#[path = "../../../webhook/tests/common/pki.rs"]
pub mod pki;
pub mod run;
#[path = "../../../webhook/tests/common/served.rs"]
pub mod served;

pub use run::{Run, admit_with};
pub use served::{CLIENT_CN, Pem, Served};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agentgov_api::agent::{AgentStatus, GovernanceStatus};
use agentgov_api::hash::spec_hash;
use agentgov_api::keyring::{KeyRing, KeyRingConfig, generate_ed25519};
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::proof::{Approver, Claims, ProofSubject, sign};
use agentgov_api::runtime::RuntimeSpec;
use agentgov_api::testing::{governed_spec, sandbox_spec};
use agentgov_api::{Agent, AgentSpec};
use agentgov_webhook::admit_clients::AdmitClients;
use agentgov_webhook::authz::FixedAuthorizer;
use agentgov_webhook::metrics::Metrics;
use agentgov_webhook::policy::ActivePolicy;
use agentgov_webhook::server::{AppState, admission_router};
use agentgov_webhook::testing::StaticView;
use axum::Router;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::Semaphore;

pub const NS: &str = "team-a";
/// A governed agent, signed, bound to [`approved`] as its only image.
pub const GOVERNED: &str = "auditor";
/// A sandbox agent (no proof, no runtime binding).
pub const SANDBOX: &str = "scratchpad";

pub fn approved() -> String {
    "ghcr.io/acme/agent@sha256:4f2b9c1e0d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c"
        .to_string()
}

/// A view with the policy in force in [`NS`], the governed agent [`GOVERNED`] signed and
/// GOVERNED_VALID, and the sandbox [`SANDBOX`] created an hour ago.
pub fn view() -> StaticView {
    let key = generate_ed25519("k1").unwrap();
    let config = KeyRingConfig {
        active_key_id: Some("k1".into()),
        keys: vec![key],
        revoked: vec![],
    };
    let signing = KeyRing::from_config(&config).unwrap();
    let verifying = KeyRing::from_config(&config.verification_only().unwrap()).unwrap();
    let mut view = StaticView::new(verifying);
    let policy = ActivePolicy::compile(&default_bundle_spec()).unwrap();
    let mut spec = governed_spec();
    spec.runtime = Some(RuntimeSpec {
        images: vec![approved()],
        ..RuntimeSpec::default()
    });
    view.add_agent(signed(GOVERNED, spec, &signing, policy.hash()));
    view.add_agent(agent(SANDBOX, sandbox_spec(), None));
    view.policies.insert(NS, policy);
    view
}

fn agent(name: &str, spec: AgentSpec, status: Option<AgentStatus>) -> Agent {
    let mut agent = Agent::new(name, spec);
    agent.metadata.namespace = Some(NS.into());
    agent.metadata.uid = Some(format!("uid-{name}"));
    let created = Timestamp::now() - SignedDuration::from_hours(1);
    agent.metadata.creation_timestamp = Some(Time(created));
    agent.status = status;
    agent
}

/// A governed agent whose proof `keys` signed against `policy_hash`, approved by alice.
fn signed(name: &str, spec: AgentSpec, keys: &KeyRing, policy_hash: &str) -> Agent {
    let hash = spec_hash(&spec).unwrap();
    let uid = format!("uid-{name}");
    let proof = sign(
        keys,
        ProofSubject {
            namespace: NS,
            name,
            uid: &uid,
        },
        Claims {
            spec_hash: &hash,
            policy_hash,
            approvers: &[Approver {
                username: "alice".into(),
                uid: "alice-uid".into(),
            }],
            promotions: &[format!("promotion-of-{name}")],
            exceptions: &[],
        },
        Timestamp::now(),
    )
    .unwrap();
    let status = AgentStatus {
        governance_status: Some(GovernanceStatus::GovernedValid),
        proof: Some(proof),
        ..AgentStatus::default()
    };
    agent(name, spec, Some(status))
}

/// The admission router over `view`, letting `clients` ask `POST /v1/admit`; its metrics.
pub fn router(view: StaticView, clients: AdmitClients) -> (Router, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let state = AppState {
        view: Arc::new(view),
        authz: Arc::new(FixedAuthorizer::new(Ok(true))),
        metrics: metrics.clone(),
        expiry: Default::default(),
        max_body_bytes: 64 * 1024,
        body_timeout: Duration::from_secs(5),
        policy_slots: Arc::new(Semaphore::new(2)),
        clock: Arc::new(Timestamp::now),
        admit_clients: Arc::new(clients),
        bundle_keys: None,
    };
    (admission_router(state), metrics)
}

/// The clients the served webhook lists: `client.pem`'s common name.
pub fn listed() -> AdmitClients {
    AdmitClients::parse([format!("CN={CLIENT_CN}")]).unwrap()
}

impl Served {
    /// The webhook over [`view`], listing [`listed`]; its metrics beside.
    pub async fn webhook(name: &str) -> (Served, Arc<Metrics>) {
        let (router, metrics) = router(view(), listed());
        (Served::router(name, router).await, metrics)
    }

    /// The flags that reach this webhook, presenting the certificate `<cert>.pem`.
    pub fn flags_as(&self, cert: &str) -> Vec<String> {
        let mut flags = self.flags_without_certificate();
        flags.extend([
            "--cert".into(),
            self.pem.path(&format!("{cert}.pem")),
            "--key".into(),
            self.pem.path(&format!("{cert}-key.pem")),
        ]);
        flags
    }

    /// The flags that reach this webhook with the listed client certificate.
    pub fn flags(&self) -> Vec<String> {
        self.flags_as("client")
    }

    /// The flags that reach this webhook without a client certificate.
    pub fn flags_without_certificate(&self) -> Vec<String> {
        flags_to(self.addr.port(), &self.pem)
    }
}

/// `--url` (by the name the serving certificate holds) and `--ca` of a webhook on `port`.
pub fn flags_to(port: u16, pem: &Pem) -> Vec<String> {
    vec![
        "--url".into(),
        format!("https://localhost:{port}"),
        "--ca".into(),
        pem.path("ca.pem"),
    ]
}

/// Run `agentgov admit <agent> <args>`.
pub async fn admit(agent: &str, args: &[String]) -> Run {
    admit_with(Path::new(env!("CARGO_BIN_EXE_agentgov")), agent, args).await
}

/// `--image` for each of `images`.
pub fn images(images: &[&str]) -> Vec<String> {
    images
        .iter()
        .flat_map(|image| ["--image".to_string(), image.to_string()])
        .collect()
}

/// The value of the series `series` in `metrics` (0 when absent).
pub fn metric(metrics: &Metrics, series: &str) -> u64 {
    let text = metrics.encode().unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |value| value.trim().parse().unwrap())
}
