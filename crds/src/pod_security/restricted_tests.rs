use serde_json::{Value, json};

use crate::pod_security::PodSecurityLevel::{Baseline, Restricted};
use crate::pod_security::test_pods::{
    CONTAINERS, denied, deny, restricted_pod, set, violations, with,
};
use crate::pod_security::{ALLOWED_VOLUME_SOURCES, RESTRICTED_VOLUME_SOURCES};

/// Every container of the restricted base Pod, by pointer and field path.
const ALL_CONTAINERS: [(&str, &str); 4] = [
    ("/spec/initContainers/0", "spec.initContainers[0]"),
    ("/spec/containers/0", "spec.containers[0]"),
    ("/spec/containers/1", "spec.containers[1]"),
    ("/spec/ephemeralContainers/0", "spec.ephemeralContainers[0]"),
];

/// Sets a field below each kind of container in turn; returns (path prefix, what restricted
/// denies).
fn per_container(
    base: &Value,
    field: &str,
    value: Value,
) -> Vec<(String, Vec<(&'static str, String)>)> {
    CONTAINERS
        .iter()
        .map(|(pointer, path, _)| {
            let pod = with(base, &format!("{pointer}/{field}"), value.clone());
            (path.to_string(), denied(Restricted, &pod))
        })
        .collect()
}

fn windows(pod: &Value) -> Value {
    with(pod, "/spec/os", json!({"name": "windows"}))
}

fn user_namespace(pod: &Value) -> Value {
    with(pod, "/spec/hostUsers", json!(false))
}

#[test]
fn allow_privilege_escalation_must_be_false() {
    for bad in [json!(true), Value::Null] {
        for (path, got) in per_container(
            &restricted_pod(),
            "securityContext/allowPrivilegeEscalation",
            bad.clone(),
        ) {
            let field = format!("{path}.securityContext.allowPrivilegeEscalation");
            assert_eq!(got, [deny("allowPrivilegeEscalation", field)], "{bad}");
        }
    }
    // Windows Pods are exempt.
    for (path, got) in per_container(
        &windows(&restricted_pod()),
        "securityContext/allowPrivilegeEscalation",
        json!(true),
    ) {
        assert_eq!(got, [], "{path}");
    }
}

#[test]
fn capabilities_must_drop_all_and_add_at_most_net_bind_service() {
    let base = restricted_pod();
    for ok in [
        json!({"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}),
        json!({"drop": ["NET_RAW", "ALL"]}),
    ] {
        for (path, got) in per_container(&base, "securityContext/capabilities", ok.clone()) {
            assert_eq!(got, [], "{path} {ok}");
        }
    }
    for no_drop_all in [
        json!({"drop": ["NET_RAW"]}),
        json!({}),
        Value::Null,
        json!({"drop": ["all"]}),
    ] {
        for (path, got) in per_container(&base, "securityContext/capabilities", no_drop_all.clone())
        {
            let field = format!("{path}.securityContext.capabilities.drop");
            assert_eq!(
                got,
                [deny("capabilities_restricted", field)],
                "{no_drop_all}"
            );
        }
    }
    // CHOWN is in baseline's default set, not allowed at restricted.
    let bad_add = json!({"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "CHOWN"]});
    for (path, got) in per_container(&base, "securityContext/capabilities", bad_add.clone()) {
        let field = format!("{path}.securityContext.capabilities.add[1]");
        assert_eq!(got, [deny("capabilities_restricted", field)]);
    }
    // Without a securityContext, a container drops nothing.
    let mut pod = base.clone();
    set(&mut pod, "/spec/containers/1/securityContext", Value::Null);
    let got = denied(Restricted, &pod);
    assert!(
        got.contains(&deny(
            "capabilities_restricted",
            "spec.containers[1].securityContext.capabilities.drop"
        )),
        "{got:?}"
    );
    // Windows Pods are exempt, even from baseline's capabilities check, which this one replaces.
    let windows_pod = windows(&with(
        &base,
        "/spec/containers/0/securityContext/capabilities",
        json!({"add": ["SYS_ADMIN"]}),
    ));
    assert_eq!(denied(Restricted, &windows_pod), []);
    assert_eq!(
        denied(Baseline, &windows_pod),
        [deny(
            "capabilities_baseline",
            "spec.containers[0].securityContext.capabilities.add[0]"
        )]
    );
}

#[test]
fn proc_mount_is_not_relaxed_in_a_user_namespace() {
    for base in [restricted_pod(), user_namespace(&restricted_pod())] {
        for (path, got) in per_container(&base, "securityContext/procMount", json!("Unmasked")) {
            let field = format!("{path}.securityContext.procMount");
            assert_eq!(got, [deny("procMount_restricted", field)]);
        }
        for (path, got) in per_container(&base, "securityContext/procMount", json!("Default")) {
            assert_eq!(got, [], "{path}");
        }
    }
}

#[test]
fn volumes_are_limited_to_the_allowed_sources() {
    for source in ALLOWED_VOLUME_SOURCES {
        let pod = with(
            &restricted_pod(),
            "/spec/volumes",
            json!([{"name": "v", source: {}}]),
        );
        assert_eq!(denied(Restricted, &pod), [], "{source}");
    }
    // No source: the API server defaults the volume to emptyDir.
    let pod = with(&restricted_pod(), "/spec/volumes", json!([{"name": "v"}]));
    assert_eq!(denied(Restricted, &pod), []);
    for source in RESTRICTED_VOLUME_SOURCES {
        let volumes = json!([{"name": "ok", "secret": {}}, {"name": "v", source: {}}]);
        let pod = with(&restricted_pod(), "/spec/volumes", volumes);
        assert_eq!(
            denied(Restricted, &pod),
            [deny(
                "restrictedVolumes",
                format!("spec.volumes[1].{source}")
            )],
            "{source}"
        );
    }
    let future = json!([{"name": "v", "futureVolume": {}}]);
    let pod = with(&restricted_pod(), "/spec/volumes", future);
    assert_eq!(
        denied(Restricted, &pod),
        [deny("restrictedVolumes", "spec.volumes[0]")]
    );
}

#[test]
fn a_volume_with_an_allowed_source_passes_restricted_whatever_else_it_sets() {
    // As upstream: restrictedVolumes replaces hostPathVolumes, and looks at the allowed sources
    // first. (The API server refuses a volume with two sources before admission.)
    let volumes = json!([{"name": "v", "secret": {}, "hostPath": {"path": "/"}}]);
    let pod = with(&restricted_pod(), "/spec/volumes", volumes);
    assert_eq!(denied(Restricted, &pod), []);
    assert_eq!(
        denied(Baseline, &pod),
        [deny("hostPathVolumes", "spec.volumes[0].hostPath")]
    );
}

#[test]
fn run_as_non_root_at_pod_level_covers_containers_that_leave_it_unset() {
    let base = restricted_pod();
    // Every container sets true and the Pod leaves it unset: allowed.
    let mut all_set = with(&base, "/spec/securityContext/runAsNonRoot", Value::Null);
    for (pointer, _) in ALL_CONTAINERS {
        set(
            &mut all_set,
            &format!("{pointer}/securityContext/runAsNonRoot"),
            json!(true),
        );
    }
    assert_eq!(denied(Restricted, &all_set), []);
    // One container leaves it unset: that container is denied.
    for (pointer, path) in ALL_CONTAINERS {
        let pod = with(
            &all_set,
            &format!("{pointer}/securityContext/runAsNonRoot"),
            Value::Null,
        );
        let field = format!("{path}.securityContext.runAsNonRoot");
        assert_eq!(denied(Restricted, &pod), [deny("runAsNonRoot", field)]);
    }
    // Pod-level false is denied even if every container sets true.
    let pod = with(&all_set, "/spec/securityContext/runAsNonRoot", json!(false));
    assert_eq!(
        denied(Restricted, &pod),
        [deny("runAsNonRoot", "spec.securityContext.runAsNonRoot")]
    );
    // A container's false is denied even under a Pod-level true.
    for (path, got) in per_container(&base, "securityContext/runAsNonRoot", json!(false)) {
        assert_eq!(
            got,
            [deny(
                "runAsNonRoot",
                format!("{path}.securityContext.runAsNonRoot")
            )]
        );
    }
    // Nobody sets it: every container is denied.
    let pod = with(&base, "/spec/securityContext/runAsNonRoot", Value::Null);
    assert_eq!(violations(Restricted, &pod).len(), ALL_CONTAINERS.len());
    // A user namespace exempts the Pod; Windows does not.
    let pod_false = with(&base, "/spec/securityContext/runAsNonRoot", json!(false));
    assert_eq!(denied(Restricted, &user_namespace(&pod_false)), []);
    assert_eq!(
        denied(Restricted, &windows(&pod_false)).len(),
        1 + ALL_CONTAINERS.len()
    );
}

#[test]
fn run_as_user_is_never_root() {
    let base = restricted_pod();
    let pod = with(&base, "/spec/securityContext/runAsUser", json!(0));
    assert_eq!(
        denied(Restricted, &pod),
        [deny("runAsUser", "spec.securityContext.runAsUser")]
    );
    assert_eq!(denied(Restricted, &user_namespace(&pod)), []);
    assert_eq!(denied(Baseline, &pod), []);
    for (path, got) in per_container(&base, "securityContext/runAsUser", json!(0)) {
        assert_eq!(
            got,
            [deny(
                "runAsUser",
                format!("{path}.securityContext.runAsUser")
            )]
        );
    }
    for (path, got) in per_container(&pod, "securityContext/runAsUser", json!(1000)) {
        // A container's non-zero user does not excuse the Pod's 0.
        assert_eq!(
            got,
            [deny("runAsUser", "spec.securityContext.runAsUser")],
            "{path}"
        );
    }
    for (path, got) in per_container(&base, "securityContext/runAsUser", json!(1000)) {
        assert_eq!(got, [], "{path}");
    }
}

#[test]
fn seccomp_profile_is_required_at_pod_or_container_level() {
    let base = restricted_pod();
    let pod_level = "/spec/securityContext/seccompProfile";
    assert_eq!(
        denied(
            Restricted,
            &with(
                &base,
                pod_level,
                json!({"type": "Localhost", "localhostProfile": "p"})
            )
        ),
        []
    );
    // No profile anywhere: every container is denied.
    let none = with(&base, pod_level, Value::Null);
    let got = denied(Restricted, &none);
    let expected: Vec<_> = ALL_CONTAINERS
        .iter()
        .map(|(_, path)| {
            deny(
                "seccompProfile_restricted",
                format!("{path}.securityContext.seccompProfile"),
            )
        })
        .collect();
    assert_eq!(got, expected);
    // Every container sets one: allowed.
    let mut all_set = none.clone();
    for (pointer, _) in ALL_CONTAINERS {
        set(
            &mut all_set,
            &format!("{pointer}/securityContext/seccompProfile"),
            json!({"type": "RuntimeDefault"}),
        );
    }
    assert_eq!(denied(Restricted, &all_set), []);
    // A bad Pod-level profile is denied even if every container sets a good one.
    let pod = with(&all_set, pod_level, json!({"type": "Unconfined"}));
    assert_eq!(
        denied(Restricted, &pod),
        [deny(
            "seccompProfile_restricted",
            "spec.securityContext.seccompProfile.type"
        )]
    );
    // A bad container profile is denied under a good Pod-level one.
    for (path, got) in per_container(
        &base,
        "securityContext/seccompProfile",
        json!({"type": "Unconfined"}),
    ) {
        let field = format!("{path}.securityContext.seccompProfile.type");
        assert_eq!(got, [deny("seccompProfile_restricted", field)]);
    }
    // Windows Pods are exempt.
    assert_eq!(denied(Restricted, &windows(&none)), []);
}

#[test]
fn restricted_runs_the_baseline_checks_it_does_not_replace() {
    let mut pod = restricted_pod();
    for (pointer, value) in [
        ("/spec/hostNetwork", json!(true)),
        (
            "/spec/containers/0/ports",
            json!([{"containerPort": 80, "hostPort": 80}]),
        ),
        ("/spec/containers/0/securityContext/privileged", json!(true)),
        (
            "/spec/containers/0/securityContext/seLinuxOptions",
            json!({"user": "u"}),
        ),
        (
            "/spec/securityContext/sysctls",
            json!([{"name": "kernel.msgmax", "value": "1"}]),
        ),
        (
            "/spec/securityContext/windowsOptions",
            json!({"hostProcess": true}),
        ),
        (
            "/spec/containers/0/readinessProbe",
            json!({"tcpSocket": {"host": "h", "port": 1}}),
        ),
        (
            "/spec/containers/0/securityContext/appArmorProfile",
            json!({"type": "Unconfined"}),
        ),
    ] {
        set(&mut pod, pointer, value);
    }
    let checks: Vec<&str> = violations(Restricted, &pod)
        .iter()
        .map(|v| v.check)
        .collect();
    assert_eq!(
        checks,
        [
            "appArmorProfile",
            "hostNamespaces",
            "hostPorts",
            "hostProbesAndHostLifecycle",
            "privileged",
            "seLinuxOptions",
            "sysctls",
            "windowsHostProcess",
        ]
    );
}
