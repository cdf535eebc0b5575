//! Load generator for the admission server over mTLS with keep-alive. Not a test: it prints
//! p50/p90/p99/max latency and throughput as a Markdown table (see BENCHMARKS-webhook.md).
//!
//! Self-contained (the default): starts in this process, on loopback, the real admission
//! router over a fixed view (a signed governed agent, 10,000 more, a sandbox, the shipped
//! policy, a fake SubjectAccessReview that allows), the same router without the check memo,
//! and two servers with the same TLS and HTTP stack and no checks: the baseline, which reads the
//! request uid and answers allow with it (the least a valid webhook does), and the floor, which
//! answers a canned allow without reading the body; then loads each. The load generator checks
//! every answer of every server the same way. Then, in process and on one thread,
//! the cost of the checks and of a whole review, fresh and memoized.
//!
//!   cargo bench -p agentgov-webhook --bench load
//!   cargo bench -p agentgov-webhook --bench load -- --seconds 5 --connections 1,8,32
//!   (decision log lines are formatted as JSON into a sink; --no-logs leaves them out;
//!   --many N sets the number of extra governed agents; --micro runs only the in-process part;
//!   --only TEXT loads only the scenarios whose name contains TEXT; --pairs N sets how many
//!   interleaved baseline / governed pairs measure the ratio: 5 by default, none with --only
//!   unless given)
//!
//! Resident memory of the Agent cache and the memo with N governed agents (nothing else runs):
//!
//!   cargo bench -p agentgov-webhook --bench load -- --rss 10000
//!
//! Against a running webhook (for example the one `make run` starts):
//!
//!   cargo bench -p agentgov-webhook --bench load -- --target 127.0.0.1:18443 \
//!     --path /validate/pods --body review.json --ca ca.crt --cert client.crt --key client.key
#![allow(clippy::unwrap_used)] // a benchmark program: failing loudly is the point

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "load/inprocess.rs"]
mod inprocess;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgov_webhook::config::ClientAuth;
use agentgov_webhook::server::{ServeOptions, serve_tls};
use agentgov_webhook::tls::ReloadingTls;
use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

struct Options {
    seconds: f64,
    warmup: f64,
    connections: Vec<usize>,
    target: Option<String>,
    path: String,
    body: Option<String>,
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    server_name: String,
    no_logs: bool,
    micro_only: bool,
    only: Option<String>,
    many: usize,
    /// Interleaved pairs measuring the ratio (default 5; none with `--only` unless given).
    pairs: Option<usize>,
    rss: Option<usize>,
}

fn options() -> Options {
    let mut o = Options {
        seconds: 3.0,
        warmup: 0.5,
        connections: vec![1, 8, 32],
        target: None,
        path: "/validate/pods".into(),
        body: None,
        ca: None,
        cert: None,
        key: None,
        server_name: "localhost".into(),
        no_logs: false,
        micro_only: false,
        only: None,
        many: 10_000,
        pairs: None,
        rss: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--seconds" => o.seconds = value.parse().unwrap(),
            "--warmup" => o.warmup = value.parse().unwrap(),
            "--connections" => {
                o.connections = value.split(',').map(|c| c.parse().unwrap()).collect()
            }
            "--target" => o.target = Some(value),
            "--path" => o.path = value,
            "--body" => o.body = Some(value),
            "--ca" => o.ca = Some(value),
            "--cert" => o.cert = Some(value),
            "--key" => o.key = Some(value),
            "--server-name" => o.server_name = value,
            "--many" => o.many = value.parse().unwrap(),
            "--pairs" => o.pairs = Some(value.parse().unwrap()),
            "--only" => o.only = Some(value),
            "--rss" => o.rss = Some(value.parse().unwrap()),
            "--no-logs" => {
                o.no_logs = true;
                i += 1;
                continue;
            }
            "--micro" => {
                o.micro_only = true;
                i += 1;
                continue;
            }
            // cargo bench passes --bench; libtest-style flags are ignored.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

// ---- PKI -------------------------------------------------------------------------------

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "bench CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |server: bool| {
        let sans = if server {
            vec!["localhost".to_string()]
        } else {
            vec![]
        };
        let mut params = CertificateParams::new(sans).unwrap();
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca_pem: ca.pem(),
        server: leaf(true),
        client: leaf(false),
    }
}

