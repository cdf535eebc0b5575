//! Offline proof tools: the spec hash an AgentPromotion approves (computed from a manifest, for
//! GitOps), and the verification of an Agent's proof bundle with a public key ring, no cluster.
#![forbid(unsafe_code)]

use std::io::Read;
use std::process::ExitCode;

use agentgov_api::admission::{AdmissionContext, AgentView, check_agent};
use agentgov_api::expiry::ExpiryPolicy;
use agentgov_api::hash::{policy_hash, spec_hash};
use agentgov_api::keyring::{KeyRing, KeyRingConfig};
use agentgov_api::{Agent, PolicyBundle};

const HELP: &str = "proof: agentgov proof bundles, offline

usage:
  proof spec-hash AGENT.yaml|-
      The hash of the agent's spec (canonical JSON, SHA-256): the specHash an AgentPromotion
      must name to approve exactly this spec. Commit the AgentPromotion beside the Agent
      (docs/gitops.md).
  proof verify AGENT.yaml|- --keys PUBLIC-RING.json [--policy BUNDLE.yaml]
      Check an Agent's proof bundle (from `kubectl get agent NAME -o yaml`) with the
      verification-only key ring (`keygen public`): the proof names its approvers (payload v2),
      it is for this spec, for this Agent object (uid), signed by a key not revoked, and, with
      --policy, against that bundle (its spec, or a PolicyBundle with status.activeSpec).
      Prints each check and who approved; exits 1 if one fails.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(ok) => {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("proof: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<bool, String> {
    match args.first().map(String::as_str) {
        Some("spec-hash") => {
            let agent = read_agent(args.get(1).ok_or("spec-hash needs a manifest (or -)")?)?;
            println!("{}", spec_hash(&agent.spec).map_err(|e| e.to_string())?);
            Ok(true)
        }
        Some("verify") => verify(args),
        Some("-h" | "--help") | None => {
            println!("{HELP}");
            Ok(true)
        }
        Some(other) => Err(format!("unknown command {other}; see --help")),
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn read_text(path: &str) -> Result<String, String> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
    }
}

fn read_agent(path: &str) -> Result<Agent, String> {
    serde_yaml::from_str(&read_text(path)?).map_err(|e| format!("{path} is not an Agent: {e}"))
}

fn verify(args: &[String]) -> Result<bool, String> {
    let agent = read_agent(args.get(1).ok_or("verify needs a manifest (or -)")?)?;
    let keys_path = flag(args, "--keys").ok_or("verify needs --keys PUBLIC-RING.json")?;
    let config: KeyRingConfig = serde_yaml::from_str(&read_text(keys_path)?)
        .map_err(|e| format!("{keys_path} is not a key ring: {e}"))?;
    let ring = KeyRing::from_config(&config).map_err(|e| e.to_string())?;
    let namespace = agent.metadata.namespace.clone().unwrap_or_default();
    let name = agent.metadata.name.clone().unwrap_or_default();
    let uid = agent.metadata.uid.clone().unwrap_or_default();
    let status = agent.status.as_ref();
    let proof = status.and_then(|s| s.proof.as_ref());
    // Without --policy, the proof's own policy hash is taken as the one in force.
    let active = match flag(args, "--policy") {
        Some(path) => Some(read_policy_hash(path)?),
        None => proof.map(|p| p.policy_hash.clone()),
    };
    println!("agent {namespace}/{name} (uid {uid})");
    if let Some(p) = proof {
        println!(
            "proof: payload v{}, key {} ({}), signed at {}",
            p.version,
            p.key_id,
            p.algorithm.as_str(),
            p.signed_at
        );
        for a in &p.approvers {
            if a.uid.is_empty() {
                println!("approved by: {}", a.username);
            } else {
                println!("approved by: {} (uid {})", a.username, a.uid);
            }
        }
        for promotion in &p.promotions {
            println!("under AgentPromotion uid: {promotion}");
        }
    }
    let now = jiff::Timestamp::now();
    let view = AgentView::of(&agent, "", now);
    let expiry = ExpiryPolicy::default();
    let ctx = AdmissionContext {
        active_policy_hash: active.as_deref(),
        recheck: None,
        keys: &ring,
        now,
        expiry: &expiry,
    };
    match check_agent(&view, &ctx) {
        Ok(()) => {
            println!("ok: the proof holds (the seven checks that need no cluster)");
            Ok(true)
        }
        Err(denial) => {
            println!("FAILED {}: {}", denial.code.as_str(), denial.reason);
            Ok(false)
        }
    }
}

/// The hash of a PolicyBundle manifest: its `status.activeSpec` if it has one (what is in force),
/// else its spec.
fn read_policy_hash(path: &str) -> Result<String, String> {
    let bundle: PolicyBundle = serde_yaml::from_str(&read_text(path)?)
        .map_err(|e| format!("{path} is not a PolicyBundle: {e}"))?;
    let spec = bundle
        .status
        .as_ref()
        .and_then(|s| s.active_spec.as_ref())
        .unwrap_or(&bundle.spec);
    policy_hash(spec).map_err(|e| e.to_string())
}
