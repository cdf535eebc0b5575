//! The single real node (e2e/node): Pods run, their logs and exec work through the API server,
//! Services route to Pods through kube-proxy, Pods reach the API server through the kubernetes
//! Service, nothing addressed to a Pod or Service address, or to a registry, leaves the host,
//! and a NetworkPolicy limits a Pod's egress (kube-router's firewall controller).
//!
//! Runs only on a node: `make node-e2e` (e2e/node/node.sh exec -- cargo test --features node).

use std::time::Duration;

use agentgov_e2e::node::{
    busybox_pod, icmp_counters, kubectl_exec, network_report, node_env, pod_ip, run_pod, wait_log,
};
use agentgov_e2e::{TestNamespace, client, wait_for};
use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, PostParams};
use serde_json::json;

const READY: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_node_is_ready_and_a_pod_runs_with_its_log_readable() -> Result<()> {
    let client = client().await;
    let node = Api::<Node>::all(client.clone())
        .get(&node_env("AGENTGOV_NODE_NAME"))
        .await?;
    let info = node.status.and_then(|s| s.node_info).context("node info")?;
    ensure!(
        info.container_runtime_version
            .starts_with("containerd://2."),
        "runtime {}",
        info.container_runtime_version
    );
    let ns = TestNamespace::new(&client, "node-run").await?;
    let pods: Api<Pod> = ns.api();
    let started = std::time::Instant::now();
    let pod = busybox_pod(
        "hello",
        json!({}),
        &[
            "sh",
            "-c",
            "echo hello from $(hostname) as $(id -u); sleep 3600",
        ],
    )?;
    let pod = run_pod(&pods, &pod, READY).await?;
    println!(
        "busybox Pod Ready {:.1} s after create (IP {})",
        started.elapsed().as_secs_f64(),
        pod_ip(&pod)?
    );
    wait_log(&pods, "hello", "hello from hello as 65532", READY).await?;
    let exec = kubectl_exec(&ns.name, "hello", &["cat", "/etc/hostname"])?;
    ensure!(
        exec.success && exec.output.trim() == "hello",
        "exec: {}",
        exec.output
    );
    Ok(())
}

#[tokio::test]
async fn a_service_routes_to_its_pod_and_pods_reach_the_api_server() -> Result<()> {
    let client = client().await;
    let ns = TestNamespace::new(&client, "node-svc").await?;
    let pods: Api<Pod> = ns.api();
    let server = busybox_pod(
        "server",
        json!({"app": "server"}),
        &[
            "nc",
            "-ll",
            "-p",
            "8080",
            "-e",
            "echo",
            "hello through the Service",
        ],
    )?;
    run_pod(&pods, &server, READY).await?;
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "server"},
        "spec": {"selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))?;
    let service = ns
        .api::<Service>()
        .create(&PostParams::default(), &service)
        .await?;
    let cluster_ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .context("cluster IP")?;
    let client_pod = busybox_pod("client", json!({}), &["sleep", "3600"])?;
    run_pod(&pods, &client_pod, READY).await?;
    // kube-proxy programs the Service once its EndpointSlice exists.
    wait_for(READY, || {
        let ns = ns.name.clone();
        let ip = cluster_ip.clone();
        async move {
            let out = kubectl_exec(&ns, "client", &["nc", "-w", "2", &ip, "80"]).ok()?;
            out.output
                .contains("hello through the Service")
                .then_some(())
        }
    })
    .await
    .with_context(|| format!("the Service {cluster_ip}:80 never answered from its Pod"))?;
    // The kubernetes Service (10.0.0.1:443) is the API server on loopback, DNATed.
    let env = kubectl_exec(
        &ns.name,
        "client",
        &[
            "sh",
            "-c",
            "echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT",
        ],
    )?;
    ensure!(env.output.trim() == "10.0.0.1:443", "env: {}", env.output);
    let api = kubectl_exec(&ns.name, "client", &["nc", "-w", "3", "10.0.0.1", "443"])?;
    ensure!(
        api.success,
        "a Pod cannot reach 10.0.0.1:443: {}",
        api.output
    );
    Ok(())
}

