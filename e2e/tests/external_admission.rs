//! The external admission API (`POST /v1/admit`) on the real control plane, asked with the
//! `agentgov admit` binary over mTLS as an orchestrator outside Kubernetes asks it: agents the
//! real operator signed are allowed (the answer carries the approved spec and the proof), an
//! unknown agent, an image the approval does not hold, an expired sandbox and an invalidated
//! agent are denied with their codes; a client certificate from another CA is refused at the
//! handshake, a client the webhook does not list (the API server's own certificate among them)
//! with 403; and the client retries through a webhook restart within its deadline.
//!
//! Each test has its own namespace, operator and registered webhook (`admission::setup`, which
//! the agents are created through), and asks a second webhook of its own, started with a client
//! CA bundle (the API server's CA and an orchestrator CA made here) and `--admit-clients`.

// Test code: a panic with the value is the failure report, in helpers as in #[test]s.
#![allow(clippy::unwrap_used)]

// The webhook's own test PKI (rcgen CAs and leaves): one source of test certificates (more of
// it than this test uses).
#[path = "../../webhook/tests/common/pki.rs"]
#[allow(dead_code)]
mod pki;

// How a run of the `agentgov` client is made and read, as the client's own tests do.
#[path = "../../cli/tests/common/run.rs"]
mod run;

use std::path::PathBuf;
use std::time::Duration;

use agentgov_api::AgentSpec;
use agentgov_api::agent::GovernanceStatus;
use agentgov_api::policy::default_bundle_spec;
use agentgov_api::runtime::RuntimeSpec;
use agentgov_e2e::admission::*;
use agentgov_e2e::operator::{binary, log_dir, metric_value};
use agentgov_e2e::scenario::expired;
use agentgov_e2e::webhook::{ClusterCerts, Webhook, free_addr};
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::pki::Ca;
use crate::run::{Run, admit_with};

const IMAGE: &str = "ghcr.io/acme/invoice-auditor@sha256:4f2b9c1e0d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";
/// The orchestrator the external webhook lists (`--admit-clients CN=...`).
const ORCHESTRATOR: &str = "e2e-orchestrator";

/// Client certificates in a directory of the test's own: `orchestrator` (listed) and
/// `unlisted` from the orchestrator CA, `stranger` (with the listed name) from a CA the webhook
/// does not trust; and the client CA bundle the webhook trusts: the API server's CA and the
/// orchestrator CA.
struct Clients {
    dir: PathBuf,
}

impl Clients {
    fn new(namespace: &str) -> Self {
        let dir = log_dir().join(format!("{namespace}-clients"));
        std::fs::create_dir_all(&dir).unwrap();
        let orchestrators = Ca::new("e2e orchestrator CA");
        let stranger_ca = Ca::new("e2e stranger CA");
        let certs = ClusterCerts::from_env().unwrap();
        let apiserver_ca = std::fs::read_to_string(&certs.client_ca).unwrap();
        let bundle = format!("{}\n{}", apiserver_ca.trim_end(), orchestrators.pem());
        let write = |name: &str, (cert, key): (String, String)| {
            std::fs::write(dir.join(format!("{name}.crt")), cert).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key).unwrap();
        };
        write(
            "orchestrator",
            orchestrators.leaf(ORCHESTRATOR, false, false),
        );
        write(
            "unlisted",
            orchestrators.leaf("e2e-batch-runner", false, false),
        );
        write("stranger", stranger_ca.leaf(ORCHESTRATOR, false, false));
        std::fs::write(dir.join("client-ca.crt"), bundle).unwrap();
        Clients { dir }
    }

    /// The cluster's webhook files, with this client CA bundle.
    fn certs(&self) -> ClusterCerts {
        ClusterCerts {
            client_ca: self.dir.join("client-ca.crt"),
            ..ClusterCerts::from_env().unwrap()
        }
    }

    /// `--cert` and `--key` of the certificate `name`.
    fn identity(&self, name: &str) -> Vec<String> {
        let path = |ext: &str| self.dir.join(format!("{name}.{ext}")).display().to_string();
        vec!["--cert".into(), path("crt"), "--key".into(), path("key")]
    }
}

