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
      Prints each check and who approved; exits 1 if one fails.
  proof sign-bundle --keys POLICY-RING.json BUNDLE.yaml|-
      Sign a PolicyBundle manifest with the active key of a policy-signing key ring
      (`keygen new --policy`, not the proof keys): prints the manifest with spec.signature
      ({keyId, value}) over the bundle's content hash (the spec without its signature: any
      later change to its Rego, data, version or enforcement action breaks it). Required by
      the operator and the webhook under --require-signed-bundles.
  proof verify-bundle --keys PUBLIC-POLICY-RING.json BUNDLE.yaml|-
      Check a PolicyBundle manifest's signature; exits 1 if it does not hold.";

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
        Some("sign-bundle") => sign_bundle(args),
        Some("verify-bundle") => verify_bundle(args),
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

/// The path argument of a command: the first argument after the command that is not a flag or
/// a flag's value.
fn operand<'a>(args: &'a [String], flags: &[&str]) -> Option<&'a str> {
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if flags.contains(&arg.as_str()) {
            rest.next();
        } else {
            return Some(arg);
        }
    }
    None
}

fn read_ring(args: &[String], what: &str) -> Result<KeyRing, String> {
    let keys_path = flag(args, "--keys").ok_or(format!("needs --keys {what}"))?;
    let config: KeyRingConfig = serde_yaml::from_str(&read_text(keys_path)?)
        .map_err(|e| format!("{keys_path} is not a key ring: {e}"))?;
    KeyRing::from_config(&config).map_err(|e| e.to_string())
}

fn read_bundle(args: &[String]) -> Result<PolicyBundle, String> {
    let path = operand(args, &["--keys"]).ok_or("needs a PolicyBundle manifest (or -)")?;
    serde_yaml::from_str(&read_text(path)?)
        .map_err(|e| format!("{path} is not a PolicyBundle: {e}"))
}

fn sign_bundle(args: &[String]) -> Result<bool, String> {
    let ring = read_ring(args, "POLICY-RING.json")?;
    let mut bundle = read_bundle(args)?;
    bundle.spec = agentgov_api::bundle_signature::sign_bundle(&ring, &bundle.spec)
        .map_err(|e| e.to_string())?;
    // A manifest to apply: what the cluster wrote is not the signer's to carry.
    bundle.status = None;
    print!(
        "{}",
        serde_yaml::to_string(&bundle).map_err(|e| e.to_string())?
    );
    Ok(true)
}

fn verify_bundle(args: &[String]) -> Result<bool, String> {
    let ring = read_ring(args, "PUBLIC-POLICY-RING.json")?;
    let bundle = read_bundle(args)?;
    match agentgov_api::bundle_signature::verify_bundle(&ring, &bundle.spec) {
        Ok(()) => {
            let key = bundle.spec.signature.map(|s| s.key_id).unwrap_or_default();
            println!("ok: signed by {key}");
            Ok(true)
        }
        Err(e) => {
            println!("FAILED {}: {e}", e.reason());
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