#[tokio::test]
async fn unused_service_and_pod_addresses_fail_on_the_host() -> Result<()> {
    let client = client().await;
    let ns = TestNamespace::new(&client, "node-guard").await?;
    let pods: Api<Pod> = ns.api();
    run_pod(
        &pods,
        &busybox_pod("probe", json!({}), &["sleep", "3600"])?,
        READY,
    )
    .await?;
    // Addresses in the Service range and the Pod supernet that nothing uses: the host refuses
    // them at once (the Service range is local to the host, the rest of the Pod supernet
    // unreachable); nothing goes out the default route.
    for (address, refusal) in [
        ("10.0.0.250", "Connection refused"),
        ("10.244.7.7", "No route to host"),
    ] {
        refused_by_the_host(&ns, address, refusal).await?;
        let route = std::process::Command::new("ip")
            .args(["-4", "route", "get", address])
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&route.stdout),
            String::from_utf8_lossy(&route.stderr)
        );
        ensure!(
            !route.status.success()
                || text.starts_with("local ")
                || text.starts_with("unreachable"),
            "the host would route {address} somewhere: {text}"
        );
    }
    Ok(())
}

/// A connection from the `probe` Pod to `address` fails with `refusal`, said by the host.
///
/// "No route to host" is an ICMP answer, and the kernel rate-limits those per Pod address (one
/// a second, from a small burst) and for the whole host: up to three tries, 3 s apart, so that
/// an answer held back by the limit is not read as a packet let through. Any try that connects
/// fails at once.
async fn refused_by_the_host(ns: &TestNamespace, address: &str, refusal: &str) -> Result<()> {
    let mut tries = Vec::new();
    for _ in 0..3 {
        let before = icmp_counters()?;
        let out = kubectl_exec(&ns.name, "probe", &["nc", "-w", "3", address, "9"])?;
        ensure!(!out.success, "{address} answered: {}", out.output);
        if out.output.contains(refusal) {
            if !tries.is_empty() {
                println!(
                    "{address}: refused on try {}; before:\n{}",
                    tries.len() + 1,
                    tries.join("\n")
                );
            }
            return Ok(());
        }
        let after = icmp_counters()?;
        let [unreachable, held_for_the_pod, held_for_the_host] =
            std::array::from_fn(|i| after[i].saturating_sub(before[i]));
        tries.push(format!(
            "{} (meanwhile the host sent {unreachable} ICMP unreachable answers and held \
             back {held_for_the_pod} for a peer's limit, {held_for_the_host} for its own)",
            out.output.trim()
        ));
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let pods: Api<Pod> = ns.api();
    bail!(
        "{address}: the connection was never refused by the host ({refusal}):\n{}\n{}",
        tries.join("\n"),
        network_report(&pods).await
    )
}

#[tokio::test]
async fn an_image_not_on_the_node_is_never_pulled_from_outside() -> Result<()> {
    let client = client().await;
    let ns = TestNamespace::new(&client, "node-pull").await?;
    let pods: Api<Pod> = ns.api();
    let mut pod = busybox_pod("pull", json!({}), &["true"])?;
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers[0].image = Some("ghcr.io/agentgov/not-on-this-node:1".into());
        spec.containers[0].image_pull_policy = Some("Always".into());
    }
    pods.create(&PostParams::default(), &pod).await?;
    let message = wait_for(READY, || {
        let pods = pods.clone();
        async move {
            let status = pods.get("pull").await.ok()?.status?;
            let waiting = status.container_statuses?.first()?.state.clone()?.waiting?;
            waiting.message.filter(|m| m.contains("127.0.0.1:9"))
        }
    })
    .await
    .context("the pull did not fail against the node's closed loopback registry")?;
    ensure!(message.contains("connection refused"), "{message}");
    Ok(())
}

