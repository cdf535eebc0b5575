//! admission-load: an out-of-process admission load generator, and the helpers the deployed
//! webhook benchmark (`e2e/bench/deployed.sh`) needs around it.
//!
//! ```text
//! admission-load load --url URL --body FILE [--body FILE ...] --ca FILE [--cert FILE --key FILE]
//!     [--server-name NAME] [--http 1.1|2] [--connections 1,8] [--in-flight N] [--duration SECS]
//!     [--warmup SECS] [--expect allowed|denied] [--pid PID] [--label TEXT] [--threads N]
//!     [--format md|json] [--header]
//! ```
//! Loads any AdmissionReview endpoint (agentgov's, or a peer's such as Gatekeeper's) over TLS,
//! with a client certificate when `--cert`/`--key` are given (without them, for a server that
//! does not ask for one). For each connection count, one row: requests/s, p50/p90/p99/max,
//! errors (failed requests and answers other than `--expect`), and with `--pid` the CPU time
//! that process used during the measured window (utime + stime from `/proc/<pid>/stat`, all
//! threads) divided by the reviews answered in it: the CPU a deployment pays per review. The
//! generator's own CPU per review and the target's context switches per review are beside it.
//!
//! ```text
//! admission-load capture --out FILE [--namespace team-a] [--deployment e2e/bench/fixtures/deployment.yaml]
//! ```
//! Under `cluster.sh exec`: registers agentgov's webhook configuration pointing at a capturing
//! server in this process, creates the Deployment, and writes the first Pod AdmissionReview the
//! API server sends (the ReplicaSet controller's Pod CREATE) to FILE, byte for byte.
//!
//! ```text
//! admission-load setup --dir DIR --fixture FILE
//! ```
//! Under `cluster.sh exec`: a namespace with the default PolicyBundle and a governed agent
//! signed by the (release) operator; writes DIR/keyring.json (verification ring for the
//! webhook) and DIR/pod-review.json (FILE rewritten to that namespace and agent), and prints
//! `NAMESPACE=... AGENT=...` for the shell.
//!
//! ```text
//! admission-load pods --namespace NS --agent NAME --fixture FILE --webhook-url URL
//!     [--concurrency 1,16] [--creates N] [--rounds R]
//! ```
//! Under `cluster.sh exec`: Pod creates through the API server (the fixture's Pod, labelled for
//! the agent), at each concurrency, `R` rounds, into NS (agentgov's webhook registered for it),
//! into `NS-allow-all` (the same registration pointing at an allow-all webhook in this process)
//! and into `NS-plain` (selected by neither), create by create in turn, stored and then as dry
//! runs (`dryRun=All`: admitted the same way, webhooks included, but not stored, so without
//! etcd's and the scheduler's tail); prints, for each kind, the latency of each side pooled over
//! the rounds and what each webhook adds, pooled (the added p99 with a 95 % bootstrap interval,
//! `src/create_latency.rs`) and round by round.
#![forbid(unsafe_code)]

#[path = "../create_latency.rs"]
mod create_latency;
#[path = "../load.rs"]
mod load;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgov_e2e::operator::{KeyFile, Operator, free_port};
use agentgov_e2e::webhook::{
    ClusterCerts, only_namespace, register, wait_for_service_account, write_verification_ring,
};
use anyhow::{Context as _, Result, anyhow, bail};
use create_latency::{ALLOW_ALL, NONE, SIDES, Samples, ms, quantile};
use futures::{StreamExt, stream};
use hyper::body::Bytes;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use load::{Http, Plan, Target};
use serde_json::Value;

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.first().map(String::as_str) {
        Some("load" | "capture" | "setup" | "pods") => args.remove(0),
        Some("-h" | "--help") | None => {
            print!("{}", usage());
            return Ok(());
        }
        Some(_) => "load".to_string(),
    };
    let flags = Flags::parse(&args)?;
    let threads = flags.parsed("threads", 1usize)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match mode.as_str() {
            "load" => load_mode(&flags).await,
            "capture" => capture_mode(&flags).await,
            "setup" => setup_mode(&flags).await,
            _ => pods_mode(&flags).await,
        }
    })
}

fn usage() -> String {
    let doc = include_str!("admission-load.rs");
    doc.lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start_matches(' ')))
        .collect()
}