fn client_config(ca: &str, cert: &str, key: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

// ---- Servers ---------------------------------------------------------------------------

/// Serve `app` over the same TLS and HTTP stack as the webhook, on its own runtime.
fn spawn_server(pki: &Pki, app: Router) -> SocketAddr {
    let (cert, key, ca) = (
        pki.server.0.clone(),
        pki.server.1.clone(),
        pki.ca_pem.clone(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bench-server")
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let dir = std::env::temp_dir().join(format!(
                "agentgov-bench-{}-{}",
                std::process::id(),
                rand_suffix()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            for (name, contents) in [("tls.crt", &cert), ("tls.key", &key), ("ca.crt", &ca)] {
                std::fs::write(dir.join(name), contents).unwrap();
            }
            let (tls, _) = ReloadingTls::load(agentgov_webhook::tls::TlsFiles {
                cert: dir.join("tls.crt"),
                key: dir.join("tls.key"),
                client_ca: Some(dir.join("ca.crt")),
                client_auth: ClientAuth::Required,
            })
            .await
            .unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            serve_tls(
                listener,
                tls,
                app,
                ServeOptions {
                    handshake_timeout: Duration::from_secs(10),
                    drain_timeout: Duration::from_secs(1),
                    idle_timeout: Duration::from_secs(120),
                    shutting_down: None,
                },
                std::future::pending::<()>(),
            )
            .await;
        });
    });
    rx.recv().unwrap()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// The floor: read the body, answer a canned allow (not a valid answer: its uid is empty, which
/// the API server refuses). What TLS + HTTP + JSON out cost alone.
fn canned_router() -> Router {
    const ALLOW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true,"status":{}}}"#;
    Router::new().route(
        "/validate/{kind}",
        post(|body: Bytes| async move {
            let _ = body.len();
            ([("content-type", "application/json")], ALLOW)
        }),
    )
}

#[derive(serde::Deserialize)]
struct UidOnly<'a> {
    #[serde(borrow)]
    request: UidOnlyRequest<'a>,
}

#[derive(serde::Deserialize)]
struct UidOnlyRequest<'a> {
    #[serde(borrow)]
    uid: std::borrow::Cow<'a, str>,
}

/// The baseline's answer to `body`: read the request uid (skipping the rest of the body) and
/// allow with it.
pub fn baseline_answer(body: &[u8]) -> Vec<u8> {
    let review: UidOnly<'_> = serde_json::from_slice(body).unwrap();
    let answer = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": review.request.uid, "allowed": true},
    });
    serde_json::to_vec(&answer).unwrap()
}

/// The baseline: the least a valid webhook does, with no checks: read the request uid
/// (skipping the rest of the body) and answer allow with it.
fn baseline_router() -> Router {
    Router::new().route(
        "/validate/{kind}",
        post(|body: Bytes| async move {
            (
                [("content-type", "application/json")],
                baseline_answer(&body),
            )
        }),
    )
}

/// The webhook's own parse, then allow without looking anything up or checking: what is left of
/// a governed review once the checks, the cache lookups and the decision log are taken out.
fn parse_only_router() -> Router {
    Router::new().route(
        "/validate/{kind}",
        post(|body: Bytes| async move {
            let request = agentgov_webhook::review::parse_pod(&body).unwrap();
            let decision = agentgov_webhook::decision::Decision::pass("no checks");
            let review = agentgov_webhook::review::Answer::new(&request.uid, &decision);
            (
                [("content-type", "application/json")],
                serde_json::to_vec(&review).unwrap(),
            )
        }),
    )
}

// ---- Load ------------------------------------------------------------------------------

struct Run {
    latencies: Vec<Duration>,
    errors: usize,
    unexpected: usize,
    elapsed: Duration,
}

#[allow(clippy::too_many_arguments)]
async fn load(
    addr: &str,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    bodies: Arc<Vec<Bytes>>,
    expect_allowed: Option<bool>,
    connections: usize,
    warmup: Duration,
    measure: Duration,
) -> Run {
    let start = Instant::now() + warmup;
    let end = start + measure;
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let config = config.clone();
        let bodies = Arc::clone(&bodies);
        let path = path.to_string();
        let addr = addr.to_string();
        let name = ServerName::try_from(server_name.to_string()).unwrap();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut errors, mut unexpected) = (0usize, 0usize);
            let tcp = TcpStream::connect(&addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let tls = TlsConnector::from(config).connect(name, tcp).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn);
            // Each connection walks the bodies from its own offset.
            let mut next = connection * bodies.len() / connections;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let request = Request::post(path.as_str())
                    .header("host", "localhost")
                    .header("content-type", "application/json")
                    .body(Full::new(bodies[next % bodies.len()].clone()))
                    .unwrap();
                next += 1;
                let ok = match sender.send_request(request).await {
                    Ok(response) if response.status().is_success() => {
                        match response.into_body().collect().await {
                            Ok(bytes) => {
                                if let Some(expected) = expect_allowed {
                                    let v: serde_json::Value =
                                        serde_json::from_slice(&bytes.to_bytes())
                                            .unwrap_or_default();
                                    if v["response"]["allowed"] != serde_json::json!(expected) {
                                        unexpected += 1;
                                    }
                                }
                                true
                            }
                            Err(_) => false,
                        }
                    }
                    _ => false,
                };
                let done = Instant::now();
                if sent >= start {
                    if ok {
                        latencies.push(done - sent);
                    } else {
                        errors += 1;
                    }
                }
                if !ok {
                    break;
                }
            }
            (latencies, errors, unexpected)
        }));
    }
    let mut run = Run {
        latencies: Vec::new(),
        errors: 0,
        unexpected: 0,
        elapsed: measure,
    };
    for task in tasks {
        let (l, e, u) = task.await.unwrap();
        run.latencies.extend(l);
        run.errors += e;
        run.unexpected += u;
    }
    run.latencies.sort();
    run
}

