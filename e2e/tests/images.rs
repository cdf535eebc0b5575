//! The images `make images` assembles without a daemon (deploy/docker/images.sh) against what
//! the Dockerfiles describe (deploy/docker/*.Dockerfile, final stage): the same user,
//! entrypoint, exposed ports and copied files, on a distroless-like base: non-root, no shell.
//!
//! Needs the archives (`make images`); fails, never skips, without them. Runs in `make node-e2e`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use agentgov_e2e::repo_root;
use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

/// What a Dockerfile's final stage says about the image.
#[derive(Debug, Default)]
struct FinalStage {
    base: String,
    user: String,
    entrypoint: Vec<String>,
    exposed: BTreeSet<String>,
    copied: BTreeSet<String>,
}

fn final_stage(dockerfile: &Path) -> Result<FinalStage> {
    let text = std::fs::read_to_string(dockerfile)?;
    let mut stage = FinalStage::default();
    for line in text.lines().map(str::trim) {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        match instruction.to_ascii_uppercase().as_str() {
            "FROM" => {
                stage = FinalStage {
                    base: rest.split_whitespace().next().unwrap_or_default().into(),
                    ..FinalStage::default()
                }
            }
            "USER" => stage.user = rest.trim().into(),
            // The exec form is a JSON array.
            "ENTRYPOINT" => stage.entrypoint = serde_json::from_str(rest)?,
            "EXPOSE" => {
                stage
                    .exposed
                    .extend(rest.split_whitespace().map(|p| match p.contains('/') {
                        true => p.to_string(),
                        false => format!("{p}/tcp"),
                    }))
            }
            "COPY" => {
                let dest = rest
                    .split_whitespace()
                    .rfind(|w| !w.starts_with("--"))
                    .context("COPY without a destination")?;
                stage.copied.insert(dest.trim_start_matches('/').into());
            }
            _ => {}
        }
    }
    ensure!(!stage.base.is_empty(), "{}: no FROM", dockerfile.display());
    Ok(stage)
}

/// An entry of the image's single layer, from `tar -tv` (mode string, owner, path).
#[derive(Debug)]
struct Entry {
    mode: String,
    owner: String,
}

struct Image {
    config: Value,
    entries: BTreeMap<String, Entry>,
    root: PathBuf,
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output()?;
    ensure!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

fn json_file(path: &Path) -> Result<Value> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn open_image(archive: &Path, work: &Path) -> Result<Image> {
    assert!(
        archive.exists(),
        "{} is missing: run `make images` (deploy/docker/images.sh)",
        archive.display()
    );
    let dir = work.join("layout");
    let root = work.join("rootfs");
    std::fs::create_dir_all(&dir)?;
    std::fs::create_dir_all(&root)?;
    run(
        "tar",
        &[
            "-xf",
            &archive.to_string_lossy(),
            "-C",
            &dir.to_string_lossy(),
        ],
    )?;
    let index = json_file(&dir.join("index.json"))?;
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json has no manifest")?;
    let manifest = json_file(&blob(&dir, manifest_digest))?;
    let config = json_file(&blob(
        &dir,
        manifest["config"]["digest"].as_str().context("config")?,
    ))?;
    let layers = manifest["layers"].as_array().context("layers")?;
    ensure!(layers.len() == 1, "{} layers, want one", layers.len());
    let layer = blob(&dir, layers[0]["digest"].as_str().context("layer")?);
    let layer = layer.to_string_lossy();
    let mut entries = BTreeMap::new();
    for line in run("tar", &["-tzv", "--numeric-owner", "-f", &layer])?.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        ensure!(fields.len() >= 6, "tar listing: {line}");
        let path = fields[5].trim_start_matches("./").trim_end_matches('/');
        if path.is_empty() || path == "." {
            continue;
        }
        entries.insert(
            path.to_string(),
            Entry {
                mode: fields[0].into(),
                owner: fields[1].into(),
            },
        );
    }
    run(
        "tar",
        &[
            "-xzf",
            &layer,
            "-C",
            &root.to_string_lossy(),
            "--no-same-owner",
        ],
    )?;
    Ok(Image {
        config,
        entries,
        root,
    })
}

