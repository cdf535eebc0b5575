use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Value, json};

use super::*;
use crate::pod_security::test_pods::{baseline_pod, set, with};

fn parse(pod: &Value) -> Result<PodView<'_>, serde_json::Error> {
    PodView::deserialize(pod)
}

#[test]
fn reads_the_fields_the_checks_need() {
    let mut pod = baseline_pod();
    set(&mut pod, "/spec/hostNetwork", json!(true));
    set(&mut pod, "/spec/hostUsers", json!(false));
    set(&mut pod, "/spec/os", json!({"name": "windows"}));
    set(
        &mut pod,
        "/spec/securityContext",
        json!({"runAsUser": 0, "sysctls": [{"name": "kernel.msgmax", "value": "1"}],
               "seLinuxOptions": {"type": "spc_t", "level": "s0"}}),
    );
    set(
        &mut pod,
        "/spec/containers/0",
        json!({"name": "app", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}],
               "securityContext": {"privileged": true, "procMount": "Unmasked",
                                   "capabilities": {"add": ["NET_RAW"], "drop": ["ALL"]}},
               "livenessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}},
               "lifecycle": {"preStop": {"tcpSocket": {"host": "h", "port": 1}}}}),
    );
    let view = parse(&pod).unwrap();
    let spec = &view.spec;
    assert!(spec.host_network && !spec.host_pid && !spec.host_ipc);
    assert_eq!(spec.host_users, Some(false));
    assert_eq!(&*spec.os.as_ref().unwrap().name, "windows");
    let sc = spec.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(0));
    assert_eq!(&*sc.sysctls[0].name, "kernel.msgmax");
    assert_eq!(&*sc.se_linux_options.as_ref().unwrap().type_, "spc_t");
    let names: Vec<&str> = spec
        .init_containers
        .iter()
        .chain(&spec.containers)
        .chain(&spec.ephemeral_containers)
        .map(|c| &*c.name)
        .collect();
    assert_eq!(names, ["init", "app", "sidecar", "debug"]);
    let app = &spec.containers[0];
    assert_eq!(app.ports[0].host_port, Some(8080));
    let csc = app.security_context.as_ref().unwrap();
    assert_eq!(csc.privileged, Some(true));
    assert_eq!(csc.proc_mount.as_deref(), Some("Unmasked"));
    assert_eq!(&*csc.capabilities.as_ref().unwrap().add[0], "NET_RAW");
    let probe = app.liveness_probe.as_ref().unwrap();
    assert_eq!(&*probe.http_get.as_ref().unwrap().host, "10.0.0.1");
    let pre_stop = app.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
    assert_eq!(&*pre_stop.tcp_socket.as_ref().unwrap().host, "h");
    assert_eq!(spec.volumes.len(), 1);
    assert!(spec.volumes[0].allowed_source);
}

#[test]
fn strings_borrow_from_the_input_unless_escaped() {
    let text = r#"{"metadata":{"annotations":{
            "container.apparmor.security.beta.kubernetes.io/a":"unconfined",
            "container.apparmor.security.beta.kubernetes.io/b":"local\u0068ost/x"}},
        "spec":{"containers":[{"name":"app"}]}}"#;
    let view: PodView<'_> = serde_json::from_str(text).unwrap();
    assert!(matches!(
        view.spec.containers[0].name.0,
        Cow::Borrowed("app")
    ));
    let annotations = &view.annotations.0;
    assert!(matches!(annotations[0].1.0, Cow::Borrowed("unconfined")));
    assert_eq!(&*annotations[1].1, "localhost/x");
    assert!(matches!(annotations[1].1.0, Cow::Owned(_)));
    // From a parsed JSON value, strings borrow from the value.
    let value: Value = serde_json::from_str(text).unwrap();
    let view = parse(&value).unwrap();
    assert!(matches!(
        view.spec.containers[0].name.0,
        Cow::Borrowed("app")
    ));
}