fn pct(sorted: &[Duration], p: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    format!("{:.3}", sorted[i].as_secs_f64() * 1000.0)
}

fn row(name: &str, connections: usize, run: &Run) -> String {
    let rps = run.latencies.len() as f64 / run.elapsed.as_secs_f64();
    format!(
        "| {name} | {connections} | {} | {} | {} | {} | {:.0} | {} |",
        pct(&run.latencies, 0.50),
        pct(&run.latencies, 0.90),
        pct(&run.latencies, 0.99),
        pct(&run.latencies, 1.0),
        rps,
        run.errors + run.unexpected,
    )
}

/// (name, address, path, bodies in turn, expected `allowed`).
type Scenario<'a> = (&'a str, &'a str, &'a str, Arc<Vec<Bytes>>, Option<bool>);

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this without it: no load then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("load generator: run it with `cargo bench -p agentgov-webhook --bench load`");
        return;
    }
    let o = options();
    if let Some(n) = o.rss {
        inprocess::rss(n);
        return;
    }
    // Production logs every decision as a JSON line; include that cost (written to a sink).
    if !o.no_logs {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .event_format(agentgov_webhook::telemetry::JsonLine)
            .with_writer(std::io::sink)
            .try_init();
    }
    if o.micro_only {
        micro();
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .unwrap();
    let measure = Duration::from_secs_f64(o.seconds);
    let warmup = Duration::from_secs_f64(o.warmup);
    println!(
        "| scenario | connections | p50 ms | p90 ms | p99 ms | max ms | requests/s | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");

    if let Some(target) = &o.target {
        let read = |p: &Option<String>, what: &str| {
            std::fs::read_to_string(p.as_deref().unwrap_or_else(|| panic!("--{what} is needed")))
                .unwrap()
        };
        let config = client_config(
            &read(&o.ca, "ca"),
            &read(&o.cert, "cert"),
            &read(&o.key, "key"),
        );
        let body = Arc::new(vec![Bytes::from(read(&o.body, "body"))]);
        for &c in &o.connections {
            let run = runtime.block_on(load(
                target,
                &o.server_name,
                config.clone(),
                &o.path,
                body.clone(),
                None,
                c,
                warmup,
                measure,
            ));
            println!("{}", row(&format!("{target}{}", o.path), c, &run));
        }
        return;
    }

    let pki = pki();
    let config = client_config(&pki.ca_pem, &pki.client.0, &pki.client.1);
    let canned = spawn_server(&pki, canned_router()).to_string();
    let baseline = spawn_server(&pki, baseline_router()).to_string();
    let parse_only = spawn_server(&pki, parse_only_router()).to_string();
    // The webhook: the memo on (as shipped), with `many` more governed agents whose memo
    // entries are warmed before the load; and the same without the memo.
    let expiry = agentgov_api::expiry::ExpiryPolicy::default();
    let World { keys, mut view } = world();
    let many = inprocess::many_bodies(o.many);
    for i in 0..o.many {
        view.add_agent(inprocess::realistic_agent(
            &inprocess::many_name(i),
            &keys.ring,
            policy().hash(),
            i + 1,
        ));
    }
    for body in &many {
        let reviewed = agentgov_webhook::admit::review_pod(body, &view, &expiry, now());
        assert!(reviewed.allowed(), "{:?}", reviewed.decision);
    }
    let webhook = spawn_server(&pki, app(view).router).to_string();
    let mut fresh_view = world().view;
    fresh_view.memo = None;
    let fresh = spawn_server(&pki, app(fresh_view).router).to_string();

    let one = |body: Bytes| Arc::new(vec![body]);
    let governed_pod = Bytes::from(bytes(&pod_review(Some(GOVERNED))));
    let sandbox_pod = Bytes::from(bytes(&pod_review(Some(SANDBOX))));
    let unknown_pod = Bytes::from(bytes(&pod_review(Some("nobody"))));
    let governed_agent = Bytes::from(bytes(&agent_create("auditor-2", &governed_spec())));
    let many_label = format!("pods of {} governed agents in turn (memo warm)", o.many);
    let scenarios: [Scenario<'_>; 9] = [
        (
            "floor: TLS + HTTP, canned allow (no parse)",
            canned.as_str(),
            "/validate/pods",
            one(governed_pod.clone()),
            Some(true),
        ),
        (
            "baseline: allow echoing the uid, no checks",
            baseline.as_str(),
            "/validate/pods",
            one(governed_pod.clone()),
            Some(true),
        ),
        (
            "webhook's Pod parse + allow, no lookup, checks or log",
            parse_only.as_str(),
            "/validate/pods",
            one(governed_pod.clone()),
            Some(true),
        ),
        (
            "pod of a governed agent, memo off (7 checks, Ed25519)",
            fresh.as_str(),
            "/validate/pods",
            one(governed_pod.clone()),
            Some(true),
        ),
        (
            "pod of a governed agent, memo (7 checks, Ed25519)",
            webhook.as_str(),
            "/validate/pods",
            one(governed_pod.clone()),
            Some(true),
        ),
        (
            many_label.as_str(),
            webhook.as_str(),
            "/validate/pods",
            Arc::new(many),
            Some(true),
        ),
        (
            "pod of a sandbox agent (allow)",
            webhook.as_str(),
            "/validate/pods",
            one(sandbox_pod),
            Some(true),
        ),
        (
            "pod of an unknown agent (deny)",
            webhook.as_str(),
            "/validate/pods",
            one(unknown_pod),
            Some(false),
        ),
        (
            "governed Agent CREATE (Rego, no SAR)",
            webhook.as_str(),
            "/validate/agents",
            one(governed_agent),
            Some(true),
        ),
    ];
    for (name, addr, path, body, expect) in scenarios {
        if o.only
            .as_ref()
            .is_some_and(|only| !name.contains(only.as_str()))
        {
            continue;
        }
        for &c in &o.connections {
            let run = runtime.block_on(load(
                addr,
                "localhost",
                config.clone(),
                path,
                body.clone(),
                expect,
                c,
                warmup,
                measure,
            ));
            println!("{}", row(name, c, &run));
        }
    }
    let pairs = o.pairs.unwrap_or(if o.only.is_none() { 5 } else { 0 });
    if pairs > 0 {
        let pair = |addr: &str, c: usize| {
            let run = runtime.block_on(load(
                addr,
                "localhost",
                config.clone(),
                "/validate/pods",
                one(governed_pod.clone()),
                Some(true),
                c,
                warmup,
                measure,
            ));
            assert_eq!(
                run.errors + run.unexpected,
                0,
                "errors while measuring a pair"
            );
            run.latencies.len() as f64 / run.elapsed.as_secs_f64()
        };
        ratios(&o.connections, pairs, |c| {
            (pair(&baseline, c), pair(&webhook, c))
        });
    }

    micro();
}

