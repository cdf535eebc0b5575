//! Upstream's Pod Security Standards conformance fixtures
//! (`test/testdata/{baseline,restricted}/v1.N/{pass,fail}/*.yaml` of
//! `k8s.io/pod-security-admission`), read from the Go module cache at the version
//! `e2e/controlplane/gomod/go.mod` pins, and downloaded with `go mod download` when the cache
//! lacks them. No copy is committed. Shared by `crds/tests/pod_security_conformance.rs` (the pure
//! checks) and `webhook/tests/pod_security_conformance.rs` (the same fixtures as agent Pods through
//! the webhook).
// Each test crate uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use agentgov_api::pod_security::PodSecurityLevel;
use serde::Deserialize;

const MODULE: &str = "k8s.io/pod-security-admission";
const GO_MOD: &str = "e2e/controlplane/gomod/go.mod";

/// Every `*.yaml` of a folder, by file name, parsed into JSON; the folder must have some.
pub fn fixtures(dir: &Path) -> BTreeMap<String, serde_json::Value> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read the fixtures in {}: {e}", dir.display()));
    let mut fixtures = BTreeMap::new();
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !name.ends_with(".yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let pod: serde_json::Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        fixtures.insert(name, pod);
    }
    assert!(
        !fixtures.is_empty(),
        "no fixtures in {}: a vacuous pass would be a defect",
        dir.display()
    );
    fixtures
}

/// The newest `v1.N` directory of a level's fixtures (numerically: v1.3 < v1.30), and its name.
pub fn newest_version_dir(level: PodSecurityLevel) -> (String, PathBuf) {
    let root = module_dir().join("test/testdata").join(level.as_str());
    let entries = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("no fixtures directory {}: {e}", root.display()));
    let newest = entries
        .map(|entry| {
            let entry = entry.expect("a directory entry");
            entry.file_name().to_string_lossy().into_owned()
        })
        .filter_map(|name| {
            let minor = name.strip_prefix("v1.")?.parse::<u32>().ok()?;
            Some((minor, name))
        })
        .max()
        .unwrap_or_else(|| panic!("no v1.N directory in {}", root.display()));
    let dir = root.join(&newest.1);
    (newest.1, dir)
}

/// The module's directory in the Go module cache, downloaded once if absent.
fn module_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let version = pinned_version();
        let cache = go(&["env", "GOMODCACHE"], None);
        let cache = cache.trim();
        assert!(!cache.is_empty(), "`go env GOMODCACHE` printed nothing");
        let dir = Path::new(cache).join(format!("{MODULE}@{version}"));
        let dir = if dir.is_dir() {
            dir
        } else {
            download(&version)
        };
        println!("fixtures of {MODULE}@{version}: {}", dir.display());
        dir
    })
}

/// The version of the module that `e2e/controlplane/gomod/go.mod` replaces it with.
fn pinned_version() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(GO_MOD);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or_default().trim();
        let line = line.strip_prefix("replace ").unwrap_or(line);
        let Some((from, to)) = line.split_once("=>") else {
            continue;
        };
        if from.split_whitespace().next() != Some(MODULE) {
            continue;
        }
        let to: Vec<&str> = to.split_whitespace().collect();
        match to[..] {
            [module, version] if module == MODULE => return version.to_owned(),
            _ => panic!("{GO_MOD} replaces {MODULE} with {to:?}, not with a version of it"),
        }
    }
    panic!("{GO_MOD} has no `{MODULE} => {MODULE} <version>` line")
}

/// `go mod download` of the module, from a scratch directory; its `Dir`.
fn download(version: &str) -> PathBuf {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Download {
        dir: Option<String>,
        error: Option<String>,
    }
    let scratch = std::env::temp_dir().join(format!("agentgov-psa-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", scratch.display()));
    let spec = format!("{MODULE}@{version}");
    let out = go(&["mod", "download", "-json", &spec], Some(&scratch));
    std::fs::remove_dir_all(&scratch).ok();
    let download: Download = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("`go mod download -json {spec}` printed no JSON ({e}): {out}"));
    if let Some(error) = download.error {
        panic!("`go mod download {spec}` failed: {error}");
    }
    let dir = PathBuf::from(
        download
            .dir
            .unwrap_or_else(|| panic!("`go mod download -json {spec}` printed no Dir: {out}")),
    );
    assert!(dir.is_dir(), "{} was not downloaded", dir.display());
    dir
}

/// Runs `go` and returns its standard output; panics unless it succeeds.
fn go(args: &[&str], dir: Option<&Path>) -> String {
    let mut cmd = Command::new("go");
    cmd.args(args).env("GOFLAGS", "-mod=mod");
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run `go {}` (is Go installed?): {e}", args.join(" ")));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`go {}` failed ({}): {}{}",
        args.join(" "),
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
