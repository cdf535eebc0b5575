//! Upstream's Pod Security Standards conformance fixtures, run against
//! `agentgov_api::pod_security`: every fixture of the newest version directory
//! (`test/testdata/{baseline,restricted}/v1.N/{pass,fail}/*.yaml` of
//! `k8s.io/pod-security-admission`), at its level, must be allowed if it is under `pass/` and
//! denied if under `fail/`; a `fail/` fixture must be denied by the check it is named after (or by
//! the restricted check that replaces it). The restricted `pass/` fixtures must pass baseline too.
//!
//! The fixtures are read from the Go module cache, at the version `e2e/controlplane/gomod/go.mod`
//! pins, and downloaded with `go mod download` when the cache lacks them. No copy is committed.

mod psa_fixtures;

use agentgov_api::pod_security::{PodSecurityLevel, PodView, Violation, evaluate};
use psa_fixtures::{fixtures, newest_version_dir};
use serde::Deserialize;

/// Baseline checks the restricted level replaces, and their replacements.
const OVERRIDES: [(&str, &str); 4] = [
    ("capabilities_baseline", "capabilities_restricted"),
    ("hostPathVolumes", "restrictedVolumes"),
    ("procMount", "procMount_restricted"),
    ("seccompProfile_baseline", "seccompProfile_restricted"),
];

#[test]
fn baseline_fixtures_agree() {
    run_level(PodSecurityLevel::Baseline);
}

#[test]
fn restricted_fixtures_agree() {
    run_level(PodSecurityLevel::Restricted);
}

#[test]
fn restricted_pass_fixtures_pass_baseline() {
    let (version, dir) = newest_version_dir(PodSecurityLevel::Restricted);
    let fixtures = fixtures(&dir.join("pass"));
    println!(
        "restricted {version} pass: {} fixtures, run at baseline",
        fixtures.len()
    );
    let mut disagreements = Vec::new();
    for (name, pod) in &fixtures {
        match violations(PodSecurityLevel::Baseline, pod) {
            Ok(v) if v.is_empty() => {}
            Ok(v) => disagreements.push(format!("{name}: denied at baseline:{}", list(&v))),
            Err(e) => disagreements.push(format!("{name}: {e}")),
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} restricted pass fixtures ({}) do not pass baseline:\n{}",
        disagreements.len(),
        fixtures.len(),
        dir.display(),
        disagreements.join("\n")
    );
}

fn run_level(level: PodSecurityLevel) {
    let (version, dir) = newest_version_dir(level);
    let mut disagreements = Vec::new();
    let mut total = 0;
    for folder in ["pass", "fail"] {
        let fixtures = fixtures(&dir.join(folder));
        println!("{level} {version} {folder}: {} fixtures", fixtures.len());
        total += fixtures.len();
        for (name, pod) in &fixtures {
            let got = match violations(level, pod) {
                Ok(got) => got,
                Err(e) => {
                    disagreements.push(format!("{folder}/{name}: {e}"));
                    continue;
                }
            };
            if folder == "pass" && !got.is_empty() {
                disagreements.push(format!("{folder}/{name}: denied:{}", list(&got)));
            } else if folder == "fail" {
                let expected = expected_checks(level, name);
                if got.is_empty() {
                    disagreements.push(format!("{folder}/{name}: allowed"));
                } else if !got.iter().any(|v| expected.contains(&v.check)) {
                    disagreements.push(format!(
                        "{folder}/{name}: denied, but not by {expected:?}:{}",
                        list(&got)
                    ));
                }
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {total} {level} fixtures in {} disagree:\n{}",
        disagreements.len(),
        dir.display(),
        disagreements.join("\n")
    );
}

/// A `fail/` fixture is named after the check it fails, lowercased, with a number
/// (`capabilities_baseline2.yaml`); at restricted, a replaced baseline check's replacement
/// also counts.
fn expected_checks(level: PodSecurityLevel, name: &str) -> Vec<&'static str> {
    let stem = name
        .trim_end_matches(".yaml")
        .trim_end_matches(|c: char| c.is_ascii_digit());
    let ids = agentgov_api::pod_security::check_ids(PodSecurityLevel::Baseline)
        .chain(agentgov_api::pod_security::check_ids(
            PodSecurityLevel::Restricted,
        ))
        .chain(OVERRIDES.iter().map(|(baseline, _)| *baseline));
    let mut expected: Vec<&'static str> = ids.filter(|id| id.eq_ignore_ascii_case(stem)).collect();
    if level == PodSecurityLevel::Restricted {
        for (baseline, replacement) in OVERRIDES {
            if expected.contains(&baseline) {
                expected.push(replacement);
            }
        }
    }
    expected.sort_unstable();
    expected.dedup();
    assert!(
        !expected.is_empty(),
        "fixture {name} names no check we know"
    );
    expected
}

fn violations(level: PodSecurityLevel, pod: &serde_json::Value) -> Result<Vec<Violation>, String> {
    let view = PodView::deserialize(pod).map_err(|e| format!("not a Pod we can read: {e}"))?;
    Ok(evaluate(level, &view))
}

fn list(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("\n    [{}] {}", v.check, v.message))
        .collect()
}