/// kube-router's firewall controller enforces NetworkPolicy on the node: once an egress policy
/// selects a sandbox agent's Pod, it reaches only what the policy allows; everything else is
/// refused on the node (the Pod's traffic never leaves the bridge).
#[tokio::test]
async fn a_network_policy_limits_a_sandbox_agents_egress_to_its_allow_list() -> Result<()> {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let client = client().await;
    let ns = TestNamespace::new(&client, "node-netpol").await?;
    let pods: Api<Pod> = ns.api();
    let mut ips = Vec::new();
    for name in ["allowed", "denied"] {
        let server = busybox_pod(
            name,
            json!({"app": name}),
            &[
                "nc",
                "-ll",
                "-p",
                "8080",
                "-e",
                "echo",
                &format!("hello from {name}"),
            ],
        )?;
        ips.push(pod_ip(&run_pod(&pods, &server, READY).await?)?);
    }
    let agent = busybox_pod(
        "agent",
        json!({"agentgov.dev/agent": "scratchpad"}),
        &["sleep", "3600"],
    )?;
    run_pod(&pods, &agent, READY).await?;
    let reach = |ip: &str| -> Result<bool> {
        let out = kubectl_exec(&ns.name, "agent", &["nc", "-w", "2", ip, "8080"])?;
        Ok(out.output.contains("hello from"))
    };
    ensure!(
        reach(&ips[0])? && reach(&ips[1])?,
        "without a policy the agent must reach both servers"
    );
    let policy: NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "sandbox-egress"},
        "spec": {
            "podSelector": {"matchLabels": {"agentgov.dev/agent": "scratchpad"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "allowed"}}}],
                        "ports": [{"port": 8080, "protocol": "TCP"}]}]
        }
    }))?;
    ns.api::<NetworkPolicy>()
        .create(&PostParams::default(), &policy)
        .await?;
    let started = std::time::Instant::now();
    wait_for(READY, || {
        let denied = ips[1].clone();
        let ns = ns.name.clone();
        async move {
            let out = kubectl_exec(&ns, "agent", &["nc", "-w", "2", &denied, "8080"]).ok()?;
            out.output.contains("Connection refused").then_some(())
        }
    })
    .await
    .context("the egress policy was never enforced: the agent still reaches the denied server")?;
    println!(
        "egress deny enforced {:.1} s after the NetworkPolicy was created",
        started.elapsed().as_secs_f64()
    );
    ensure!(
        reach(&ips[0])?,
        "the policy's allow-list must still be reachable"
    );
    Ok(())
}

/// One node per host: while this node runs, `node.sh up` with another state dir fails at once and
/// says which state dir holds the host, and touches nothing of the running node.
#[tokio::test]
async fn a_second_node_is_refused_while_this_one_runs() -> Result<()> {
    let client = client().await;
    let dir = std::env::temp_dir().join(format!("agentgov-second-node-{}", std::process::id()));
    let out = std::process::Command::new("bash")
        .arg(agentgov_e2e::repo_root().join("e2e/node/node.sh"))
        .arg("up")
        .env("AGENTGOV_NODE_DIR", &dir)
        .output()?;
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "a second node started: {stderr}");
    let running = node_env("AGENTGOV_NODE_DIR");
    ensure!(
        stderr.contains("another node holds") && stderr.contains(&running),
        "the refusal does not name the running node ({running}): {stderr}"
    );
    // The running node is untouched.
    let node = Api::<Node>::all(client)
        .get(&node_env("AGENTGOV_NODE_NAME"))
        .await?;
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    ensure!(ready, "the running node is no longer Ready");
    Ok(())
}

