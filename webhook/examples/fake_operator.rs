//! Stand-in for the operator's status writes, for trying the webhook against a cluster without
//! the operator (see `webhook/scripts/smoke.sh`). Prints a status merge patch on stdout.
//!
//!   kubectl get pb default -o json | fake_operator bundle-status
//!   kubectl get agent X -o json | fake_operator sign-agent KEYRING_FILE POLICY_HASH
#![forbid(unsafe_code)]

use std::io::Read;
use std::process::ExitCode;

use agentgov_api::agent::GovernanceStatus;
use agentgov_api::hash::{policy_hash, spec_hash};
use agentgov_api::keyring::KeyRing;
use agentgov_api::proof::{ProofSubject, sign};
use agentgov_api::{Agent, PolicyBundle};
use serde_json::json;

fn run() -> Result<String, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| e.to_string())?;
    match args.first().map(String::as_str) {
        Some("bundle-status") => {
            let bundle: PolicyBundle = serde_json::from_str(&input).map_err(|e| e.to_string())?;
            let hash = policy_hash(&bundle.spec).map_err(|e| e.to_string())?;
            Ok(json!({"status": {
                "activeHash": hash,
                "activeVersion": bundle.spec.version,
                "activeSpec": bundle.spec,
            }})
            .to_string())
        }
        Some("sign-agent") => {
            let (Some(ring), Some(policy)) = (args.get(1), args.get(2)) else {
                return Err("usage: sign-agent KEYRING_FILE POLICY_HASH".into());
            };
            let ring = std::fs::read(ring).map_err(|e| format!("{ring}: {e}"))?;
            let ring = KeyRing::from_slice(&ring).map_err(|e| e.to_string())?;
            let agent: Agent = serde_json::from_str(&input).map_err(|e| e.to_string())?;
            let namespace = agent.metadata.namespace.clone().unwrap_or_default();
            let name = agent.metadata.name.clone().unwrap_or_default();
            let hash = spec_hash(&agent.spec).map_err(|e| e.to_string())?;
            let proof = sign(
                &ring,
                ProofSubject {
                    namespace: &namespace,
                    name: &name,
                },
                &hash,
                policy,
                jiff::Timestamp::now(),
            )
            .map_err(|e| e.to_string())?;
            Ok(json!({"status": {
                "governanceStatus": GovernanceStatus::GovernedValid,
                "proof": proof,
            }})
            .to_string())
        }
        _ => Err("usage: fake_operator bundle-status | sign-agent KEYRING_FILE POLICY_HASH".into()),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fake_operator: {e}");
            ExitCode::from(2)
        }
    }
}