fn check(dockerfile: &str, name: &str) -> Result<()> {
    let stage = final_stage(&repo_root().join(format!("deploy/docker/{dockerfile}.Dockerfile")))?;
    let work = std::env::temp_dir().join(format!("agentgov-image-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let dir = std::env::var("AGENTGOV_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".cache/images"));
    let image = open_image(&dir.join(format!("{name}.oci.tar")), &work)?;
    let result = compare(name, &stage, &image);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn compare(name: &str, stage: &FinalStage, image: &Image) -> Result<()> {
    let config = &image.config["config"];
    // What the Dockerfile says.
    ensure!(
        stage.base.starts_with("gcr.io/distroless/static") && stage.base.ends_with(":nonroot"),
        "{name}: the Dockerfile's base is {}",
        stage.base
    );
    ensure!(
        config["User"] == stage.user,
        "{name}: user {} vs the Dockerfile's {}",
        config["User"],
        stage.user
    );
    let entrypoint: Vec<String> = serde_json::from_value(config["Entrypoint"].clone())?;
    ensure!(
        entrypoint == stage.entrypoint,
        "{name}: entrypoint {entrypoint:?} vs {:?}",
        stage.entrypoint
    );
    let exposed: BTreeSet<String> = config["ExposedPorts"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    ensure!(
        exposed == stage.exposed,
        "{name}: ports {exposed:?} vs {:?}",
        stage.exposed
    );
    ensure!(
        image.config["os"] == "linux" && image.config["architecture"] == "amd64",
        "{name}: platform"
    );
    for file in &stage.copied {
        let entry = image.entries.get(file).with_context(|| {
            format!("{name}: {file} (COPY in the Dockerfile) is not in the image")
        })?;
        ensure!(
            entry.mode.starts_with("-rwx") && entry.owner == "0/0",
            "{name}: {file} is {} {}",
            entry.mode,
            entry.owner
        );
        let linkage = Command::new("ldd").arg(image.root.join(file)).output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&linkage.stdout),
            String::from_utf8_lossy(&linkage.stderr)
        );
        ensure!(
            text.contains("statically linked") || text.contains("not a dynamic executable"),
            "{name}: {file} is not static: {text}"
        );
    }
    // What distroless/static-debian12:nonroot gives, and nothing a shell needs.
    let user: u32 = stage.user.split(':').next().unwrap_or_default().parse()?;
    ensure!(user != 0, "{name}: runs as root");
    let passwd = std::fs::read_to_string(image.root.join("etc/passwd"))?;
    ensure!(
        passwd
            .lines()
            .any(|l| l.starts_with(&format!("nonroot:x:{user}:{user}:"))),
        "{name}: no nonroot user {user} in /etc/passwd:\n{passwd}"
    );
    for (path, mode, owner) in [
        ("tmp", "drwxrwxrwt", "0/0"),
        ("home/nonroot", "drwx------", "65532/65532"),
        ("etc/ssl/certs/ca-certificates.crt", "-rw-r--r--", "0/0"),
    ] {
        let entry = image
            .entries
            .get(path)
            .with_context(|| format!("{name}: /{path} is missing"))?;
        ensure!(
            entry.mode == mode && entry.owner == owner,
            "{name}: /{path} is {} {}, want {mode} {owner}",
            entry.mode,
            entry.owner
        );
    }
    let executables: Vec<&String> = image
        .entries
        .iter()
        .filter(|(_, e)| e.mode.starts_with('-') && e.mode.contains('x'))
        .map(|(p, _)| p)
        .collect();
    let allowed: Vec<&String> = stage.copied.iter().collect();
    if executables != allowed {
        bail!("{name}: executables {executables:?}, want only {allowed:?} (no shell, no tools)");
    }
    ensure!(
        !image
            .entries
            .keys()
            .any(|p| p.starts_with("bin") || p.starts_with("usr")),
        "{name}: has /bin or /usr"
    );
    println!(
        "{name}: user {}, entrypoint {entrypoint:?}, ports {exposed:?}, files {:?}: as the Dockerfile",
        stage.user, stage.copied
    );
    Ok(())
}

#[test]
fn operator_image_matches_its_dockerfile() -> Result<()> {
    check("operator", "agentgov-operator")
}

#[test]
fn webhook_image_matches_its_dockerfile() -> Result<()> {
    check("webhook", "agentgov-webhook")
}
