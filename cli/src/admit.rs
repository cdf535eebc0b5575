//! `agentgov admit NAMESPACE/NAME --image ...`: asks agentgov's webhook whether an agent may
//! start outside Kubernetes (`POST /v1/admit`, webhook/README.md), for an orchestrator to run
//! before it starts one.
//!
//! Prints the webhook's answer (JSON: the decision, and when allowed the spec and the proof) on
//! stdout and exits 0 when the agent may start, 1 when it may not, 2 when there is no decision:
//! a bad flag or file, a request the webhook refused (a bad request, a client certificate its
//! `--admit-clients` does not list), a certificate refused at the handshake, or no answer
//! before the retries or the deadline ran out. Tries again, after a growing jittered wait, only
//! when the connection failed or broke, timed out, or the webhook answered HTTP 5xx (as it does
//! while its caches sync after a restart); never after a decision, a refusal or a refused
//! certificate. Each failed attempt is one line on stderr.

mod backoff;
mod client;
mod retry;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use agentgov_api::expiry::parse_duration;
use agentgov_webhook::external::AdmitRequest;

use self::backoff::Backoff;
use self::client::{AdmitError, Answered, Target};
use self::retry::{Next, Retry};

/// Ask agentgov whether an agent may start, running these images.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agent, as NAMESPACE/NAME.
    #[arg(value_name = "NAMESPACE/NAME", value_parser = agent_ref)]
    agent: (String, String),
    /// An image the agent would run (repeat for each; pinned by digest when the agent binds
    /// its runtime, which then refuses a question naming none).
    #[arg(long = "image", value_name = "IMAGE")]
    images: Vec<String>,
    /// The webhook's base URL (its admission port); the question goes to <url>/v1/admit.
    #[arg(long, env = "AGENTGOV_ADMIT_URL")]
    url: String,
    /// The name to verify the webhook's certificate for, when it is not the URL's host (the
    /// Service's DNS name, reached through another address).
    #[arg(long, env = "AGENTGOV_ADMIT_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
    /// PEM: the CA that signed the webhook's serving certificate (the only root trusted).
    #[arg(long, env = "AGENTGOV_ADMIT_CA")]
    ca: PathBuf,
    /// PEM: this client's certificate (and chain), signed by the CA the webhook trusts for
    /// clients (its --client-ca-file) and named in its --admit-clients.
    #[arg(long, env = "AGENTGOV_ADMIT_CERT", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM: the key of --cert.
    #[arg(long, env = "AGENTGOV_ADMIT_KEY", requires = "cert")]
    key: Option<PathBuf>,
    /// How long one attempt may take (connect, handshake, answer).
    #[arg(long, env = "AGENTGOV_ADMIT_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    timeout: Duration,
    /// How long the whole call may take, retries and waits included: no attempt is started
    /// that could not finish before it, and the last one is cut short at it.
    #[arg(long, env = "AGENTGOV_ADMIT_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    deadline: Duration,
    /// How many times to try again after a failed attempt (at most this many and one
    /// attempts; the deadline usually ends them first).
    #[arg(long, env = "AGENTGOV_ADMIT_RETRIES", default_value_t = 6)]
    retries: u32,
    /// The wait after the first failed attempt; it doubles per attempt (at most 5 s), jittered
    /// between half and the whole step.
    #[arg(long, env = "AGENTGOV_ADMIT_BACKOFF", default_value = "200ms", value_parser = parse_duration)]
    backoff: Duration,
}

/// `NAMESPACE/NAME`, split at its slash (what each half may hold is checked with the rest of
/// the request, by the bounds the webhook applies).
fn agent_ref(value: &str) -> Result<(String, String), String> {
    match value.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
            Ok((namespace.to_string(), name.to_string()))
        }
        _ => Err(format!("{value:?} is not NAMESPACE/NAME")),
    }
}

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Exit codes.
pub const ALLOWED: u8 = 0;
pub const DENIED: u8 = 1;
pub const NO_DECISION: u8 = 2;

/// Run the subcommand; its exit code.
pub fn main(args: Args) -> u8 {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(e) => {
            eprintln!("agentgov admit: cannot start: {e}");
            NO_DECISION
        }
    }
}