#[test]
fn keeps_only_the_apparmor_annotations_and_the_last_of_repeated_keys() {
    let text = r#"{"metadata":{"annotations":{
            "team":"x",
            "container.apparmor.security.beta.kubernetes.io/a":"unconfined",
            "container.apparmor.security.beta.kubernetes.io/a":"runtime/default"}}}"#;
    let view: PodView<'_> = serde_json::from_str(text).unwrap();
    assert_eq!(
        view.annotations.0,
        [(
            Str::from("container.apparmor.security.beta.kubernetes.io/a"),
            Str::from("runtime/default")
        )]
    );
}

#[test]
fn null_and_absent_read_as_unset() {
    let pod = json!({
        "metadata": {"annotations": null},
        "spec": {
            "hostNetwork": null, "hostPID": null, "hostIPC": null, "hostUsers": null,
            "securityContext": null, "os": null, "initContainers": null, "volumes": null,
            "ephemeralContainers": null,
            "containers": [{"name": null, "ports": null, "securityContext": {
                "privileged": null, "capabilities": {"add": null, "drop": null},
                "seccompProfile": {"type": null}, "procMount": null, "runAsUser": null}}]
        }
    });
    let view = parse(&pod).unwrap();
    assert!(!view.spec.host_network && view.spec.host_users.is_none());
    assert!(view.spec.security_context.is_none() && view.spec.volumes.is_empty());
    let c = &view.spec.containers[0];
    assert_eq!(&*c.name, "");
    let sc = c.security_context.as_ref().unwrap();
    assert!(sc.privileged.is_none() && sc.proc_mount.is_none());
    assert!(sc.capabilities.as_ref().unwrap().add.is_empty());
    assert_eq!(&*sc.seccomp_profile.as_ref().unwrap().type_, "");

    for empty in [json!({}), json!({"metadata": null, "spec": null})] {
        let view = parse(&empty).unwrap();
        assert!(view.spec.containers.is_empty() && view.annotations.0.is_empty());
    }
}

#[test]
fn a_wrong_json_type_is_an_error() {
    let base = baseline_pod();
    for (pointer, value) in [
        ("/spec/hostNetwork", json!("true")),
        ("/spec/hostUsers", json!(0)),
        ("/spec/containers", json!({})),
        ("/spec/containers/0/name", json!(1)),
        ("/spec/containers/0/securityContext", json!([])),
        ("/spec/containers/0/securityContext", json!("privileged")),
        (
            "/spec/containers/0/securityContext/privileged",
            json!("true"),
        ),
        ("/spec/containers/0/securityContext/runAsUser", json!(1.5)),
        (
            "/spec/containers/0/securityContext/capabilities/add",
            json!("NET_RAW"),
        ),
        (
            "/spec/containers/0/securityContext/capabilities/add",
            json!([null]),
        ),
        (
            "/spec/containers/0/securityContext/seccompProfile/type",
            json!(1),
        ),
        ("/spec/containers/0/securityContext/procMount", json!(false)),
        ("/spec/containers/0/ports", json!([{"hostPort": "80"}])),
        (
            "/spec/containers/0/ports",
            json!([{"hostPort": 4_294_967_296_i64}]),
        ),
        ("/spec/containers/0/ports", json!([[8080]])),
        ("/spec/containers/0/livenessProbe/httpGet", json!([])),
        (
            "/spec/containers/0/livenessProbe/httpGet/host",
            json!(["h"]),
        ),
        ("/spec/securityContext/sysctls", json!({"name": "x"})),
        ("/spec/securityContext/sysctls", json!(["kernel.msgmax"])),
        ("/spec/os", json!("windows")),
        ("/spec/volumes/0/hostPath", json!("/etc")),
        ("/spec/volumes/0/emptyDir", json!([])),
        ("/spec/volumes/0/name", json!(7)),
        ("/spec/volumes", json!([["scratch"]])),
        ("/metadata/annotations", json!(["a"])),
        ("/metadata/annotations/team", json!(1)),
        ("/metadata/annotations/team", json!(null)),
        ("/metadata", json!([])),
        ("/spec", json!([])),
    ] {
        let pod = with(&base, pointer, value.clone());
        assert!(parse(&pod).is_err(), "{pointer} = {value} should not parse");
    }
    assert!(PodView::deserialize(&json!([])).is_err());
}

