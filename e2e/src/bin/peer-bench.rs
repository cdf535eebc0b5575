//! agentgov's webhook beside a peer, OPA Gatekeeper, on the real control plane (`make bench`,
//! through `e2e/bench/peer.sh`). Run under `e2e/controlplane/cluster.sh exec`.
//!
//! Both webhooks get the same treatment: the serving certificate and key the e2e suite gives
//! agentgov's webhook (`cluster.sh`'s PKI: the cluster CA, RSA 2048), client certificates
//! demanded and checked against the API server's webhook client CA, stdout and stderr into a
//! pipe that this process drains (as a container runtime does), the same AdmissionReview bodies
//! (a Pod of a Deployment, captured from the API server, rewritten to this run's namespace and
//! agent), and the same load generator at the same connection counts, the two targets
//! alternating row by row so that both see the same machine.
//!
//! Before any load, each webhook must give a real decision: the Pod of the signed, governed
//! agent allowed; the Pod of an agent that does not exist denied; for Gatekeeper also a Pod
//! without the agent label denied (agentgov's registration never sends it those: its
//! objectSelector requires the label). After the load, agentgov is stopped with SIGTERM and
//! every decision it counted must be a line in its log. Anything else fails the run; no table
//! is printed when a webhook does not answer correctly.
//!
//! usage: peer-bench --gatekeeper-dir DIR --load BIN --fixture FILE
//!                   [--connections 1,8,32] [--duration SECS] [--warmup SECS] [--http 1.1,2] [--rounds 3]
//! env:   AGENTGOV_WEBHOOK_BIN, AGENTGOV_OPERATOR_BIN (release binaries), and what
//!        `cluster.sh exec` exports (KUBECONFIG, the webhook certificates).
//! prints a Markdown section on stdout; progress on stderr.

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agentgov_api::Agent;
use agentgov_api::agent::GovernanceStatus;
use agentgov_api::policy::default_bundle_spec;
use agentgov_e2e::operator::{KeyFile, Operator, binary, free_port, http_get, log_dir};
use agentgov_e2e::webhook::{ClusterCerts, files_args, write_verification_ring};
use agentgov_e2e::{TestNamespace, client, install_crds, manifest, wait_agent};
use anyhow::{Context as _, Result, bail};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

const AGENT: &str = "peer-agent";
const GATEKEEPER_NAMESPACE: &str = "gatekeeper-system";
/// The stand-in Pod of e2e/bench/gatekeeper/system.yaml.
const GATEKEEPER_POD: &str = "gatekeeper-peer-bench";

struct Args {
    gatekeeper_dir: PathBuf,
    load: PathBuf,
    fixture: PathBuf,
    connections: Vec<u32>,
    duration: u64,
    warmup: u64,
    http: Vec<String>,
    rounds: usize,
}

