use serde_json::{Value, json};

use crate::pod_security::PodSecurityLevel::{Baseline, Restricted};
use crate::pod_security::test_pods::{
    CONTAINERS, baseline_pod, denied, deny, restricted_pod, with,
};

/// Sets `field` (a pointer below `securityContext`) to `value` in each kind of container in turn
/// and returns, per container, its field path prefix and what baseline denies.
fn per_container(
    base: &Value,
    field: &str,
    value: Value,
) -> Vec<(String, Vec<(&'static str, String)>)> {
    CONTAINERS
        .iter()
        .map(|(pointer, path, _)| {
            let pod = with(base, &format!("{pointer}/{field}"), value.clone());
            (path.to_string(), denied(Baseline, &pod))
        })
        .collect()
}

fn assert_each_container_denied(check: &'static str, field: &str, value: Value, path_field: &str) {
    for (path, got) in per_container(&baseline_pod(), field, value.clone()) {
        assert_eq!(
            got,
            [deny(check, format!("{path}.{path_field}"))],
            "{field} = {value}"
        );
    }
}

fn assert_each_container_allowed(field: &str, value: Value) {
    for (path, got) in per_container(&baseline_pod(), field, value.clone()) {
        assert_eq!(got, [], "{path}.{field} = {value}");
    }
}

#[test]
fn app_armor_profile_types() {
    for allowed in ["RuntimeDefault", "Localhost"] {
        let pod = with(
            &baseline_pod(),
            "/spec/securityContext/appArmorProfile",
            json!({"type": allowed}),
        );
        assert_eq!(denied(Baseline, &pod), []);
        assert_each_container_allowed("securityContext/appArmorProfile", json!({"type": allowed}));
    }
    for bad in [
        json!({"type": "Unconfined"}),
        json!({}),
        json!({"type": "runtime/default"}),
    ] {
        let pod = with(
            &baseline_pod(),
            "/spec/securityContext/appArmorProfile",
            bad.clone(),
        );
        assert_eq!(
            denied(Baseline, &pod),
            [deny(
                "appArmorProfile",
                "spec.securityContext.appArmorProfile.type"
            )]
        );
        assert_each_container_denied(
            "appArmorProfile",
            "securityContext/appArmorProfile",
            bad,
            "securityContext.appArmorProfile.type",
        );
    }
}

#[test]
fn app_armor_annotations() {
    const KEY: &str = "/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1app";
    for allowed in ["runtime/default", "localhost/my-profile", ""] {
        let pod = with(&baseline_pod(), KEY, json!(allowed));
        assert_eq!(denied(Baseline, &pod), [], "{allowed:?}");
        assert_eq!(
            denied(Restricted, &with(&restricted_pod(), KEY, json!(allowed))),
            []
        );
    }
    for bad in ["unconfined", "docker/default", "Localhost", "localhost"] {
        let pod = with(&baseline_pod(), KEY, json!(bad));
        let field = "metadata.annotations[container.apparmor.security.beta.kubernetes.io/app]";
        assert_eq!(
            denied(Baseline, &pod),
            [deny("appArmorProfile", field)],
            "{bad:?}"
        );
        assert_eq!(
            denied(Restricted, &with(&restricted_pod(), KEY, json!(bad))),
            [deny("appArmorProfile", field)]
        );
    }
    // Any container name counts, even one the Pod does not have; other annotations do not.
    let unknown = "/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1nope";
    assert_eq!(
        denied(
            Baseline,
            &with(&baseline_pod(), unknown, json!("unconfined"))
        )
        .len(),
        1
    );
    let other = "/metadata/annotations/apparmor.security.beta.kubernetes.io~1app";
    assert_eq!(
        denied(Baseline, &with(&baseline_pod(), other, json!("unconfined"))),
        []
    );
}

#[test]
fn capabilities_baseline_allows_only_the_default_set() {
    let defaults = [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    assert_each_container_allowed("securityContext/capabilities", json!({"add": defaults}));
    assert_each_container_allowed(
        "securityContext/capabilities",
        json!({"drop": ["ALL"], "add": []}),
    );
    for bad in ["NET_RAW", "SYS_ADMIN", "chown", "CAP_CHOWN", "ALL"] {
        assert_each_container_denied(
            "capabilities_baseline",
            "securityContext/capabilities",
            json!({"add": ["CHOWN", bad]}),
            "securityContext.capabilities.add[1]",
        );
    }
}

#[test]
fn host_namespaces() {
    for (key, field) in [
        ("hostNetwork", "spec.hostNetwork"),
        ("hostPID", "spec.hostPID"),
        ("hostIPC", "spec.hostIPC"),
    ] {
        let pointer = format!("/spec/{key}");
        let pod = with(&baseline_pod(), &pointer, json!(true));
        assert_eq!(denied(Baseline, &pod), [deny("hostNamespaces", field)]);
        let pod = with(&restricted_pod(), &pointer, json!(true));
        assert_eq!(denied(Restricted, &pod), [deny("hostNamespaces", field)]);
        for allowed in [json!(false), Value::Null] {
            assert_eq!(
                denied(Baseline, &with(&baseline_pod(), &pointer, allowed)),
                []
            );
        }
    }
}

#[test]
fn host_path_volumes() {
    let pod = with(
        &baseline_pod(),
        "/spec/volumes",
        json!([{"name": "scratch", "emptyDir": {}}, {"name": "etc", "hostPath": {"path": "/etc"}}]),
    );
    assert_eq!(
        denied(Baseline, &pod),
        [deny("hostPathVolumes", "spec.volumes[1].hostPath")]
    );
    let other_sources = json!([{"name": "a", "nfs": {"server": "s", "path": "/"}},
                               {"name": "b", "hostPath": null}, {"name": "c"}]);
    assert_eq!(
        denied(
            Baseline,
            &with(&baseline_pod(), "/spec/volumes", other_sources)
        ),
        []
    );
}

#[test]
fn host_ports() {
    for allowed in [
        json!([{"containerPort": 80}]),
        json!([{"containerPort": 80, "hostPort": 0}]),
    ] {
        assert_each_container_allowed("ports", allowed);
    }
    for bad in [8080, -1] {
        assert_each_container_denied(
            "hostPorts",
            "ports",
            json!([{"containerPort": 80}, {"containerPort": 81, "hostPort": bad}]),
            "ports[1].hostPort",
        );
    }
}

#[test]
fn host_probes_and_lifecycle_hooks() {
    let handlers = [
        ("livenessProbe", "livenessProbe"),
        ("readinessProbe", "readinessProbe"),
        ("startupProbe", "startupProbe"),
        ("lifecycle/postStart", "lifecycle.postStart"),
        ("lifecycle/preStop", "lifecycle.preStop"),
    ];
    for (pointer, path) in handlers {
        for action in ["httpGet", "tcpSocket"] {
            let field = format!("{pointer}/{action}");
            assert_each_container_allowed(&field, json!({"port": 80}));
            assert_each_container_allowed(&field, json!({"port": 80, "host": ""}));
            assert_each_container_denied(
                "hostProbesAndHostLifecycle",
                &field,
                json!({"port": 80, "host": "10.0.0.1"}),
                &format!("{path}.{action}.host"),
            );
        }
    }
    assert_each_container_allowed("livenessProbe", json!({"exec": {"command": ["true"]}}));
}

#[test]
fn privileged() {
    for allowed in [json!(false), Value::Null] {
        assert_each_container_allowed("securityContext/privileged", allowed);
    }
    assert_each_container_denied(
        "privileged",
        "securityContext/privileged",
        json!(true),
        "securityContext.privileged",
    );
}

#[test]
fn proc_mount_is_relaxed_in_a_user_namespace_at_baseline_only() {
    assert_each_container_allowed("securityContext/procMount", json!("Default"));
    for bad in ["Unmasked", ""] {
        assert_each_container_denied(
            "procMount",
            "securityContext/procMount",
            json!(bad),
            "securityContext.procMount",
        );
    }
    let user_ns = with(&baseline_pod(), "/spec/hostUsers", json!(false));
    for (path, got) in per_container(&user_ns, "securityContext/procMount", json!("Unmasked")) {
        assert_eq!(got, [], "{path}");
    }
    let host_users = with(&baseline_pod(), "/spec/hostUsers", json!(true));
    for (path, got) in per_container(&host_users, "securityContext/procMount", json!("Unmasked")) {
        assert_eq!(
            got,
            [deny(
                "procMount",
                format!("{path}.securityContext.procMount")
            )]
        );
    }
}

#[test]
fn se_linux_options() {
    let pod_level = "/spec/securityContext/seLinuxOptions";
    for allowed in [
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    ] {
        let opts = json!({"type": allowed, "level": "s0:c1,c2"});
        assert_eq!(
            denied(Baseline, &with(&baseline_pod(), pod_level, opts.clone())),
            []
        );
        assert_each_container_allowed("securityContext/seLinuxOptions", opts);
    }
    for (opts, field) in [
        (json!({"type": "spc_t"}), "type"),
        (json!({"user": "system_u"}), "user"),
        (json!({"role": "system_r"}), "role"),
    ] {
        assert_eq!(
            denied(Baseline, &with(&baseline_pod(), pod_level, opts.clone())),
            [deny(
                "seLinuxOptions",
                format!("spec.securityContext.seLinuxOptions.{field}")
            )]
        );
        assert_each_container_denied(
            "seLinuxOptions",
            "securityContext/seLinuxOptions",
            opts,
            &format!("securityContext.seLinuxOptions.{field}"),
        );
    }
    let all_bad = json!({"type": "spc_t", "user": "u", "role": "r"});
    assert_eq!(
        denied(Baseline, &with(&baseline_pod(), pod_level, all_bad)).len(),
        3
    );
}

#[test]
fn seccomp_profile_baseline() {
    let pod_level = "/spec/securityContext/seccompProfile";
    for allowed in [
        json!({"type": "RuntimeDefault"}),
        json!({"type": "Localhost", "localhostProfile": "p"}),
    ] {
        assert_eq!(
            denied(Baseline, &with(&baseline_pod(), pod_level, allowed.clone())),
            []
        );
        assert_each_container_allowed("securityContext/seccompProfile", allowed);
    }
    for bad in [json!({"type": "Unconfined"}), json!({})] {
        assert_eq!(
            denied(Baseline, &with(&baseline_pod(), pod_level, bad.clone())),
            [deny(
                "seccompProfile_baseline",
                "spec.securityContext.seccompProfile.type"
            )]
        );
        assert_each_container_denied(
            "seccompProfile_baseline",
            "securityContext/seccompProfile",
            bad,
            "securityContext.seccompProfile.type",
        );
    }
}

#[test]
fn sysctls_allows_exactly_the_safe_set_of_latest() {
    let safe = [
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        "net.ipv4.tcp_slow_start_after_idle",
        "net.ipv4.tcp_notsent_lowat",
    ];
    let all: Vec<Value> = safe
        .iter()
        .map(|name| json!({"name": name, "value": "1"}))
        .collect();
    assert_eq!(
        denied(
            Baseline,
            &with(&baseline_pod(), "/spec/securityContext/sysctls", json!(all))
        ),
        []
    );
    for bad in [
        "kernel.msgmax",
        "net.core.somaxconn",
        "net.ipv4.tcp_keepalive_time.x",
        "",
    ] {
        let sysctls =
            json!([{"name": "net.ipv4.tcp_rmem", "value": "1"}, {"name": bad, "value": "1"}]);
        let pod = with(&baseline_pod(), "/spec/securityContext/sysctls", sysctls);
        assert_eq!(
            denied(Baseline, &pod),
            [deny("sysctls", "spec.securityContext.sysctls[1].name")]
        );
    }
}

#[test]
fn windows_host_process() {
    let pod_level = "/spec/securityContext/windowsOptions/hostProcess";
    assert_eq!(
        denied(Baseline, &with(&baseline_pod(), pod_level, json!(true))),
        [deny(
            "windowsHostProcess",
            "spec.securityContext.windowsOptions.hostProcess"
        )]
    );
    assert_eq!(
        denied(Baseline, &with(&baseline_pod(), pod_level, json!(false))),
        []
    );
    assert_each_container_denied(
        "windowsHostProcess",
        "securityContext/windowsOptions",
        json!({"hostProcess": true}),
        "securityContext.windowsOptions.hostProcess",
    );
    assert_each_container_allowed(
        "securityContext/windowsOptions",
        json!({"hostProcess": false}),
    );
}

#[test]
fn every_offending_field_is_reported_in_check_order() {
    let mut pod = baseline_pod();
    for (pointer, value) in [
        ("/spec/hostPID", json!(true)),
        ("/spec/containers/0/securityContext/privileged", json!(true)),
        (
            "/spec/initContainers/0/securityContext/privileged",
            json!(true),
        ),
        (
            "/spec/containers/1/securityContext/capabilities/add",
            json!(["NET_RAW"]),
        ),
    ] {
        crate::pod_security::test_pods::set(&mut pod, pointer, value);
    }
    assert_eq!(
        denied(Baseline, &pod),
        [
            deny(
                "capabilities_baseline",
                "spec.containers[1].securityContext.capabilities.add[0]"
            ),
            deny("hostNamespaces", "spec.hostPID"),
            deny(
                "privileged",
                "spec.initContainers[0].securityContext.privileged"
            ),
            deny(
                "privileged",
                "spec.containers[0].securityContext.privileged"
            ),
        ]
    );
}
