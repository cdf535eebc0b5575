//! The baseline checks, as upstream's `policy/check_*.go` define them at latest (v1.37). Each
//! reports one violation per offending field.

use super::view::{
    APPARMOR_ANNOTATION_PREFIX, HandlerView, PodSecurityContextView, ProfileView,
    SeLinuxOptionsView, SecurityContextView,
};
use super::{List, PodView, Quoted, Sink, containers, in_user_namespace};

/// Capabilities a container may add at baseline (the container runtime's default set).
const DEFAULT_CAPABILITIES: [&str; 13] = [
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

/// SELinux types allowed at latest (`container_engine_t` since 1.31).
const SELINUX_TYPES: [&str; 5] = [
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// The "safe" sysctls at latest (v1.37).
const SAFE_SYSCTLS: [&str; 14] = [
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

/// The seccomp and AppArmor profile types allowed wherever one is set.
const PROFILE_TYPES: [&str; 2] = ["RuntimeDefault", "Localhost"];
pub(super) const PROFILE_TYPES_TEXT: Quoted<'static> = Quoted(&PROFILE_TYPES);

/// A seccomp or AppArmor profile of an allowed type.
pub(super) fn allowed_profile(profile: &ProfileView<'_>) -> bool {
    PROFILE_TYPES.contains(&&*profile.type_)
}

/// A profile field of a securityContext, at pod or container level.
#[derive(Clone, Copy)]
enum Profile {
    Seccomp,
    AppArmor,
}

impl Profile {
    fn field(self) -> &'static str {
        match self {
            Profile::Seccomp => "seccompProfile",
            Profile::AppArmor => "appArmorProfile",
        }
    }

    fn of_pod<'p, 'a>(self, sc: &'p PodSecurityContextView<'a>) -> Option<&'p ProfileView<'a>> {
        match self {
            Profile::Seccomp => sc.seccomp_profile.as_ref(),
            Profile::AppArmor => sc.app_armor_profile.as_ref(),
        }
    }

    fn of_container<'p, 'a>(self, sc: &'p SecurityContextView<'a>) -> Option<&'p ProfileView<'a>> {
        match self {
            Profile::Seccomp => sc.seccomp_profile.as_ref(),
            Profile::AppArmor => sc.app_armor_profile.as_ref(),
        }
    }
}

/// Every profile of this kind that is set, at pod or container level, has an allowed type.
fn set_profiles_allowed(pod: &PodView<'_>, sink: &mut Sink<'_>, profile: Profile) {
    let field = profile.field();
    let pod_sc = pod.spec.security_context.as_ref();
    if let Some(set) = pod_sc.and_then(|sc| profile.of_pod(sc))
        && !allowed_profile(set)
    {
        sink.deny(
            format_args!("spec.securityContext.{field}.type"),
            format_args!(
                "is {:?}; allowed: {PROFILE_TYPES_TEXT} or unset",
                &*set.type_
            ),
        );
    }
    for (at, c) in containers(&pod.spec) {
        let sc = c.security_context.as_ref();
        if let Some(set) = sc.and_then(|sc| profile.of_container(sc))
            && !allowed_profile(set)
        {
            sink.deny(
                format_args!("{at}.securityContext.{field}.type"),
                format_args!(
                    "is {:?} (container {:?}); allowed: {PROFILE_TYPES_TEXT} or unset",
                    &*set.type_, at.name
                ),
            );
        }
    }
}

/// `appArmorProfile`: the profile type, at pod and container level, and the deprecated
/// per-container annotations, must not be unconfined (or anything but the runtime's default or a
/// localhost profile).
pub(super) fn app_armor_profile(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    let allowed_annotation = |value: &str| {
        value.is_empty() || value == "runtime/default" || value.starts_with("localhost/")
    };
    set_profiles_allowed(pod, sink, Profile::AppArmor);
    for (key, value) in &pod.annotations.0 {
        if key.starts_with(APPARMOR_ANNOTATION_PREFIX) && !allowed_annotation(value) {
            sink.deny(
                format_args!("metadata.annotations[{key}]"),
                format_args!(
                    "is {:?}; allowed: \"runtime/default\", \"localhost/<profile>\" or empty",
                    &**value
                ),
            );
        }
    }
}

/// `capabilities_baseline`: containers may add only capabilities of the default set.
pub(super) fn capabilities(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    for (at, c) in containers(&pod.spec) {
        let caps = c
            .security_context
            .as_ref()
            .and_then(|sc| sc.capabilities.as_ref());
        for (i, cap) in caps.iter().flat_map(|caps| caps.add.iter().enumerate()) {
            if !DEFAULT_CAPABILITIES.contains(&&**cap) {
                sink.deny(
                    format_args!("{at}.securityContext.capabilities.add[{i}]"),
                    format_args!(
                        "is {:?} (container {:?}); allowed: {} or none",
                        &**cap,
                        at.name,
                        List(&DEFAULT_CAPABILITIES)
                    ),
                );
            }
        }
    }
}

/// `hostNamespaces`: no host network, PID or IPC namespace.
pub(super) fn host_namespaces(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    for (set, field) in [
        (pod.spec.host_network, "spec.hostNetwork"),
        (pod.spec.host_pid, "spec.hostPID"),
        (pod.spec.host_ipc, "spec.hostIPC"),
    ] {
        if set {
            sink.deny(field, format_args!("is true; allowed: false or unset"));
        }
    }
}

/// `hostPathVolumes`: no hostPath volume.
pub(super) fn host_path_volumes(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    for (i, volume) in pod.spec.volumes.iter().enumerate() {
        if volume.host_path {
            sink.deny(
                format_args!("spec.volumes[{i}].hostPath"),
                format_args!("is set (volume {:?}); allowed: unset", &*volume.name),
            );
        }
    }
}

/// `hostPorts`: no container port bound on the host.
pub(super) fn host_ports(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    for (at, c) in containers(&pod.spec) {
        for (i, port) in c.ports.iter().enumerate() {
            if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
                sink.deny(
                    format_args!("{at}.ports[{i}].hostPort"),
                    format_args!(
                        "is {host_port} (container {:?}); allowed: 0 or unset",
                        at.name
                    ),
                );
            }
        }
    }
}

/// `hostProbesAndHostLifecycle`: probes and lifecycle handlers may not name a host (they reach
/// the Pod's own IP).
pub(super) fn host_probes_and_lifecycle(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    for (at, c) in containers(&pod.spec) {
        let lifecycle = c.lifecycle.as_ref();
        let handlers: [(&str, Option<&HandlerView<'_>>); 5] = [
            ("livenessProbe", c.liveness_probe.as_ref()),
            ("readinessProbe", c.readiness_probe.as_ref()),
            ("startupProbe", c.startup_probe.as_ref()),
            (
                "lifecycle.postStart",
                lifecycle.and_then(|l| l.post_start.as_ref()),
            ),
            (
                "lifecycle.preStop",
                lifecycle.and_then(|l| l.pre_stop.as_ref()),
            ),
        ];
        for (name, handler) in handlers {
            let Some(handler) = handler else { continue };
            for (action, host) in [
                ("httpGet", handler.http_get.as_ref()),
                ("tcpSocket", handler.tcp_socket.as_ref()),
            ] {
                if let Some(host) = host.filter(|h| !h.host.is_empty()) {
                    sink.deny(
                        format_args!("{at}.{name}.{action}.host"),
                        format_args!(
                            "is {:?} (container {:?}); allowed: empty or unset",
                            &*host.host, at.name
                        ),
                    );
                }
            }
        }
    }
}

/// `privileged`: no privileged container.
pub(super) fn privileged(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    for (at, c) in containers(&pod.spec) {
        if c.security_context.as_ref().and_then(|sc| sc.privileged) == Some(true) {
            sink.deny(
                format_args!("{at}.securityContext.privileged"),
                format_args!("is true (container {:?}); allowed: false or unset", at.name),
            );
        }
    }
}

/// `procMount` (baseline): the default /proc masks, unless the Pod has its own user namespace.
pub(super) fn proc_mount(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    if !in_user_namespace(&pod.spec) {
        default_proc_mount(pod, sink);
    }
}

/// The default /proc masks in every container (`procMount` unset or `Default`).
pub(super) fn default_proc_mount(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    for (at, c) in containers(&pod.spec) {
        let proc_mount = c
            .security_context
            .as_ref()
            .and_then(|sc| sc.proc_mount.as_ref());
        if let Some(proc_mount) = proc_mount.filter(|p| &***p != "Default") {
            sink.deny(
                format_args!("{at}.securityContext.procMount"),
                format_args!(
                    "is {:?} (container {:?}); allowed: \"Default\" or unset",
                    &**proc_mount, at.name
                ),
            );
        }
    }
}

/// `seLinuxOptions`: the type only from the container types, no user, no role.
pub(super) fn se_linux_options(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    fn check(
        sink: &mut Sink<'_>,
        prefix: std::fmt::Arguments<'_>,
        container: Option<&str>,
        opts: &SeLinuxOptionsView<'_>,
    ) {
        let who = Who(container);
        if !SELINUX_TYPES.contains(&&*opts.type_) {
            sink.deny(
                format_args!("{prefix}.securityContext.seLinuxOptions.type"),
                format_args!(
                    "is {:?}{who}; allowed: {}, empty or unset",
                    &*opts.type_,
                    Quoted(&SELINUX_TYPES[1..])
                ),
            );
        }
        for (field, value) in [("user", &opts.user), ("role", &opts.role)] {
            if !value.is_empty() {
                sink.deny(
                    format_args!("{prefix}.securityContext.seLinuxOptions.{field}"),
                    format_args!("is {:?}{who}; allowed: empty or unset", &**value),
                );
            }
        }
    }
    let pod_sc = pod.spec.security_context.as_ref();
    if let Some(opts) = pod_sc.and_then(|sc| sc.se_linux_options.as_ref()) {
        check(sink, format_args!("spec"), None, opts);
    }
    for (at, c) in containers(&pod.spec) {
        let sc = c.security_context.as_ref();
        if let Some(opts) = sc.and_then(|sc| sc.se_linux_options.as_ref()) {
            check(sink, format_args!("{at}"), Some(at.name), opts);
        }
    }
}

/// `seccompProfile_baseline`: a seccomp profile, where set, must not be unconfined.
pub(super) fn seccomp_profile(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    set_profiles_allowed(pod, sink, Profile::Seccomp);
}

/// `sysctls`: only the safe (namespaced, isolated) sysctls.
pub(super) fn sysctls(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    let Some(sc) = pod.spec.security_context.as_ref() else {
        return;
    };
    for (i, sysctl) in sc.sysctls.iter().enumerate() {
        if !SAFE_SYSCTLS.contains(&&*sysctl.name) {
            sink.deny(
                format_args!("spec.securityContext.sysctls[{i}].name"),
                format_args!("is {:?}; allowed: {}", &*sysctl.name, List(&SAFE_SYSCTLS)),
            );
        }
    }
}

/// `windowsHostProcess`: no Windows host process, at pod or container level.
pub(super) fn windows_host_process(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    let pod_sc = pod.spec.security_context.as_ref();
    if pod_sc
        .and_then(|sc| sc.windows_options.as_ref())
        .and_then(|w| w.host_process)
        == Some(true)
    {
        sink.deny(
            "spec.securityContext.windowsOptions.hostProcess",
            format_args!("is true; allowed: false or unset"),
        );
    }
    for (at, c) in containers(&pod.spec) {
        let sc = c.security_context.as_ref();
        if sc
            .and_then(|sc| sc.windows_options.as_ref())
            .and_then(|w| w.host_process)
            == Some(true)
        {
            sink.deny(
                format_args!("{at}.securityContext.windowsOptions.hostProcess"),
                format_args!("is true (container {:?}); allowed: false or unset", at.name),
            );
        }
    }
}

/// In a message, ` (container "name")` after a container's value; nothing after the Pod's.
pub(super) struct Who<'s>(pub Option<&'s str>);

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(name) => write!(f, " (container {name:?})"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "baseline_tests.rs"]
mod tests;