/// Start the external webhook on `addr`, listing only [`ORCHESTRATOR`].
async fn external_webhook(
    setup: &Setup,
    clients: &Clients,
    addr: std::net::SocketAddr,
    tag: &str,
) -> Webhook {
    let listed = format!("CN={ORCHESTRATOR}");
    Webhook::start_with_certs(
        addr,
        Some(&setup.ns.name),
        &setup.keys,
        tag,
        &clients.certs(),
        &["--admit-clients", &listed],
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", setup.diagnostics()))
}

/// `agentgov admit <namespace>/<agent>` against the webhook at `url` (its certificate checked
/// against the cluster CA), with `identity` and `extra` flags.
async fn admit(url: &str, agent: &str, identity: &[String], extra: &[&str]) -> Run {
    let certs = ClusterCerts::from_env().unwrap();
    let ca = certs.ca_crt.display().to_string();
    let flags = ["--url", url, "--ca", &ca]
        .into_iter()
        .map(str::to_string)
        .chain(identity.iter().cloned())
        .chain(extra.iter().map(|e| e.to_string()));
    admit_with(&binary("agentgov").unwrap(), agent, flags).await
}

/// The governed example bound to [`IMAGE`].
fn bound_spec() -> AgentSpec {
    let mut spec = governed_spec();
    spec.runtime = Some(RuntimeSpec {
        images: vec![IMAGE.to_string()],
        ..RuntimeSpec::default()
    });
    spec
}

#[tokio::test]
async fn answers_allow_and_each_deny_code_and_refuses_unlisted_clients() {
    let setup = setup("ext-admit").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    create_agent(&setup, "short-lived", sandbox_spec(1)).await;
    create_agent(&setup, "lab", sandbox_spec(3600)).await;
    let auditor = create_approved(&setup, "auditor", bound_spec()).await;
    create_approved(&setup, "drifted", governed_spec()).await;
    // A spec changed after its approval: the operator invalidates it, its proof stays.
    setup
        .agents()
        .patch(
            "drifted",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"description": "changed after the approval"}})),
        )
        .await
        .unwrap();
    wait_agent(&setup, "drifted", "GOVERNED_INVALIDATED", |a| {
        governance(a) == Some(GovernanceStatus::GovernedInvalidated)
    })
    .await;
    // The sandbox's second is over by the operator's clock (and so by the webhook's).
    wait_agent(&setup, "short-lived", "expired", expired).await;
    // Started now, its caches hold the agents as they are.
    let clients = Clients::new(&setup.ns.name);
    let webhook = external_webhook(&setup, &clients, free_addr().unwrap(), "ext").await;
    let ns = &setup.ns.name;
    let orchestrator = clients.identity("orchestrator");

    // Allowed: exit 0, the approved spec (it hashes to the proof's spec hash) and the proof
    // the operator signed.
    let run = admit(
        &webhook.url(),
        &format!("{ns}/auditor"),
        &orchestrator,
        &["--image", IMAGE],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:#?}\n{}", setup.diagnostics());
    let answer = run.answer();
    assert_eq!(answer["code"], json!(ALLOW), "{answer:#}");
    assert_eq!(answer["governanceStatus"], json!("GOVERNED_VALID"));
    let proof = auditor
        .status
        .as_ref()
        .and_then(|s| s.proof.clone())
        .unwrap();
    assert_eq!(
        answer["proof"],
        serde_json::to_value(&proof).unwrap(),
        "{answer:#}"
    );
    let spec: AgentSpec = serde_json::from_value(answer["spec"].clone()).unwrap();
    assert_eq!(spec, auditor.spec);
    assert_eq!(
        agentgov_api::hash::spec_hash(&spec).unwrap(),
        proof.spec_hash
    );
    assert_eq!(answer["specHash"], json!(proof.spec_hash));
    let run = admit(&webhook.url(), &format!("{ns}/lab"), &orchestrator, &[]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.answer()["spec"]["mode"], json!("sandbox"));
    assert!(run.answer().get("proof").is_none(), "{run:#?}");

    // Denied: exit 1, with the code of each case.
    for (agent, image, code) in [
        ("nobody", IMAGE, AGENT_NOT_FOUND),
        (
            "auditor",
            "ghcr.io/acme/invoice-auditor:latest",
            "ADMISSION_DENY_RUNTIME_MISMATCH",
        ),
        ("short-lived", IMAGE, SANDBOX_EXPIRED),
        ("drifted", IMAGE, SPEC_HASH_MISMATCH),
    ] {
        let run = admit(
            &webhook.url(),
            &format!("{ns}/{agent}"),
            &orchestrator,
            &["--image", image],
        )
        .await;
        assert_eq!(run.code, Some(1), "{agent}: {run:#?}");
        let answer = run.answer();
        assert_eq!(answer["code"], json!(code), "{agent}: {answer:#}");
        assert!(answer.get("spec").is_none(), "{agent}: {answer:#}");
        assert_eq!(run.failed_attempts(), 0, "a deny is not retried: {run:#?}");
    }
    let run = admit(&webhook.url(), &format!("{ns}/drifted"), &orchestrator, &[]).await;
    assert_eq!(
        run.answer()["governanceStatus"],
        json!("GOVERNED_INVALIDATED")
    );

    // A certificate from another CA, with the listed name: refused at the handshake.
    let run = admit(
        &webhook.url(),
        &format!("{ns}/auditor"),
        &clients.identity("stranger"),
        &[],
    )
    .await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert!(run.stderr.contains("UnknownCA"), "{run:#?}");
    assert_eq!(run.failed_attempts(), 1, "not retried: {run:#?}");

    // From a trusted CA but not listed, the API server's own certificate among them: 403.
    let apiserver = vec![
        "--cert".to_string(),
        std::env::var("AGENTGOV_WEBHOOK_CLIENT_CERT").unwrap(),
        "--key".to_string(),
        std::env::var("AGENTGOV_WEBHOOK_CLIENT_KEY").unwrap(),
    ];
    for (identity, subject) in [
        (clients.identity("unlisted"), "CN=e2e-batch-runner"),
        (apiserver, "CN=agentgov-apiserver-webhook-client"),
    ] {
        let run = admit(
            &webhook.url(),
            &format!("{ns}/auditor"),
            &identity,
            &["--image", IMAGE],
        )
        .await;
        assert_eq!(run.code, Some(2), "{subject}: {run:#?}");
        let answer = run.answer();
        assert_eq!(answer["code"], json!(UNAUTHORIZED), "{answer:#}");
        assert!(
            answer["message"].as_str().unwrap().contains(subject),
            "{answer:#}"
        );
        assert!(answer.get("spec").is_none(), "{answer:#}");
        assert!(run.stderr.contains("HTTP 403"), "{run:#?}");
        assert_eq!(run.failed_attempts(), 0, "not retried: {run:#?}");
    }

    // Logged with the certificate that asked, and counted as starts.
    let logs = webhook.logs();
    assert!(
        logs.lines().any(|line| line.contains("admission decision")
            && line.contains(r#""kind":"external""#)
            && line.contains(&format!(r#""requester":"CN={ORCHESTRATOR}""#))),
        "{logs}"
    );
    let metrics = webhook.metrics().await;
    let count = |series: &str| metric_value(&metrics, series).unwrap_or(0.0);
    assert_eq!(count("agent_starts_allowed_total"), 2.0, "{metrics}");
    assert_eq!(
        count(r#"agent_starts_denied_total{reason="ADMISSION_DENY_UNAUTHORIZED"}"#),
        2.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn the_client_retries_through_a_webhook_restart_within_its_deadline() {
    let setup = setup("ext-restart").await;
    bundle_in_force(&setup, &default_bundle_spec()).await;
    create_approved(&setup, "auditor", bound_spec()).await;
    let clients = Clients::new(&setup.ns.name);
    let addr = free_addr().unwrap();
    let mut webhook = external_webhook(&setup, &clients, addr, "ext").await;
    let agent = format!("{}/auditor", setup.ns.name);
    let orchestrator = clients.identity("orchestrator");
    let run = admit(&webhook.url(), &agent, &orchestrator, &["--image", IMAGE]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");

    // Down (a crash), asked while down, and up again on the same address a moment later; the
    // answers of the restarted webhook before its caches sync (503) are retried too.
    webhook.kill();
    let asking = {
        let (url, agent, orchestrator) = (webhook.url(), agent.clone(), orchestrator.clone());
        let extra = ["--image", IMAGE, "--deadline", "60s", "--retries", "1000"];
        tokio::spawn(async move { admit(&url, &agent, &orchestrator, &extra).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarted = external_webhook(&setup, &clients, addr, "ext-restarted").await;
    let run = tokio::time::timeout(Duration::from_secs(90), asking)
        .await
        .expect("the client ends by its deadline")
        .unwrap();
    assert_eq!(run.code, Some(0), "{run:#?}\n{}", restarted.log_tail(20));
    assert_eq!(run.answer()["code"], json!(ALLOW), "{run:#?}");
    assert!(run.answer().get("proof").is_some(), "{run:#?}");
    // It asked more than once: the first attempts met the webhook down.
    assert!(run.failed_attempts() >= 1, "{run:#?}");
    assert!(run.stderr.contains("cannot connect"), "{run:#?}");
    assert!(run.stderr.contains("answered at attempt"), "{run:#?}");
}