/// `--name value` flags; a flag may repeat (`--body`).
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String]) -> Result<Self> {
        let mut pairs = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(name) = arg.strip_prefix("--") else {
                bail!("unexpected argument {arg:?}\n{}", usage());
            };
            // Switches without a value.
            if name == "header" {
                pairs.push((name.to_string(), String::new()));
                continue;
            }
            let value = it
                .next()
                .with_context(|| format!("--{name} needs a value"))?;
            pairs.push((name.to_string(), value.clone()));
        }
        Ok(Flags(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    fn required(&self, name: &str) -> Result<&str> {
        self.get(name)
            .with_context(|| format!("--{name} is required"))
    }

    fn parsed<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| anyhow!("--{name} {v:?}: {e}")),
        }
    }

    fn list(&self, name: &str, default: &[usize]) -> Result<Vec<usize>> {
        match self.get(name) {
            None => Ok(default.to_vec()),
            Some(v) => v
                .split(',')
                .map(|c| c.trim().parse().map_err(|e| anyhow!("--{name} {v:?}: {e}")))
                .collect(),
        }
    }
}

fn read(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("read {path}"))
}

// ---- load ----------------------------------------------------------------------------

/// CPU and context switches of a process at one moment.
#[derive(Clone, Copy, Debug)]
struct Usage {
    cpu: Duration,
    switches: u64,
}

fn usage_of(pid: u32) -> Option<Usage> {
    let cpu = agentgov_e2e::process::cpu_time(pid)?;
    let (voluntary, involuntary) = load::context_switches(pid).unwrap_or_default();
    Some(Usage {
        cpu,
        switches: voluntary + involuntary,
    })
}

async fn load_mode(flags: &Flags) -> Result<()> {
    let target = Target::from_url(flags.required("url")?)?;
    let target = match flags.get("server-name") {
        Some(name) => Target {
            server_name: name.to_string(),
            ..target
        },
        None => target,
    };
    let http = Http::parse(flags.get("http").unwrap_or("1.1"))?;
    let ca = read(flags.required("ca")?)?;
    let client = match (flags.get("cert"), flags.get("key")) {
        (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
        (None, None) => None,
        _ => bail!("--cert and --key go together"),
    };
    let tls = load::client_config(
        &ca,
        client.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
        http,
    )?;
    let bodies = flags
        .all("body")
        .into_iter()
        .map(|p| read(p).map(Bytes::from))
        .collect::<Result<Vec<_>>>()?;
    if bodies.is_empty() {
        bail!("--body is required");
    }
    let expect_allowed = match flags.get("expect") {
        None => None,
        Some("allowed") => Some(true),
        Some("denied") => Some(false),
        Some(other) => bail!("--expect {other:?}: allowed or denied"),
    };
    let pid: Option<u32> = flags.get("pid").map(str::parse).transpose()?;
    let label = flags
        .get("label")
        .map_or_else(|| format!("{}{}", target.addr, target.path), str::to_string);
    let json = flags.get("format") == Some("json");
    if flags.has("header") && !json {
        println!(
            "| target | HTTP | connections | in flight | body bytes | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors | target CPU µs/review | target context switches/review | generator CPU µs/review |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    }
    let body_bytes = bodies.iter().map(Bytes::len).sum::<usize>() / bodies.len();
    let bodies = Arc::new(bodies);
    let measure = Duration::from_secs_f64(flags.parsed("duration", 5.0)?);
    let warmup = Duration::from_secs_f64(flags.parsed("warmup", 1.0)?);
    let in_flight = flags.parsed("in-flight", 1usize)?;
    let mut failed = false;
    for connections in flags.list("connections", &[1, 8])? {
        let plan = Plan {
            http,
            connections,
            in_flight,
            warmup,
            measure,
            bodies: Arc::clone(&bodies),
            expect_allowed,
        };
        // CPU is sampled at the edges of the measured window, not the warm-up.
        let me = std::process::id();
        let sampler = tokio::spawn({
            let (warmup, measure) = (warmup, measure);
            async move {
                tokio::time::sleep(warmup).await;
                let before = (pid.and_then(usage_of), usage_of(me));
                tokio::time::sleep(measure).await;
                let after = (pid.and_then(usage_of), usage_of(me));
                (before, after)
            }
        });
        let run = load::run(&target, Arc::clone(&tls), &plan).await?;
        let ((target_before, own_before), (target_after, own_after)) = sampler.await?;
        let reviews = (run.latencies.len() + run.errors).max(1) as f64;
        let per_review = |before: Option<Usage>, after: Option<Usage>| {
            before.zip(after).map(|(b, a)| {
                (
                    a.cpu.saturating_sub(b.cpu).as_secs_f64() * 1e6 / reviews,
                    a.switches.saturating_sub(b.switches) as f64 / reviews,
                )
            })
        };
        let target_use = per_review(target_before, target_after);
        let own_use = per_review(own_before, own_after);
        let errors = run.errors + run.unexpected;
        failed |= errors > 0;
        let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "target": label, "http": http.as_str(), "connections": connections,
                    "in_flight": in_flight, "body_bytes": body_bytes,
                    "requests_per_second": run.requests_per_second(),
                    "p50_ms": run.quantile(0.5).map(|d| d.as_secs_f64() * 1e3),
                    "p90_ms": run.quantile(0.9).map(|d| d.as_secs_f64() * 1e3),
                    "p99_ms": run.quantile(0.99).map(|d| d.as_secs_f64() * 1e3),
                    "max_ms": run.quantile(1.0).map(|d| d.as_secs_f64() * 1e3),
                    "requests": run.latencies.len(), "errors": errors,
                    "target_cpu_us_per_review": target_use.map(|u| u.0),
                    "target_switches_per_review": target_use.map(|u| u.1),
                    "generator_cpu_us_per_review": own_use.map(|u| u.0),
                    "first_error": run.first_error,
                })
            );
        } else {
            println!(
                "| {label} | {} | {connections} | {in_flight} | {body_bytes} | {:.0} | {} | {} | {} | {} | {errors} | {} | {} | {} |",
                http.as_str(),
                run.requests_per_second(),
                run.ms(0.5),
                run.ms(0.9),
                run.ms(0.99),
                run.ms(1.0),
                fmt(target_use.map(|u| u.0)),
                fmt(target_use.map(|u| u.1)),
                fmt(own_use.map(|u| u.0)),
            );
        }
        if let Some(e) = &run.first_error {
            eprintln!("{label} at {connections} connections: first error: {e}");
        }
    }
    if failed {
        bail!("some requests failed or were answered unexpectedly (see errors)");
    }
    Ok(())
}

