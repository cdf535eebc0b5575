//! Makes and rotates agentgov key rings (the JSON document stored in the signing-key Secret).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use agentgov_api::keyring::{KeyRing, KeyRingConfig, generate_ed25519, generate_hmac};

const HELP: &str = "keygen: make or rotate an agentgov key ring (JSON on stdout)

usage:
  keygen new [--id ID] [--algorithm ed25519|hmac]     a ring with one active key
  keygen rotate FILE [--id ID] [--algorithm ...]       add a key and make it active; old keys keep verifying
  keygen revoke FILE ID                                put ID on the revoked list
  keygen public FILE                                   the verification-only ring (no Ed25519 private keys)
  --policy (with new or rotate)                        a policy-signing key (default id policy-<time>)

Policy-signing ring (signed PolicyBundles, a ring separate from the proof keys):
  keygen new --policy > policy-ring.json               keep this one offline: it signs bundles
  keygen public policy-ring.json > policy-ring.pub.json  give this one to the operator and the
                                                       webhook (--bundle-keys; the chart's
                                                       policy.bundleKeys)
  proof sign-bundle --keys policy-ring.json BUNDLE.yaml  prints the signed manifest

Rotation: `rotate` the Secret's ring, apply it (operator and webhook reload it without a restart),
wait until agents are re-signed, then `revoke` the old id.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keygen: {e}");
            ExitCode::from(2)
        }
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn read(path: &str) -> Result<KeyRingConfig, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    serde_yaml::from_slice(&bytes).map_err(|e| format!("cannot parse {path}: {e}"))
}

fn new_key(
    args: &[String],
    default_id: String,
) -> Result<agentgov_api::keyring::KeyConfig, String> {
    let id = flag(args, "--id").map_or(default_id, str::to_string);
    match flag(args, "--algorithm").unwrap_or("ed25519") {
        "ed25519" => generate_ed25519(&id),
        "hmac" => generate_hmac(&id),
        other => return Err(format!("unknown algorithm {other}: use ed25519 or hmac")),
    }
    .map_err(|e| e.to_string())
}

fn default_id(args: &[String]) -> String {
    let prefix = if args.iter().any(|a| a == "--policy") {
        "policy"
    } else {
        "key"
    };
    format!(
        "{prefix}-{}",
        jiff::Timestamp::now().strftime("%Y%m%d%H%M%S")
    )
}

fn run(args: &[String]) -> Result<String, String> {
    let config = match args.first().map(String::as_str) {
        Some("new") => {
            let key = new_key(args, default_id(args))?;
            KeyRingConfig {
                active_key_id: Some(key.id.clone()),
                keys: vec![key],
                revoked: vec![],
            }
        }
        Some("rotate") => {
            let mut config = read(args.get(1).ok_or("rotate needs a FILE")?)?;
            let key = new_key(args, default_id(args))?;
            if config.keys.iter().any(|k| k.id == key.id) {
                return Err(format!("key id {} is already in the ring", key.id));
            }
            config.active_key_id = Some(key.id.clone());
            config.keys.push(key);
            config
        }
        Some("revoke") => {
            let mut config = read(args.get(1).ok_or("revoke needs a FILE")?)?;
            let id = args.get(2).ok_or("revoke needs an ID")?;
            if config.active_key_id.as_deref() == Some(id) {
                return Err(format!("{id} is the active key: rotate first"));
            }
            if !config.revoked.contains(id) {
                config.revoked.push(id.clone());
            }
            config
        }
        Some("public") => read(args.get(1).ok_or("public needs a FILE")?)?
            .verification_only()
            .map_err(|e| e.to_string())?,
        Some("-h" | "--help") | None => return Ok(HELP.to_string()),
        Some(other) => return Err(format!("unknown command {other}\n\n{HELP}")),
    };
    // Refuse to print a ring the operator would refuse to load.
    KeyRing::from_config(&config).map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&config).map_err(|e| e.to_string())
}