/// A managed agent runs for real: the operator's Deployment starts hardened Pods of the approved
/// (digest-pinned) image, with the spec as hashed mounted read-only; under its NetworkPolicy the
/// agent reaches its allow-list only, while a governed agent with `externalCalls: true` (under a
/// policy that lets governed agents call out) reaches beyond it. When the sandbox expires (quarantine `isolate`), another
/// Pod labelled for the agent keeps running but reaches nothing, and the managed Pods are gone
/// (the Deployment is scaled to zero).
#[tokio::test]
async fn a_managed_agent_runs_hardened_with_its_spec_and_quarantine_cuts_it_off() -> Result<()> {
    use agentgov_api::policy_bundle::{EgressDestination, QuarantineAction, RuntimeData};
    use agentgov_api::runtime::{ManagedContainer, ManagedRuntime, RuntimeMode, RuntimeSpec};
    use agentgov_e2e::scenario::{bundle, setup};
    use k8s_openapi::api::apps::v1::Deployment;

    let isolate = |egress: Vec<EgressDestination>| RuntimeData {
        egress,
        quarantine: Some(QuarantineAction::Isolate),
        ..RuntimeData::default()
    };
    let setup = setup("node-managed", &["--contain-pods=true"], isolate(vec![])).await;
    let ns = &setup.ns;
    let pods: Api<Pod> = ns.api();
    let server = busybox_pod(
        "server",
        json!({"app": "server"}),
        &["nc", "-ll", "-p", "8080", "-e", "echo", "hello from server"],
    )?;
    let server_ip = pod_ip(&run_pod(&pods, &server, READY).await?)?;
    let elsewhere = busybox_pod(
        "elsewhere",
        json!({"app": "elsewhere"}),
        &[
            "nc",
            "-ll",
            "-p",
            "8080",
            "-e",
            "echo",
            "hello from elsewhere",
        ],
    )?;
    let elsewhere_ip = pod_ip(&run_pod(&pods, &elsewhere, READY).await?)?;
    let egress = vec![EgressDestination {
        cidr: format!("{server_ip}/32"),
        ports: vec![8080],
    }];
    // The platform team lets governed agents call out (its policy drops externalCalls from the
    // containment rule); sandboxes stay contained whatever the policy says.
    let mut calls_out = bundle("1.1.0", 1000.0, isolate(egress));
    let rule = r#"containment_flags := ["externalCalls", "persistentWrites"]"#;
    let module = calls_out
        .modules
        .iter_mut()
        .find(|m| m.rego.contains(rule))
        .context("the default policy has no containment rule to relax")?;
    module.rego = module
        .rego
        .replace(rule, r#"containment_flags := ["persistentWrites"]"#);
    agentgov_e2e::apply_bundle_in_force(ns, calls_out, READY).await?;

    // A governed agent whose anatomy allows external calls is not contained: no policy is
    // written for it, and its Pod reaches what the sandbox's may not.
    let mut open = agentgov_e2e::admission::governed_spec();
    open.anatomy.containment.external_calls = true;
    setup.create_agent("caller", open).await;
    setup.approve_valid("caller").await;
    let caller = busybox_pod(
        "caller",
        json!({"agentgov.dev/agent": "caller"}),
        &["sleep", "3600"],
    )?;
    run_pod(&pods, &caller, READY).await?;
    // While it awaited approval the agent was a sandbox, contained by a NetworkPolicy; the
    // operator deletes it after writing the promoted status, and kube-router then drops its
    // rules, so both are read until they hold.
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let policies: Api<NetworkPolicy> = ns.api();
    agentgov_e2e::wait_gone(&policies, "agentgov-caller", READY)
        .await
        .context(
            "the containment NetworkPolicy stays for an agent whose anatomy allows external calls",
        )?;
    let nc = ["nc", "-w", "2", elsewhere_ip.as_str(), "8080"];
    let reached = wait_for(READY, || {
        let ns = ns.name.clone();
        async move {
            let out = kubectl_exec(&ns, "caller", &nc).ok()?;
            out.output.contains("hello from elsewhere").then_some(())
        }
    })
    .await;
    if reached.is_err() {
        bail!(
            "the governed agent with externalCalls: true cannot reach another Pod: {}",
            kubectl_exec(&ns.name, "caller", &nc)?.output
        );
    }

    let image = node_env("AGENTGOV_TEST_IMAGE_PINNED");
    let mut spec = agentgov_e2e::admission::sandbox_spec(45);
    spec.runtime = Some(RuntimeSpec {
        images: vec![image.clone()],
        mode: Some(RuntimeMode::Managed),
        managed: Some(ManagedRuntime {
            containers: vec![ManagedContainer {
                name: "agent".into(),
                image: image.clone(),
                command: vec!["sleep".into(), "3600".into()],
                ..ManagedContainer::default()
            }],
            ..ManagedRuntime::default()
        }),
    });
    let created = std::time::Instant::now();
    setup.create_agent("runner", spec).await;
    let running = wait_for(READY, || async {
        let list = pods
            .list(&kube::api::ListParams::default().labels("agentgov.dev/agent=runner"))
            .await
            .ok()?;
        list.items.into_iter().find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    })
    .await
    .with_context(|| format!("no managed Pod got Ready:\n{}", setup.operator.logs()))?;
    println!(
        "managed agent: Pod Ready {:.1} s after the Agent was created",
        created.elapsed().as_secs_f64()
    );
    let pod_name = running.metadata.name.clone().context("pod name")?;
    let exec = |command: &[&str]| kubectl_exec(&ns.name, &pod_name, command);

    // Hardened: not root, the root filesystem read-only, /tmp writable.
    ensure!(
        exec(&["id", "-u"])?.output.trim() == "65532",
        "runs as root"
    );
    let write = exec(&["touch", "/written"])?;
    ensure!(
        !write.success && write.output.contains("Read-only file system"),
        "the root filesystem is writable: {}",
        write.output
    );
    ensure!(
        exec(&["touch", "/tmp/scratch"])?.success,
        "/tmp is not writable"
    );
    // The spec as hashed, mounted read-only: its SHA-256 is the hash the Pod is stamped with.
    let mounted = exec(&["cat", "/etc/agentgov/spec.json"])?;
    ensure!(mounted.success, "no mounted spec: {}", mounted.output);
    let deployment = ns.api::<Deployment>().get("agentgov-runner").await?;
    let stamped = deployment
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get("agentgov.dev/spec-hash"))
        .cloned()
        .context("no spec-hash annotation")?;
    ensure!(
        agentgov_api::hash::sha256_hex(mounted.output.as_bytes()) == stamped,
        "the mounted spec does not hash to the stamped {stamped}"
    );
    ensure!(
        !exec(&["touch", "/etc/agentgov/x"])?.success,
        "the approved spec is writable"
    );

    // Contained: the allow-list is reachable. Another Pod labelled for the agent (run by
    // someone else) is contained the same way.
    let reach = |pod: &str| -> Result<bool> {
        let out = kubectl_exec(&ns.name, pod, &["nc", "-w", "2", &server_ip, "8080"])?;
        Ok(out.output.contains("hello from server"))
    };
    let outside = busybox_pod(
        "outside",
        json!({"agentgov.dev/agent": "runner"}),
        &["sleep", "3600"],
    )?;
    run_pod(&pods, &outside, READY).await?;
    ensure!(
        reach(&pod_name)?,
        "the managed Pod cannot reach its allow-list"
    );
    ensure!(
        reach("outside")?,
        "a Pod of the agent cannot reach its allow-list"
    );
    // Anything else is refused on the node (once kube-router has the policy).
    wait_for(READY, || async {
        let out = kubectl_exec(
            &ns.name,
            &pod_name,
            &["nc", "-w", "2", &elsewhere_ip, "8080"],
        )
        .ok()?;
        (!out.output.contains("hello from elsewhere")).then_some(())
    })
    .await
    .context("the contained agent reaches a Pod outside its allow-list")?;
    ensure!(reach(&pod_name)?, "the allow-list must stay reachable");

    // Expired: quarantined. Under `isolate` the outside Pod keeps running, cut off; the
    // managed Pods are gone.
    wait_for(Duration::from_secs(120), || async {
        let policy = policies.get_opt("agentgov-runner").await.ok()??;
        let state = policy.metadata.labels?.get("agentgov.dev/network")?.clone();
        (state == "quarantined").then_some(())
    })
    .await
    .with_context(|| {
        format!(
            "the expired agent was not quarantined:\n{}",
            setup.operator.logs()
        )
    })?;
    wait_for(READY, || async {
        let out = kubectl_exec(&ns.name, "outside", &["nc", "-w", "2", &server_ip, "8080"]).ok()?;
        (!out.output.contains("hello from server")).then_some(())
    })
    .await
    .context("the quarantined agent's Pod still reaches the server")?;
    println!(
        "managed agent: cut off {:.1} s after the Agent was created (ttl 45 s)",
        created.elapsed().as_secs_f64()
    );
    ensure!(
        pods.get_opt("outside").await?.is_some(),
        "isolate must leave the outside Pod running"
    );
    wait_for(READY, || async {
        let list = pods
            .list(
                &kube::api::ListParams::default()
                    .labels("app.kubernetes.io/managed-by=agentgov-operator"),
            )
            .await
            .ok()?;
        list.items.is_empty().then_some(())
    })
    .await
    .context("the expired managed agent's Pods still exist")?;
    Ok(())
}