// ---- capture -------------------------------------------------------------------------

async fn capture_mode(flags: &Flags) -> Result<()> {
    let out = PathBuf::from(flags.required("out")?);
    let namespace = flags.get("namespace").unwrap_or("team-a").to_string();
    let deployment_file = flags.get("deployment").map_or_else(
        || agentgov_e2e::repo_root().join("e2e/bench/fixtures/deployment.yaml"),
        PathBuf::from,
    );
    let certs = ClusterCerts::from_env()?;
    let (found_tx, mut found_rx) = tokio::sync::mpsc::channel::<(Vec<u8>, String)>(4);
    let port = allow_all_server(&certs, move |head, body, alpn| {
        if head.kind.kind == "Pod" && head.operation == "CREATE" {
            let _ = found_tx.try_send((body.to_vec(), alpn.to_string()));
        }
    })
    .await?;

    let client = agentgov_e2e::client().await;
    agentgov_e2e::install_crds(&client).await?;
    create_namespace(&client, &namespace).await?;
    let registration = register(
        &client,
        "agentgov-capture",
        &format!("https://127.0.0.1:{port}"),
        &certs.ca_bundle()?,
        only_namespace(&namespace),
    )
    .await?;
    // The API server picks up a new registration a moment after the apply.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = std::fs::read_to_string(&deployment_file)
        .with_context(|| format!("read {}", deployment_file.display()))?;
    let deployment: Deployment = serde_yaml::from_str(&text)
        .with_context(|| format!("parse {}", deployment_file.display()))?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .context("create the Deployment")?;
    let (body, alpn) = tokio::time::timeout(Duration::from_secs(60), found_rx.recv())
        .await
        .context("no Pod review reached the capture server within 60 s")?
        .context("the capture server stopped")?;
    std::fs::write(&out, &body).with_context(|| format!("write {}", out.display()))?;
    eprintln!(
        "captured {} bytes (ALPN {alpn}) into {}",
        body.len(),
        out.display()
    );
    let name = deployment.metadata.name.unwrap_or_default();
    let _ = deployments.delete(&name, &DeleteParams::background()).await;
    registration.delete().await?;
    Ok(())
}