fn args() -> Result<Args> {
    let mut a = Args {
        gatekeeper_dir: PathBuf::new(),
        load: PathBuf::new(),
        fixture: PathBuf::new(),
        connections: vec![1, 8, 32],
        duration: 5,
        warmup: 1,
        http: vec!["1.1".into(), "2".into()],
        rounds: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--gatekeeper-dir" => a.gatekeeper_dir = value()?.into(),
            "--load" => a.load = value()?.into(),
            "--fixture" => a.fixture = value()?.into(),
            "--connections" => {
                a.connections = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--duration" => a.duration = value()?.parse()?,
            "--warmup" => a.warmup = value()?.parse()?,
            "--http" => a.http = value()?.split(',').map(str::to_string).collect(),
            "--rounds" => a.rounds = value()?.parse::<usize>()?.max(1),
            other => bail!("unknown argument {other} (see the doc comment of peer-bench.rs)"),
        }
    }
    for (name, path) in [
        ("--gatekeeper-dir", &a.gatekeeper_dir),
        ("--load", &a.load),
        ("--fixture", &a.fixture),
    ] {
        if path.as_os_str().is_empty() || !path.exists() {
            bail!("{name} {} does not exist", path.display());
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let certs = ClusterCerts::from_env()?;
    let client = client().await;
    let run_dir = log_dir().join(format!("peer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir)?;
    eprintln!("peer-bench: logs and bodies in {}", run_dir.display());

    // agentgov: a namespace, the default policy in force, one governed agent signed by the
    // operator. The operator is stopped once the agent is signed: neither webhook needs it.
    install_crds(&client).await?;
    let ns = TestNamespace::new(&client, "peer").await?;
    let keys = KeyFile::new(&run_dir.join("keys"), "peer")?;
    agentgov_e2e::apply_bundle(&ns, default_bundle_spec()).await?;
    let spec = manifest::<Agent>("examples/agent-governed.yaml")?.spec;
    let agents: Api<Agent> = ns.api();
    agents
        .create(&PostParams::default(), &Agent::new(AGENT, spec.clone()))
        .await
        .context("create the governed agent")?;
    let promotion = agentgov_e2e::approval(AGENT, &agentgov_api::hash::spec_hash(&spec)?);
    ns.api::<agentgov_api::AgentPromotion>()
        .create(&PostParams::default(), &promotion)
        .await
        .context("approve the governed agent")?;
    let mut operator = Operator::start(&ns.name, &keys.path, "peer", &[])?;
    wait_agent(
        &agents,
        AGENT,
        "GOVERNED_VALID",
        Duration::from_secs(120),
        |a| {
            a.status
                .as_ref()
                .is_some_and(|s| s.governance_status == Some(GovernanceStatus::GovernedValid))
        },
    )
    .await?;
    operator.kill();

    // The bodies: the fixture rewritten to this namespace and agent.
    let fixture: Value = serde_json::from_slice(
        &std::fs::read(&args.fixture)
            .with_context(|| format!("read {}", args.fixture.display()))?,
    )
    .with_context(|| format!("parse {}", args.fixture.display()))?;
    let bodies = Bodies::write(&run_dir, &fixture, &ns.name)?;

    let agentgov = Server::agentgov(&run_dir, &certs, &ns.name, &keys).await?;
    let gatekeeper = Server::gatekeeper(&run_dir, &certs, &args.gatekeeper_dir, &ns.name).await?;

    // Real decisions first.
    let probe = Probe::new(&certs)?;
    let governed = (bodies.governed.as_path(), true, "the governed agent's Pod");
    let unknown = (
        bodies.unknown.as_path(),
        false,
        "a Pod of an agent that does not exist",
    );
    let unlabelled = (
        bodies.unlabelled.as_path(),
        false,
        "a Pod without the agent label",
    );
    for (server, (body, allowed, what)) in [
        (&agentgov, governed),
        (&agentgov, unknown),
        (&gatekeeper, governed),
        (&gatekeeper, unknown),
        (&gatekeeper, unlabelled),
    ] {
        server.expect(&probe, body, allowed, what).await?;
    }

    // The load: each (HTTP version, connection count) row for agentgov then Gatekeeper (the
    // order flips every round), `--rounds` times; the round with the median requests/s is
    // reported, with the lowest and highest beside it.
    let load = Load::new(&args, &certs, &bodies)?;
    let mut rows = Vec::new();
    for http in &args.http {
        for &connections in &args.connections {
            let mut runs: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
            for round in 0..args.rounds {
                let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for i in order {
                    let server = [&agentgov, &gatekeeper][i];
                    let run = load.run(server, http, connections).await?;
                    let number = |key: &str| run[key].as_f64().unwrap_or(f64::NAN);
                    eprintln!(
                        "peer-bench: {} HTTP/{http} {connections} connections round {}: {:.0} req/s, p99 {:.2} ms, {} errors, {:.1} µs CPU/review",
                        server.name,
                        round + 1,
                        number("requests_per_second"),
                        number("p99_ms"),
                        run["errors"],
                        number("target_cpu_us_per_review"),
                    );
                    runs[i].push(run);
                }
            }
            rows.push(Row {
                http: http.clone(),
                connections,
                sides: [Side::of(&runs[0])?, Side::of(&runs[1])?],
            });
        }
    }
    let rss = [
        memory_kib(agentgov.child.id()),
        memory_kib(gatekeeper.child.id()),
    ];

    // Every decision agentgov counted reached its log: stopped with SIGTERM (which writes out
    // the batched log), its decision lines must equal its decision counters.
    let metrics = http_get(agentgov.metrics_port, "/metrics").await?;
    let counted = ["agent_starts_allowed_total", "agent_starts_denied_total"]
        .iter()
        .map(|name| metric_sum(&metrics, name))
        .sum::<f64>();
    let (mut agentgov, mut gatekeeper) = (agentgov, gatekeeper);
    let logged = [agentgov.stop().await?, gatekeeper.stop().await?];
    let (lines, counted) = (logged[0].decisions, counted as u64);

    print_section(&args, &bodies, &ns.name, &rows, rss, &logged, counted)?;
    let errors: u64 = rows
        .iter()
        .flat_map(|r| r.sides.iter().map(|s| s.errors))
        .sum();
    if errors > 0 {
        bail!(
            "{errors} requests failed or were answered unexpectedly under load (see the errors column and the logs in {})",
            run_dir.display()
        );
    }
    if lines != counted {
        bail!(
            "agentgov's log has {lines} decision lines for {counted} counted decisions (log {})",
            agentgov.log.display()
        );
    }
    Ok(())
}

/// The load generator (`admission-load load`), the same for both targets.
struct Load {
    bin: PathBuf,
    common: Vec<String>,
}

impl Load {
    fn new(args: &Args, certs: &ClusterCerts, bodies: &Bodies) -> Result<Self> {
        let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
        let common = vec![
            "load".to_string(),
            "--body".into(),
            bodies.governed.display().to_string(),
            "--ca".into(),
            certs.ca_crt.display().to_string(),
            "--cert".into(),
            var("AGENTGOV_WEBHOOK_CLIENT_CERT")?,
            "--key".into(),
            var("AGENTGOV_WEBHOOK_CLIENT_KEY")?,
            "--duration".into(),
            args.duration.to_string(),
            "--warmup".into(),
            args.warmup.to_string(),
            "--expect".into(),
            "allowed".into(),
            "--format".into(),
            "json".into(),
        ];
        Ok(Load {
            bin: args.load.clone(),
            common,
        })
    }

    /// One row of the generator against `server`: its JSON line.
    async fn run(&self, server: &Server, http: &str, connections: u32) -> Result<Value> {
        let out = tokio::process::Command::new(&self.bin)
            .args(&self.common)
            .args(["--url", &server.url, "--http", http])
            .args(["--connections", &connections.to_string()])
            .args(["--pid", &server.child.id().to_string()])
            .args(["--label", server.name])
            .output()
            .await
            .with_context(|| format!("run {}", self.bin.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with('{'))
            .with_context(|| {
                format!(
                    "the load generator printed no result against {} ({}): {}{}",
                    server.name,
                    out.status,
                    stdout,
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let run: Value = serde_json::from_str(line)?;
        // A non-zero exit with a row means errors were counted (reported in the row); without
        // a row it is a failure, handled above.
        if !out.status.success() && run["errors"].as_u64().unwrap_or(0) == 0 {
            bail!(
                "the load generator failed against {}: {}",
                server.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(run)
    }
}

/// One table row: both targets at one HTTP version and connection count.
struct Row {
    http: String,
    connections: u32,
    /// agentgov, Gatekeeper.
    sides: [Side; 2],
}

/// One target's median round (by requests/s), with the lowest and highest beside it.
struct Side {
    rps: f64,
    rps_low: f64,
    rps_high: f64,
    p50: f64,
    p99: f64,
    /// Over all rounds.
    errors: u64,
    cpu: Option<f64>,
    /// The load generator's own CPU per review in that round.
    generator_cpu: Option<f64>,
}

impl Side {
    fn of(runs: &[Value]) -> Result<Self> {
        let rps = |v: &Value| v["requests_per_second"].as_f64().unwrap_or(0.0);
        let mut sorted: Vec<&Value> = runs.iter().collect();
        sorted.sort_by(|a, b| rps(a).total_cmp(&rps(b)));
        let median = sorted.get(sorted.len() / 2).context("no runs")?;
        Ok(Side {
            rps: rps(median),
            rps_low: rps(sorted[0]),
            rps_high: rps(sorted[sorted.len() - 1]),
            p50: median["p50_ms"].as_f64().unwrap_or(f64::NAN),
            p99: median["p99_ms"].as_f64().unwrap_or(f64::NAN),
            errors: runs.iter().map(|r| r["errors"].as_u64().unwrap_or(0)).sum(),
            cpu: median["target_cpu_us_per_review"].as_f64(),
            generator_cpu: median["generator_cpu_us_per_review"].as_f64(),
        })
    }

    /// The share of one core the generator used in this round.
    fn generator_cores(&self) -> Option<f64> {
        self.generator_cpu.map(|us| us * self.rps / 1e6)
    }
}

/// The sum of a metric's series (`name 3`, `name{code="X"} 1`, ...) in a Prometheus text page.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter(|rest| rest.starts_with([' ', '{']))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn memory_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn print_section(
    args: &Args,
    bodies: &Bodies,
    namespace: &str,
    rows: &[Row],
    rss: [Option<u64>; 2],
    logged: &[Drained; 2],
    counted_decisions: u64,
) -> Result<()> {
    use std::fmt::Write as _;
    let gk_versions = std::fs::read_to_string(args.gatekeeper_dir.join("versions"))
        .unwrap_or_else(|_| "(no versions file)".into());
    let agentgov_version = Command::new(binary("agentgov-webhook")?)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let commit = Command::new("git")
        .args(["-C", &agentgov_e2e::repo_root().to_string_lossy()])
        .args(["describe", "--always", "--dirty"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mib =
        |k: Option<u64>| k.map_or("-".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    let rounds = if args.rounds == 1 {
        "1 round".to_string()
    } else {
        format!(
            "{} rounds, the round with the median requests/s shown (lowest–highest in brackets)",
            args.rounds
        )
    };
    let generator_busy = rows
        .iter()
        .flat_map(|r| r.sides.iter().filter_map(Side::generator_cores))
        .fold(0.0f64, f64::max);
    let mut out = String::new();
    writeln!(
        out,
        "## Beside a peer: OPA Gatekeeper (same load, same TLS, same Pod review)"
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "`e2e/bench/peer.sh` on {} ({} cores, {}; shared by the webhooks, the load generator and the control plane), both webhooks in the same run on the same loopback control plane, loaded in turn by `admission-load` (one generator thread; at most {:.0}% of a core busy in any row) over TLS 1.3 with mTLS (the e2e suite's serving certificate from the cluster CA, RSA 2048; the API server's webhook client certificate, checked by both), keep-alive connections with one review in flight each, {} s warm-up then {} s measured per row, the targets alternating row by row, {rounds}. Every answer is checked (allowed); `errors` counts failures and other answers. CPU/review is the webhook process's own CPU time (utime + stime, all threads) over the reviews answered in the measured window.",
        jiff::Timestamp::now().strftime("%Y-%m-%d"),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::env::consts::ARCH,
        generator_busy * 100.0,
        args.warmup,
        args.duration,
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "- **Body**: `{}` rewritten to this run's namespace and agent: a Deployment's Pod CREATE as the API server sends it, {} bytes.",
        args.fixture
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bodies.bytes
    )?;
    writeln!(
        out,
        "- **agentgov**: `agentgov-webhook` release binary ({agentgov_version}, commit {commit}), default flags but for addresses, files, `--namespace` and `--log-format json` (at INFO): a decision line per review written to stdout, a pipe ({} `admission decision` lines for {} counted decisions, {:.1} MB). Checks: the Pod's `agentgov.dev/agent` label, the Agent in the informer cache, the seven checks on its signed proof (status, spec hash, policy hash in force, key ring, Ed25519 signature (memoized), expiry, ...), the Pod Security level of a governed agent's Pod. RSS after the load {}.",
        logged[0].decisions,
        counted_decisions,
        logged[0].bytes as f64 / 1e6,
        mib(rss[0])
    )?;
    writeln!(
        out,
        "- **Gatekeeper**: the manager built from Go modules by `e2e/bench/gatekeeper-build.sh` ({}), run as its webhook Pods run it: `--operation=webhook` (plus `generate`, for the template's constraint CRD), `--disable-cert-rotation --client-ca-name --client-cn-name` (the same certificates), default logging (JSON at INFO to stderr, a pipe; no line per allowed review: {} bytes in the run). ConstraintTemplate `e2e/bench/gatekeeper/template.yaml` (Rego): the Pod must carry `agentgov.dev/agent`, the Agent it names must exist in the namespace (`data.inventory`, Agents replicated by the Config) with status SANDBOX, GOVERNED_VALID or GOVERNED_RESTRICTED; one Constraint on Pods of namespace `{namespace}`. Checked before the load: the governed agent's Pod allowed, a Pod of a missing agent and a Pod without the label denied. No signature, hash or Pod Security checks. RSS after the load {}.",
        gk_versions.trim().replace('\n', ", "),
        logged[1].bytes,
        mib(rss[1])
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| HTTP | connections | requests/s agentgov | requests/s Gatekeeper | agentgov ÷ Gatekeeper | p50 ms agentgov / Gatekeeper | p99 ms agentgov / Gatekeeper | errors | CPU µs/review agentgov / Gatekeeper |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|")?;
    let rps = |s: &Side| {
        if args.rounds > 1 {
            format!("{:.0} ({:.0}–{:.0})", s.rps, s.rps_low, s.rps_high)
        } else {
            format!("{:.0}", s.rps)
        }
    };
    let cpu = |s: &Side| s.cpu.map_or("-".to_string(), |c| format!("{c:.0}"));
    for Row {
        http,
        connections,
        sides: [a, g],
    } in rows
    {
        writeln!(
            out,
            "| {http} | {connections} | {} | {} | {:.1}× | {:.2} / {:.2} | {:.2} / {:.2} | {} / {} | {} / {} |",
            rps(a),
            rps(g),
            a.rps / g.rps,
            a.p50,
            g.p50,
            a.p99,
            g.p99,
            a.errors,
            g.errors,
            cpu(a),
            cpu(g),
        )?;
    }
    print!("{out}");
    std::io::stdout().flush()?;
    Ok(())
}

/// The AdmissionReview bodies, as files the load generator reads.
struct Bodies {
    governed: PathBuf,
    unknown: PathBuf,
    unlabelled: PathBuf,
    bytes: usize,
}

impl Bodies {
    fn write(dir: &Path, fixture: &Value, namespace: &str) -> Result<Self> {
        if fixture["request"]["object"]["kind"] != "Pod" {
            bail!("the fixture is not a Pod AdmissionReview (request.object.kind is not Pod)");
        }
        let with = |label: Option<&str>, uid: &str| -> Value {
            let mut review = fixture.clone();
            review["request"]["uid"] = json!(uid);
            review["request"]["namespace"] = json!(namespace);
            let meta = &mut review["request"]["object"]["metadata"];
            meta["namespace"] = json!(namespace);
            match label {
                Some(agent) => meta["labels"]["agentgov.dev/agent"] = json!(agent),
                None => {
                    if let Some(labels) = meta["labels"].as_object_mut() {
                        labels.remove("agentgov.dev/agent");
                    }
                }
            }
            review
        };
        let write = |name: &str, review: &Value| -> Result<(PathBuf, usize)> {
            let path = dir.join(name);
            let bytes = serde_json::to_vec(review)?;
            std::fs::write(&path, &bytes)?;
            Ok((path, bytes.len()))
        };
        let (governed, bytes) = write(
            "review-governed.json",
            &with(Some(AGENT), "3d1b9c0e-peer-bench-governed"),
        )?;
        let (unknown, _) = write(
            "review-unknown.json",
            &with(Some("no-such-agent"), "3d1b9c0e-peer-bench-unknown"),
        )?;
        let (unlabelled, _) = write(
            "review-unlabelled.json",
            &with(None, "3d1b9c0e-peer-bench-unlabelled"),
        )?;
        Ok(Bodies {
            governed,
            unknown,
            unlabelled,
            bytes,
        })
    }
}

/// A webhook under test: its process (output drained from a pipe, see [`spawn_piped`]) and its
/// URL.
struct Server {
    name: &'static str,
    child: Child,
    drains: Vec<JoinHandle<Drained>>,
    /// The admission URL (scheme, host, port and path).
    url: String,
    /// The plain-HTTP port of /readyz (and, for agentgov, /metrics).
    metrics_port: u16,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a process wrote to its pipes: bytes, and agentgov's decision lines.
#[derive(Debug, Default)]
struct Drained {
    bytes: u64,
    decisions: u64,
}

/// A decision line of agentgov's JSON log.
const DECISION: &[u8] = br#""message":"admission decision""#;
/// Decision lines kept in the log file; the others are counted only (a long run writes
/// gigabytes of them).
const DECISIONS_KEPT: u64 = 100;

/// Start `command` with stdout and stderr into pipes, each drained by a thread: every line is
/// read and counted; the file `log` gets all of them but agentgov's decision lines past the
/// first [`DECISIONS_KEPT`].
fn spawn_piped(command: &mut Command, log: &Path) -> Result<(Child, Vec<JoinHandle<Drained>>)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {:?}", command.get_program()))?;
    std::fs::File::create(log)?;
    let file = std::fs::OpenOptions::new().append(true).open(log)?;
    let streams: [Option<Box<dyn Read + Send>>; 2] = [
        child.stdout.take().map(|s| Box::new(s) as _),
        child.stderr.take().map(|s| Box::new(s) as _),
    ];
    let mut drains = Vec::new();
    for stream in streams.into_iter().flatten() {
        let mut out = file.try_clone()?;
        drains.push(std::thread::spawn(move || {
            let mut drained = Drained::default();
            let mut reader = BufReader::with_capacity(1 << 16, stream);
            let mut line = Vec::with_capacity(1024);
            while let Ok(n @ 1..) = reader.read_until(b'\n', &mut line) {
                drained.bytes += n as u64;
                let decision = line.windows(DECISION.len()).any(|w| w == DECISION);
                if decision {
                    drained.decisions += 1;
                }
                if !decision || drained.decisions <= DECISIONS_KEPT {
                    let _ = out.write_all(&line);
                }
                line.clear();
            }
            if drained.decisions > DECISIONS_KEPT {
                let _ = writeln!(
                    out,
                    "peer-bench: {} more decision lines counted, not kept",
                    drained.decisions - DECISIONS_KEPT
                );
            }
            drained
        }));
    }
    Ok((child, drains))
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Server {
    /// agentgov's release webhook with the e2e suite's certificates (as `Webhook::start_on`
    /// starts it, otherwise its default flags), its output into a pipe.
    async fn agentgov(
        dir: &Path,
        certs: &ClusterCerts,
        namespace: &str,
        keys: &KeyFile,
    ) -> Result<Self> {
        let bin = binary("agentgov-webhook")?;
        let port = free_port()?;
        let metrics_port = free_port()?;
        let keyring = dir.join("agentgov-keyring.json");
        write_verification_ring(keys, &keyring)?;
        let log = dir.join("agentgov-webhook.log");
        let (child, drains) = spawn_piped(
            Command::new(&bin)
                .env("RUST_LOG", "info")
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
                .args(files_args(certs, &keyring))
                .args(["--log-format", "json"])
                .args(["--namespace", namespace])
                .args(["--shutdown-delay", "0s"]),
            &log,
        )?;
        let mut server = Server {
            name: "agentgov",
            child,
            drains,
            url: format!("https://127.0.0.1:{port}/validate/pods?timeout=5s"),
            metrics_port,
            log,
        };
        server
            .wait_ready("/readyz", Duration::from_secs(60))
            .await?;
        eprintln!("peer-bench: agentgov-webhook ready at {}", server.url);
        Ok(server)
    }

    /// Gatekeeper's manager as its webhook Pods run it (`--operation=webhook`, plus
    /// `generate`, which makes a template's constraint CRD), no cert rotation (the e2e serving
    /// certificate from a directory), client certificates demanded (`--client-ca-name`, the
    /// API server's webhook client CA) with the CN our API server presents, default logging.
    /// Its CRDs, namespace, stand-in Pod, the Config that replicates Agents and the
    /// ConstraintTemplate are applied first, the Constraint once its CRD exists
    /// (e2e/bench/gatekeeper/).
    async fn gatekeeper(
        dir: &Path,
        certs: &ClusterCerts,
        gk_dir: &Path,
        namespace: &str,
    ) -> Result<Self> {
        let bin = gk_dir.join("bin/manager");
        let manifests = agentgov_e2e::repo_root().join("e2e/bench/gatekeeper");
        kubectl(&[
            "apply",
            "--server-side",
            "-f",
            &gk_dir.join("crds").to_string_lossy(),
        ])?;
        kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/constrainttemplates.templates.gatekeeper.sh",
            "crd/configs.config.gatekeeper.sh",
        ])?;
        // The namespace and the stand-in for Gatekeeper's own Pod (system.yaml), the Config,
        // the ConstraintTemplate.
        for file in ["system.yaml", "config.yaml", "template.yaml"] {
            kubectl(&["apply", "-f", &manifests.join(file).to_string_lossy()])?;
        }

        let cert_dir = dir.join("gatekeeper-certs");
        std::fs::create_dir_all(&cert_dir)?;
        std::fs::copy(&certs.serving_cert, cert_dir.join("tls.crt"))?;
        std::fs::copy(&certs.serving_key, cert_dir.join("tls.key"))?;
        std::fs::copy(&certs.client_ca, cert_dir.join("client-ca.crt"))?;
        let client_cn = certificate_cn(
            &std::env::var("AGENTGOV_WEBHOOK_CLIENT_CERT")
                .context("AGENTGOV_WEBHOOK_CLIENT_CERT is not set")?,
        )?;
        let port = free_port()?;
        let health_port = free_port()?;
        let log = dir.join("gatekeeper.log");
        let (child, drains) = spawn_piped(
            Command::new(&bin)
                .env("POD_NAMESPACE", GATEKEEPER_NAMESPACE)
                .env("POD_NAME", GATEKEEPER_POD)
                // `generate` makes the constraint CRD of a template (in a Helm install the
                // audit Pod does); no ValidatingAdmissionPolicy is generated (the template is
                // Rego only, and the defaults are turned off to be sure).
                .args(["--operation", "webhook", "--operation", "generate"])
                .arg("--default-create-vap-for-templates=false")
                .arg("--default-create-vap-binding-for-constraints=false")
                .arg("--disable-cert-rotation")
                .arg(format!("--cert-dir={}", cert_dir.display()))
                .arg("--client-ca-name=client-ca.crt")
                .arg(format!("--client-cn-name={client_cn}"))
                .args(["--host", "127.0.0.1"])
                .arg(format!("--port={port}"))
                .arg(format!("--health-addr=127.0.0.1:{health_port}"))
                .arg("--metrics-addr=0")
                .arg("--shutdown-delay=0"),
            &log,
        )?;
        let mut server = Server {
            name: "gatekeeper",
            child,
            drains,
            url: format!("https://127.0.0.1:{port}/v1/admit?timeout=5s"),
            metrics_port: health_port,
            log,
        };
        // The template's constraint kind exists once Gatekeeper has compiled the template.
        let started = Instant::now();
        for condition in ["--for=create", "--for=condition=Established"] {
            let crd = "crd/agentgovagentpod.constraints.gatekeeper.sh";
            kubectl(&["wait", condition, "--timeout=120s", crd]).with_context(|| {
                format!(
                    "no constraint CRD from Gatekeeper; its log:\n{}",
                    tail(&server.log, 30)
                )
            })?;
        }
        let constraint = std::fs::read_to_string(manifests.join("constraint.yaml"))?
            .replace("${NAMESPACE}", namespace);
        let constraint_file = dir.join("gatekeeper-constraint.yaml");
        std::fs::write(&constraint_file, constraint)?;
        kubectl(&["apply", "-f", &constraint_file.to_string_lossy()])?;
        // Not /readyz as a whole: its `tls-check` dials the webhook without a client
        // certificate, which `--client-ca-name` refuses, so it never passes. `tracker` (the
        // templates, constraints and replicated data loaded) is the rest of it; the answers
        // checked below, with the API server's client certificate, stand in for `tls-check`.
        server
            .wait_ready("/readyz/tracker", Duration::from_secs(120))
            .await?;
        eprintln!(
            "peer-bench: Gatekeeper ready at {} after {:.1}s",
            server.url,
            started.elapsed().as_secs_f64()
        );
        Ok(server)
    }

    /// Stop with SIGTERM, as the kubelet stops a Pod; wait for the exit and for the pipes to
    /// be drained.
    async fn stop(&mut self) -> Result<Drained> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status()?;
        if !sent.success() {
            bail!("kill -TERM {pid} ({}) failed: {sent}", self.name);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let status: ExitStatus = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                bail!("{} did not exit within 30 s of SIGTERM", self.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut total = Drained::default();
        for drain in self.drains.drain(..) {
            let drained = drain
                .join()
                .map_err(|_| anyhow::anyhow!("the log drain of {} panicked", self.name))?;
            total.bytes += drained.bytes;
            total.decisions += drained.decisions;
        }
        eprintln!(
            "peer-bench: {} stopped ({status}); {} bytes of output",
            self.name, total.bytes
        );
        Ok(total)
    }

    async fn wait_ready(&mut self, path: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before it was ready; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log, 40)
                );
            }
            if let Ok(response) = http_get(self.metrics_port, path).await
                && response.lines().next().is_some_and(|l| l.contains(" 200"))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} was not ready after {timeout:?}; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Send `body` until the answer is `allowed` (Gatekeeper's data replication and constraint
    /// take a moment after /readyz); fail with the last answer after 60 s.
    async fn expect(&self, probe: &Probe, body: &Path, allowed: bool, what: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = probe.review(&self.url, body).await;
            let got = answer
                .as_ref()
                .ok()
                .and_then(|a| a["response"]["allowed"].as_bool());
            if got == Some(allowed) {
                let message = answer
                    .as_ref()
                    .map(|a| a["response"]["status"]["message"].to_string())
                    .unwrap_or_default();
                eprintln!(
                    "peer-bench: {} {} {what} ({message})",
                    self.name,
                    if allowed { "allows" } else { "denies" }
                );
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} does not answer correctly: {what} should be {}, last answer {answer:?}; log {}:\n{}",
                    self.name,
                    if allowed { "allowed" } else { "denied" },
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Speaks to a webhook as the API server does: over TLS, trusting the cluster CA, presenting
/// the API server's webhook client certificate.
struct Probe {
    ca: PathBuf,
    cert: String,
    key: String,
}

impl Probe {
    fn new(certs: &ClusterCerts) -> Result<Self> {
        let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
        Ok(Probe {
            ca: certs.ca_crt.clone(),
            cert: var("AGENTGOV_WEBHOOK_CLIENT_CERT")?,
            key: var("AGENTGOV_WEBHOOK_CLIENT_KEY")?,
        })
    }

    /// POST `body` to `url` (https://host:port/path); the answer as JSON.
    async fn review(&self, url: &str, body: &Path) -> Result<Value> {
        let (base, path) = url
            .match_indices('/')
            .nth(2)
            .map(|(i, _)| url.split_at(i))
            .with_context(|| format!("not a URL with a path: {url}"))?;
        let kubeconfig = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "webhook", "cluster": {"server": base, "certificate-authority": self.ca}}],
            "users": [{"name": "apiserver", "user": {"client-certificate": self.cert, "client-key": self.key}}],
            "contexts": [{"name": "webhook", "context": {"cluster": "webhook", "user": "apiserver"}}],
            "current-context": "webhook",
        });
        let config = kube::Config::from_custom_kubeconfig(
            serde_json::from_value(kubeconfig)?,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        let client = kube::Client::try_from(config)?;
        let request = http::Request::post(path)
            .header("content-type", "application/json")
            .body(std::fs::read(body)?)?;
        let text = client.request_text(request).await?;
        serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))
    }
}

fn kubectl(args: &[&str]) -> Result<()> {
    let out = Command::new("kubectl")
        .args(args)
        .output()
        .context("run kubectl (is the control plane's bin dir on PATH?)")?;
    if !out.status.success() {
        bail!(
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The CN of a PEM certificate, by openssl.
fn certificate_cn(path: &str) -> Result<String> {
    let out = Command::new("openssl")
        .args([
            "x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", path,
        ])
        .output()
        .context("run openssl")?;
    let subject = String::from_utf8_lossy(&out.stdout);
    let cn = subject.trim().trim_start_matches("subject=").split(',');
    cn.filter_map(|part| part.strip_prefix("CN="))
        .next()
        .map(str::to_string)
        .with_context(|| format!("no CN in {path}: {subject}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_sums_every_series_of_its_family() {
        let text = "# TYPE agent_starts_denied counter\n\
                    agent_starts_allowed_total 7\n\
                    agent_starts_denied_total{code=\"ADMISSION_DENY_A\"} 2\n\
                    agent_starts_denied_total{code=\"ADMISSION_DENY_B\",x=\"a b\"} 3\n\
                    agent_starts_denied_total_other 100\n";
        assert_eq!(metric_sum(text, "agent_starts_allowed_total"), 7.0);
        assert_eq!(metric_sum(text, "agent_starts_denied_total"), 5.0);
        assert_eq!(metric_sum(text, "absent_total"), 0.0);
    }

    #[test]
    fn the_drain_counts_every_decision_line_and_keeps_the_first() {
        let dir = std::env::temp_dir().join(format!("peer-bench-drain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("out.log");
        let script = r#"for i in $(seq 150); do echo '{"message":"admission decision","n":'$i'}'; done
echo started; echo on stderr >&2"#;
        let (mut child, drains) =
            spawn_piped(Command::new("sh").args(["-c", script]), &log).unwrap();
        assert!(child.wait().unwrap().success());
        let drained: Vec<Drained> = drains.into_iter().map(|d| d.join().unwrap()).collect();
        assert_eq!(drained.iter().map(|d| d.decisions).sum::<u64>(), 150);
        let kept = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            kept.matches(r#""message":"admission decision""#).count(),
            DECISIONS_KEPT as usize
        );
        for line in [
            "started",
            "on stderr",
            "50 more decision lines counted, not kept",
        ] {
            assert!(kept.contains(line), "{line} not in {kept}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_bodies_are_the_fixture_in_this_namespace_for_the_agent() {
        let dir = std::env::temp_dir().join(format!("peer-bench-bodies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fixture: Value = serde_json::from_slice(
            &std::fs::read(
                agentgov_e2e::repo_root().join("e2e/bench/fixtures/pod-review-deployment.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let bodies = Bodies::write(&dir, &fixture, "peer-x").unwrap();
        let read =
            |p: &Path| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
        let label =
            |v: &Value| v["request"]["object"]["metadata"]["labels"]["agentgov.dev/agent"].clone();
        let governed = read(&bodies.governed);
        assert_eq!(governed["request"]["namespace"], "peer-x");
        assert_eq!(
            governed["request"]["object"]["metadata"]["namespace"],
            "peer-x"
        );
        assert_eq!(label(&governed), AGENT);
        assert_eq!(label(&read(&bodies.unknown)), "no-such-agent");
        assert_eq!(label(&read(&bodies.unlabelled)), Value::Null);
        assert!((7_000..9_000).contains(&bodies.bytes), "{}", bodies.bytes);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