async fn run(args: Args) -> u8 {
    let (namespace, agent) = args.agent.clone();
    let request = AdmitRequest {
        namespace,
        agent,
        images: args.images.clone(),
    };
    // The webhook checks the same bounds; a request it would refuse is not sent.
    if let Err(e) = request.validate() {
        eprintln!("agentgov admit: {e}");
        return NO_DECISION;
    }
    if args.timeout.is_zero() || args.deadline.is_zero() {
        eprintln!("agentgov admit: --timeout and --deadline must be positive");
        return NO_DECISION;
    }
    let identity = args.cert.as_deref().zip(args.key.as_deref());
    let target = match client::tls_config(&args.ca, identity)
        .and_then(|tls| Target::new(&args.url, args.tls_server_name.as_deref(), tls))
    {
        Ok(target) => target,
        Err(e) => {
            eprintln!("agentgov admit: {e}");
            return NO_DECISION;
        }
    };
    let retry = Retry {
        retries: args.retries,
        backoff: Backoff {
            initial: args.backoff,
            max: MAX_BACKOFF.max(args.backoff),
        },
        timeout: args.timeout,
        deadline: args.deadline,
    };
    match ask_with_retries(&target, &request, &retry).await {
        Ok(answered) => report(&answered),
        Err(e) => {
            eprintln!("agentgov admit: no decision: {e}");
            NO_DECISION
        }
    }
}

/// Ask until answered, a failure that would repeat, or the retries or the deadline run out.
async fn ask_with_retries(
    target: &Target,
    request: &AdmitRequest,
    retry: &Retry,
) -> Result<Answered, AdmitError> {
    let started = Instant::now();
    let attempts = retry.attempts();
    let mut attempt = 1;
    loop {
        let timeout = retry.attempt_timeout(started.elapsed());
        let error = match target.ask(request, timeout).await {
            Ok(answered) => {
                if attempt > 1 {
                    eprintln!("agentgov admit: answered at attempt {attempt}");
                }
                return Ok(answered);
            }
            Err(error) => error,
        };
        let next = if error.retryable() {
            retry.after(attempt, started.elapsed(), backoff::jitter())
        } else {
            Next::OutOfRetries
        };
        let failed = format!("agentgov admit: attempt {attempt} of {attempts} failed: {error}");
        match next {
            Next::Wait(wait) => {
                eprintln!("{failed}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Next::OutOfRetries => {
                eprintln!("{failed}");
                return Err(error);
            }
            Next::Deadline => {
                eprintln!(
                    "{failed}; no time for another attempt before the deadline ({:?})",
                    retry.deadline
                );
                return Err(error);
            }
        }
    }
}

/// Print the answer; its exit code.
fn report(answered: &Answered) -> u8 {
    println!("{}", answered.json);
    if !answered.status.is_success() {
        eprintln!(
            "agentgov admit: the webhook refused the request (HTTP {}): {}: {}",
            answered.status, answered.verdict.code, answered.verdict.message
        );
        return NO_DECISION;
    }
    if answered.verdict.allowed {
        ALLOWED
    } else {
        DENIED
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let base = ["agentgov", "--url", "https://h:1", "--ca", "ca.pem"];
        Cli::try_parse_from(base.iter().chain(extra)).map(|cli| cli.args)
    }

    #[test]
    fn flags_parse_with_their_defaults() {
        let args = parse(&["team-a/auditor", "--image", "i1", "--image", "i2"]).unwrap();
        assert_eq!(args.agent, ("team-a".to_string(), "auditor".to_string()));
        assert_eq!(args.images, ["i1", "i2"]);
        assert_eq!(args.timeout, Duration::from_secs(2));
        assert_eq!(args.deadline, Duration::from_secs(10));
        assert_eq!(args.retries, 6);
        assert_eq!(args.backoff, Duration::from_millis(200));
        assert_eq!(args.cert, None);
        // A certificate needs its key, and the other way round.
        for half in [["--cert", "c.pem"], ["--key", "k.pem"]] {
            let mut extra = vec!["team-a/auditor"];
            extra.extend(half);
            let err = parse(&extra).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        }
    }

    #[test]
    fn the_agent_is_namespace_slash_name() {
        assert_eq!(
            agent_ref("team-a/a.b"),
            Ok(("team-a".to_string(), "a.b".to_string()))
        );
        // The name keeps any further slash, for the request's bounds to refuse.
        assert_eq!(
            agent_ref("team-a/a/b"),
            Ok(("team-a".to_string(), "a/b".to_string()))
        );
        for bad in ["auditor", "/auditor", "team-a/", "/"] {
            assert!(agent_ref(bad).is_err(), "{bad}");
        }
        assert!(parse(&["auditor"]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn a_decision_exits_by_whether_it_allows() {
        let answer = |status: u16, allowed: bool| Answered {
            status: hyper::StatusCode::from_u16(status).unwrap(),
            verdict: client::Verdict {
                allowed,
                ..Default::default()
            },
            json: "{}".into(),
        };
        assert_eq!(report(&answer(200, true)), ALLOWED);
        assert_eq!(report(&answer(200, false)), DENIED);
        assert_eq!(report(&answer(400, false)), NO_DECISION);
        assert_eq!(report(&answer(403, false)), NO_DECISION);
    }
}