/// The governed Pod's throughput against the baseline's, in `pairs` interleaved pairs of runs
/// (baseline, then governed) for each connection count: a change in the machine's load between
/// runs moves both sides of a pair alike, and the median ratio is robust to an outlier pair.
fn ratios(connections: &[usize], pairs: usize, mut pair: impl FnMut(usize) -> (f64, f64)) {
    println!();
    println!(
        "| connections | baseline req/s (median) | governed Pod req/s (median) | governed / baseline, median of {pairs} pairs | lowest pair | highest pair |"
    );
    println!("|---|---|---|---|---|---|");
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    for &c in connections {
        let (mut base, mut governed, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..pairs {
            let (b, g) = pair(c);
            base.push(b);
            governed.push(g);
            ratio.push(g / b);
        }
        let (low, high) = (
            ratio.iter().copied().fold(f64::INFINITY, f64::min),
            ratio.iter().copied().fold(0.0, f64::max),
        );
        println!(
            "| {c} | {:.0} | {:.0} | {:.0}% | {:.0}% | {:.0}% |",
            median(&mut base),
            median(&mut governed),
            100.0 * median(&mut ratio),
            100.0 * low,
            100.0 * high
        );
    }
}

/// The in-process measurements (one thread, no TLS, no HTTP).
fn micro() {
    let World {
        keys,
        view: mut memo_view,
    } = world();
    let World {
        keys: fresh_keys,
        view: mut fresh_view,
    } = world();
    fresh_view.memo = None;
    // A governed agent whose proof names an older policy than the one in force (the operator
    // has not re-signed it yet): its Pods need the policy in force's verdict.
    let older = "0".repeat(64);
    memo_view.add_agent(signed_agent(
        inprocess::OLDER,
        governed_spec(),
        &keys.ring,
        &older,
    ));
    fresh_view.add_agent(signed_agent(
        inprocess::OLDER,
        governed_spec(),
        &fresh_keys.ring,
        &older,
    ));
    inprocess::micro(&memo_view, &fresh_view, keys.verification(&[]));
}