#[test]
fn annotations_and_spec_parse_apart_and_join() {
    let pod = with(
        &baseline_pod(),
        "/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1app",
        json!("unconfined"),
    );
    let annotations = PodAnnotations::deserialize(&pod["metadata"]["annotations"]).unwrap();
    let spec = PodSecuritySpec::deserialize(&pod["spec"]).unwrap();
    let joined = PodView::new(annotations, spec);
    let whole = parse(&pod).unwrap();
    assert_eq!(joined.annotations, whole.annotations);
    assert_eq!(joined.annotations.0.len(), 1);
    assert_eq!(joined.spec.containers.len(), whole.spec.containers.len());
}

#[test]
fn annotations_insert_keeps_only_what_a_check_reads() {
    let mut annotations = PodAnnotations::default();
    annotations.insert("team".into(), "x".into());
    annotations.insert(
        "container.apparmor.security.beta.kubernetes.io/a".into(),
        "unconfined".into(),
    );
    annotations.insert(
        "container.apparmor.security.beta.kubernetes.io/a".into(),
        "localhost/p".into(),
    );
    assert_eq!(annotations.0.len(), 1);
    assert_eq!(&*annotations.0[0].1, "localhost/p");
}

/// A volume read from an owned value (its strings are copied).
fn volume(value: Value) -> VolumeView<'static> {
    VolumeView::deserialize(value).unwrap()
}

#[test]
fn volumes_record_which_sources_they_set() {
    let v = volume(json!({"name": "a", "emptyDir": {}}));
    assert_eq!(&*v.name, "a");
    assert!(v.allowed_source && !v.host_path && v.restricted_source.is_none());

    let v = volume(json!({"name": "a", "hostPath": {"path": "/"}}));
    assert!(v.host_path && !v.allowed_source);
    assert_eq!(v.restricted_only_source(), Some("hostPath"));

    // A source set to null is not set; a volume that sets none is defaulted to emptyDir.
    for v in [json!({"name": "a"}), json!({"name": "a", "hostPath": null})] {
        let v = volume(v);
        assert!(v.allowed_source && !v.host_path && v.restricted_only_source().is_none());
    }

    // Of several restricted sources, the first in upstream's order is named.
    let v = volume(json!({"name": "a", "nfs": {}, "gitRepo": {}}));
    assert_eq!(v.restricted_only_source(), Some("gitRepo"));

    // An allowed source keeps the volume allowed at restricted, as upstream checks it.
    let v = volume(json!({"name": "a", "secret": {}, "hostPath": {}}));
    assert!(v.host_path && v.allowed_source && v.restricted_only_source().is_none());

    // A key no volume of this version has is a source this policy does not know.
    let v = volume(json!({"name": "a", "futureVolume": {"x": 1}}));
    assert_eq!(v.restricted_only_source(), Some(UNKNOWN_VOLUME_SOURCE));
    let v = volume(json!({"name": "a", "futureVolume": null}));
    assert!(v.restricted_only_source().is_none());
    let v = volume(json!({"name": "a", "awsElasticBlockStore": {}, "futureVolume": 1}));
    assert_eq!(v.restricted_only_source(), Some("awsElasticBlockStore"));
}

#[test]
fn the_volume_source_lists_are_core_v1s() {
    let all: Vec<&str> = ALLOWED_VOLUME_SOURCES
        .iter()
        .chain(&RESTRICTED_VOLUME_SOURCES)
        .copied()
        .collect();
    let mut unique = all.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 30, "core/v1 VolumeSource has 30 sources");
    assert_eq!(unique.len(), all.len());
}