/// The fields of an AdmissionReview's request an allow-all server reads.
#[derive(serde::Deserialize)]
struct ReviewHead<'a> {
    #[serde(borrow)]
    request: RequestHead<'a>,
}

#[derive(serde::Deserialize)]
struct RequestHead<'a> {
    uid: &'a str,
    #[serde(default)]
    operation: &'a str,
    #[serde(borrow)]
    kind: KindHead<'a>,
}

#[derive(serde::Deserialize)]
struct KindHead<'a> {
    #[serde(default)]
    kind: &'a str,
}

/// A webhook that allows every AdmissionReview it is sent, doing as little as a webhook can
/// (the review's uid read, the answer written), over TLS with the cluster's serving
/// certificate (no client certificate asked), HTTP/1.1 and HTTP/2. `seen` gets each review's
/// head, body and ALPN protocol first. Returns the port (127.0.0.1).
async fn allow_all_server<F>(certs: &ClusterCerts, seen: F) -> Result<u16>
where
    F: Fn(&RequestHead<'_>, &[u8], &str) + Clone + Send + Sync + 'static,
{
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let chain = CertificateDer::pem_file_iter(&certs.serving_cert)
        .context("serving certificate")?
        .collect::<Result<Vec<_>, _>>()
        .context("serving certificate")?;
    let key = PrivateKeyDer::from_pem_file(&certs.serving_key).context("serving key")?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let port = free_port()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let alpn: Arc<str> = tls
                    .get_ref()
                    .1
                    .alpn_protocol()
                    .map_or_else(|| "none".into(), |p| String::from_utf8_lossy(p).into());
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    let alpn = Arc::clone(&alpn);
                    async move {
                        use http_body_util::BodyExt;
                        let body = request.into_body().collect().await?.to_bytes();
                        let answer = match serde_json::from_slice::<ReviewHead<'_>>(&body) {
                            Ok(head) => {
                                seen(&head.request, &body, &alpn);
                                serde_json::json!({
                                    "apiVersion": "admission.k8s.io/v1",
                                    "kind": "AdmissionReview",
                                    "response": {"uid": head.request.uid, "allowed": true},
                                })
                            }
                            Err(_) => Value::Null,
                        };
                        Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(
                            Bytes::from(answer.to_string()),
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok(port)
}

// ---- setup ---------------------------------------------------------------------------

/// The fixture's review rewritten to `namespace` and `agent`, with a fresh uid.
fn rewrite_review(fixture: &Value, namespace: &str, agent: &str) -> Result<Value> {
    let mut review = fixture.clone();
    if review["request"]["object"]["kind"] != "Pod" {
        bail!("the fixture is not a Pod AdmissionReview (request.object.kind is not Pod)");
    }
    review["request"]["namespace"] = Value::from(namespace);
    let object = &mut review["request"]["object"];
    object["metadata"]["namespace"] = Value::from(namespace);
    object["metadata"]["labels"][agentgov_api::agent::AGENT_LABEL] = Value::from(agent);
    Ok(review)
}

async fn setup_mode(flags: &Flags) -> Result<()> {
    let dir = PathBuf::from(flags.required("dir")?);
    std::fs::create_dir_all(&dir)?;
    let fixture: Value = serde_json::from_slice(&read(flags.required("fixture")?)?)
        .context("the fixture is not JSON")?;
    let client = agentgov_e2e::client().await;
    agentgov_e2e::install_crds(&client).await?;
    let suffix = std::process::id() ^ jiff::Timestamp::now().subsec_nanosecond().unsigned_abs();
    let namespace = format!("deployed-{:x}", suffix & 0xffffff);
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace},
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .context("create the namespace")?;
    wait_for_service_account(&client, &namespace).await?;
    let keys = KeyFile::new(&dir.join("signing"), "bench")?;
    write_verification_ring(&keys, &dir.join("keyring.json"))?;
    let spec = agentgov_e2e::manifest::<agentgov_api::Agent>("examples/agent-governed.yaml")?.spec;
    let agent = "invoice-auditor";
    let bundles: Api<agentgov_api::PolicyBundle> = Api::namespaced(client.clone(), &namespace);
    bundles
        .create(
            &PostParams::default(),
            &agentgov_api::PolicyBundle::new(
                "default",
                agentgov_api::policy::default_bundle_spec(),
            ),
        )
        .await
        .context("create the PolicyBundle")?;
    let agents: Api<agentgov_api::Agent> = Api::namespaced(client.clone(), &namespace);
    agents
        .create(
            &PostParams::default(),
            &agentgov_api::Agent::new(agent, spec.clone()),
        )
        .await
        .context("create the agent")?;
    let promotions: Api<agentgov_api::AgentPromotion> = Api::namespaced(client.clone(), &namespace);
    agentgov_e2e::approve(&agents, &promotions, agent).await?;
    let _operator = Operator::start(&namespace, &keys.path, "deployed-bench", &[])?;
    agentgov_e2e::wait_agent(
        &agents,
        agent,
        "GOVERNED_VALID (signed by the operator)",
        Duration::from_secs(120),
        |a| {
            a.status.as_ref().is_some_and(|s| {
                s.governance_status == Some(agentgov_api::agent::GovernanceStatus::GovernedValid)
                    && s.proof.is_some()
            })
        },
    )
    .await?;
    let review = rewrite_review(&fixture, &namespace, agent)?;
    let path = dir.join("pod-review.json");
    std::fs::write(&path, serde_json::to_vec(&review)?)
        .with_context(|| format!("write {}", path.display()))?;
    println!("NAMESPACE={namespace}");
    println!("AGENT={agent}");
    // The operator stops here (dropped): the agent keeps its signed status.
    Ok(())
}

// ---- pods ----------------------------------------------------------------------------

/// The Pod to create: the fixture's, as a client would submit it (no server-set metadata, no
/// owner, no injected service account volume), labelled for `agent`.
fn pod_from_fixture(fixture: &Value, agent: &str) -> Result<Pod> {
    let mut object = fixture["request"]["object"].clone();
    if object["kind"] != "Pod" {
        bail!("the fixture is not a Pod AdmissionReview");
    }
    let metadata = object["metadata"]
        .as_object_mut()
        .context("the fixture's Pod has no metadata")?;
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
        "ownerReferences",
        "generation",
    ] {
        metadata.remove(field);
    }
    metadata.insert("generateName".into(), Value::from("bench-"));
    object["metadata"]["labels"][agentgov_api::agent::AGENT_LABEL] = Value::from(agent);
    if let Some(obj) = object.as_object_mut() {
        obj.remove("status");
    }
    let spec = &mut object["spec"];
    if let Some(volumes) = spec["volumes"].as_array_mut() {
        volumes.retain(|v| {
            !v["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("kube-api-access-"))
        });
    }
    for kind in ["containers", "initContainers"] {
        if let Some(containers) = spec[kind].as_array_mut() {
            for container in containers {
                if let Some(mounts) = container["volumeMounts"].as_array_mut() {
                    mounts.retain(|m| {
                        !m["name"]
                            .as_str()
                            .is_some_and(|n| n.starts_with("kube-api-access-"))
                    });
                }
            }
        }
    }
    if let Some(spec) = spec.as_object_mut() {
        spec.remove("nodeName");
    }
    serde_json::from_value(object).context("the fixture's Pod does not parse as a Pod")
}

/// Latencies of `creates` Pod creates into each of `sides`, `concurrency` at a time,
/// interleaved: each run of one create a side takes the sides in an order rotated by one from
/// the run before, so that no side is always first. Each side's latencies, sorted.
async fn create_pods(
    sides: &[Api<Pod>],
    pod: &Pod,
    concurrency: usize,
    creates: usize,
    kind: CreateKind,
) -> Result<Vec<Vec<Duration>>> {
    let n = sides.len();
    let params = &PostParams {
        dry_run: kind == CreateKind::DryRun,
        ..PostParams::default()
    };
    let results: Vec<Result<(usize, Duration)>> = stream::iter(0..creates * n)
        .map(|i| {
            let side = (i + i / n) % n;
            let api = sides[side].clone();
            async move {
                let sent = Instant::now();
                api.create(params, pod).await.map_err(|e| {
                    anyhow!("create a Pod: {}", agentgov_e2e::api_error_message(&e))
                })?;
                Ok((side, sent.elapsed()))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut latencies = vec![Vec::with_capacity(creates); n];
    for result in results {
        let (side, latency) = result?;
        latencies[side].push(latency);
    }
    for side in &mut latencies {
        side.sort_unstable();
    }
    Ok(latencies)
}

/// Wait until the API server no longer sends this namespace's agent Pods to a webhook (a dry
/// run of an unknown agent's Pod is admitted).
async fn wait_unenforced(api: &Api<Pod>, pod: &Pod) -> Result<()> {
    let mut probe = pod.clone();
    probe.metadata.labels.get_or_insert_default().insert(
        agentgov_api::agent::AGENT_LABEL.to_string(),
        "e2e-no-such-agent".into(),
    );
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if api.create(&dry_run, &probe).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the webhook registration was still in force 30 s after its deletion");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How the measured Pods are created.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CreateKind {
    /// Stored: etcd writes each, and the scheduler and controllers see it.
    Stored = 0,
    /// `dryRun=All`: admitted as a create is (every webhook called, with `dryRun: true` in
    /// the review), not stored. The webhook's cost without the storage's tail.
    DryRun = 1,
}

impl CreateKind {
    const BOTH: [CreateKind; 2] = [CreateKind::Stored, CreateKind::DryRun];

    fn label(self) -> &'static str {
        match self {
            CreateKind::Stored => "stored",
            CreateKind::DryRun => "dry-run",
        }
    }

    fn heading(self) -> &'static str {
        match self {
            CreateKind::Stored => "**Stored creates** (each Pod written to etcd)",
            CreateKind::DryRun => {
                "**Dry-run creates** (`dryRun=All`: admitted the same way, webhooks included; not stored)"
            }
        }
    }
}

async fn pods_mode(flags: &Flags) -> Result<()> {
    let namespace = flags.required("namespace")?.to_string();
    let agent = flags.required("agent")?;
    let fixture: Value = serde_json::from_slice(&read(flags.required("fixture")?)?)?;
    let url = flags
        .required("webhook-url")?
        .trim_end_matches('/')
        .to_string();
    let concurrency = flags.list("concurrency", &[1, 16])?;
    let creates = flags.parsed("creates", 400usize)?;
    let rounds = flags.parsed("rounds", 2usize)?;
    let pod = pod_from_fixture(&fixture, agent)?;
    let client = agentgov_e2e::client().await;
    // The same Pods into two more namespaces, create by create in turn with the agent's, so
    // that the machine's drift over the run (etcd's disk above all) weighs on every side
    // alike: one the registration does not select (the API server alone), and one that an
    // allow-all webhook's registration (the same template: rules, selectors, match
    // conditions) selects (what calling any webhook costs the API server).
    let certs = ClusterCerts::from_env()?;
    let ca = certs.ca_bundle()?;
    let allow_all_reviews = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&allow_all_reviews);
    let allow_all = allow_all_server(&certs, move |_, _, _| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .await?;
    let mut apis = Vec::new();
    for side in &SIDES {
        let name = format!("{namespace}{}", side.suffix);
        if !side.suffix.is_empty() {
            create_namespace(&client, &name).await?;
        }
        apis.push(Api::<Pod>::namespaced(client.clone(), &name));
    }
    let registrations = [
        register(
            &client,
            "agentgov-deployed-bench",
            &url,
            &ca,
            only_namespace(&namespace),
        )
        .await?,
        register(
            &client,
            "agentgov-deployed-bench-allow-all",
            &format!("https://127.0.0.1:{allow_all}"),
            &ca,
            only_namespace(&format!("{namespace}{}", SIDES[ALLOW_ALL].suffix)),
        )
        .await?,
    ];
    agentgov_e2e::webhook::wait_enforced(&client, &namespace).await?;
    wait_unenforced(&apis[NONE], &pod).await?;
    wait_reviewed_by_allow_all(&apis[ALLOW_ALL], &pod, &allow_all_reviews).await?;
    let mut samples = [Samples::default(), Samples::default()];
    for round in 0..rounds {
        for &c in &concurrency {
            for kind in CreateKind::BOTH {
                // A few creates first, outside the measurement (connections, caches).
                create_pods(&apis, &pod, c, c.max(4), kind).await?;
                let latencies = create_pods(&apis, &pod, c, creates, kind).await?;
                eprintln!(
                    "round {round}: {} creates at concurrency {c}: p50 {} ms",
                    kind.label(),
                    SIDES
                        .iter()
                        .zip(&latencies)
                        .map(|(side, l)| format!("{} {}", side.reviewed_by, ms(quantile(l, 0.5))))
                        .collect::<Vec<_>>()
                        .join(", "),
                );
                for (side, l) in latencies.into_iter().enumerate() {
                    samples[kind as usize].0.push(((round, side, c), l));
                }
            }
        }
        // Pods pile up (nothing runs them): clear them between rounds.
        for api in &apis {
            api.delete_collection(&DeleteParams::background(), &ListParams::default())
                .await
                .context("delete the Pods")?;
        }
    }
    for registration in registrations {
        registration.delete().await?;
    }
    for kind in CreateKind::BOTH {
        println!("{}:\n", kind.heading());
        print!("{}", samples[kind as usize].report(&concurrency, rounds));
        println!();
    }
    Ok(())
}

/// Wait until the allow-all webhook reviews this namespace's Pods: a dry-run create reaches
/// it (its review count goes up).
async fn wait_reviewed_by_allow_all(
    api: &Api<Pod>,
    pod: &Pod,
    reviews: &std::sync::atomic::AtomicUsize,
) -> Result<()> {
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let before = reviews.load(std::sync::atomic::Ordering::Relaxed);
        api.create(&dry_run, pod)
            .await
            .map_err(|e| anyhow!("dry-run a Pod: {}", agentgov_e2e::api_error_message(&e)))?;
        if reviews.load(std::sync::atomic::Ordering::Relaxed) > before {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the allow-all webhook's registration was not in force 30 s after it was applied"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create_namespace(client: &kube::Client, name: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
    }))?;
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e).context("create the namespace"),
    }
    wait_for_service_account(client, name).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn fixture() -> Value {
        serde_json::from_slice(
            &std::fs::read(
                agentgov_e2e::repo_root().join("e2e/bench/fixtures/pod-review-deployment.json"),
            )
            .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn the_fixture_is_a_deployments_pod_review_of_7_to_8_kb() {
        let path = agentgov_e2e::repo_root().join("e2e/bench/fixtures/pod-review-deployment.json");
        let len = std::fs::metadata(path).unwrap().len();
        assert!((7 * 1024..=8 * 1024).contains(&len), "{len} bytes");
        let review = fixture();
        assert_eq!(review["request"]["operation"], "CREATE");
        assert_eq!(review["request"]["object"]["kind"], "Pod");
        assert_eq!(
            review["request"]["object"]["metadata"]["ownerReferences"][0]["kind"],
            "ReplicaSet"
        );
        assert_eq!(
            review["request"]["object"]["metadata"]["labels"]["agentgov.dev/agent"],
            "invoice-auditor"
        );
    }

    #[test]
    fn reviews_and_pods_are_rewritten_for_the_run() {
        let review = rewrite_review(&fixture(), "ns-1", "bot").unwrap();
        assert_eq!(review["request"]["namespace"], "ns-1");
        assert_eq!(review["request"]["object"]["metadata"]["namespace"], "ns-1");
        assert_eq!(
            review["request"]["object"]["metadata"]["labels"]["agentgov.dev/agent"],
            "bot"
        );
        let pod = pod_from_fixture(&fixture(), "bot").unwrap();
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("bench-"));
        assert!(pod.metadata.owner_references.is_none());
        assert!(pod.metadata.managed_fields.is_none());
        assert_eq!(pod.metadata.labels.unwrap()["agentgov.dev/agent"], "bot");
        let spec = pod.spec.unwrap();
        assert!(
            spec.volumes
                .unwrap_or_default()
                .iter()
                .all(|v| !v.name.starts_with("kube-api-access-"))
        );
    }

    #[test]
    fn flags_repeat_and_parse() {
        let args: Vec<String> = [
            "--body",
            "a",
            "--body",
            "b",
            "--header",
            "--connections",
            "1,8",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let flags = Flags::parse(&args).unwrap();
        assert_eq!(flags.all("body"), ["a", "b"]);
        assert!(flags.has("header"));
        assert_eq!(flags.list("connections", &[]).unwrap(), [1, 8]);
        assert!(Flags::parse(&["stray".to_string()]).is_err());
    }
}
