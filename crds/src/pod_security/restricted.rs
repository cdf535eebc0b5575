//! The restricted checks, as upstream's `policy/check_*.go` define them at latest (v1.37). The
//! restricted level also runs the baseline checks these do not replace (see the module root).

use super::baseline::{PROFILE_TYPES_TEXT, allowed_profile, default_proc_mount};
use super::view::{ALLOWED_VOLUME_SOURCES, UNKNOWN_VOLUME_SOURCE};
use super::{List, PodView, Sink, containers, in_user_namespace, is_windows};

/// `allowPrivilegeEscalation`: every container sets it to false (Windows Pods exempt).
pub(super) fn allow_privilege_escalation(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    if is_windows(&pod.spec) {
        return;
    }
    for (at, c) in containers(&pod.spec) {
        let value = c
            .security_context
            .as_ref()
            .and_then(|sc| sc.allow_privilege_escalation);
        if value != Some(false) {
            sink.deny(
                format_args!("{at}.securityContext.allowPrivilegeEscalation"),
                format_args!(
                    "is {} (container {:?}); allowed: false",
                    if value.is_some() { "true" } else { "unset" },
                    at.name
                ),
            );
        }
    }
}

/// `capabilities_restricted`: every container drops ALL and adds nothing but NET_BIND_SERVICE
/// (Windows Pods exempt).
pub(super) fn capabilities(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    if is_windows(&pod.spec) {
        return;
    }
    for (at, c) in containers(&pod.spec) {
        let caps = c
            .security_context
            .as_ref()
            .and_then(|sc| sc.capabilities.as_ref());
        if !caps.is_some_and(|caps| caps.drop.iter().any(|cap| &**cap == "ALL")) {
            sink.deny(
                format_args!("{at}.securityContext.capabilities.drop"),
                format_args!(
                    "does not include \"ALL\" (container {:?}); allowed: a list that includes \
                     \"ALL\"",
                    at.name
                ),
            );
        }
        for (i, cap) in caps.iter().flat_map(|caps| caps.add.iter().enumerate()) {
            if &**cap != "NET_BIND_SERVICE" {
                sink.deny(
                    format_args!("{at}.securityContext.capabilities.add[{i}]"),
                    format_args!(
                        "is {:?} (container {:?}); allowed: NET_BIND_SERVICE or none",
                        &**cap, at.name
                    ),
                );
            }
        }
    }
}

/// `procMount_restricted`: the default /proc masks, even in a user namespace.
pub(super) fn proc_mount(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    default_proc_mount(pod, sink);
}

/// `restrictedVolumes`: only the volume sources in [`ALLOWED_VOLUME_SOURCES`].
pub(super) fn volumes(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    for (i, volume) in pod.spec.volumes.iter().enumerate() {
        let Some(source) = volume.restricted_only_source() else {
            continue;
        };
        if source == UNKNOWN_VOLUME_SOURCE {
            sink.deny(
                format_args!("spec.volumes[{i}]"),
                format_args!(
                    "sets a volume source this policy does not know (volume {:?}); allowed: {}",
                    &*volume.name,
                    List(&ALLOWED_VOLUME_SOURCES)
                ),
            );
        } else {
            sink.deny(
                format_args!("spec.volumes[{i}].{source}"),
                format_args!(
                    "is set (volume {:?}); allowed volume sources: {}",
                    &*volume.name,
                    List(&ALLOWED_VOLUME_SOURCES)
                ),
            );
        }
    }
}

/// `runAsNonRoot`: true for every container, set on it or inherited from the Pod; a Pod-level
/// false is a violation even if every container sets true. Pods in a user namespace are exempt.
pub(super) fn run_as_non_root(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    if in_user_namespace(&pod.spec) {
        return;
    }
    let pod_value = pod
        .spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.run_as_non_root);
    if pod_value == Some(false) {
        sink.deny(
            "spec.securityContext.runAsNonRoot",
            format_args!("is false; allowed: true, or unset if every container sets true"),
        );
    }
    for (at, c) in containers(&pod.spec) {
        match c
            .security_context
            .as_ref()
            .and_then(|sc| sc.run_as_non_root)
        {
            Some(true) => {}
            Some(false) => sink.deny(
                format_args!("{at}.securityContext.runAsNonRoot"),
                format_args!("is false (container {:?}); allowed: true", at.name),
            ),
            None if pod_value == Some(true) => {}
            None => sink.deny(
                format_args!("{at}.securityContext.runAsNonRoot"),
                format_args!(
                    "is unset and the Pod does not set it to true (container {:?}); allowed: \
                     true, or unset if spec.securityContext.runAsNonRoot is true",
                    at.name
                ),
            ),
        }
    }
}

/// `runAsUser`: never 0, at pod or container level. Pods in a user namespace are exempt.
pub(super) fn run_as_user(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    if in_user_namespace(&pod.spec) {
        return;
    }
    if pod
        .spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.run_as_user)
        == Some(0)
    {
        sink.deny(
            "spec.securityContext.runAsUser",
            format_args!("is 0; allowed: a non-zero user id or unset"),
        );
    }
    for (at, c) in containers(&pod.spec) {
        if c.security_context.as_ref().and_then(|sc| sc.run_as_user) == Some(0) {
            sink.deny(
                format_args!("{at}.securityContext.runAsUser"),
                format_args!(
                    "is 0 (container {:?}); allowed: a non-zero user id or unset",
                    at.name
                ),
            );
        }
    }
}

/// `seccompProfile_restricted`: every container has a RuntimeDefault or Localhost profile, set
/// on it or inherited from the Pod; a bad Pod-level profile is a violation even if every
/// container sets its own. Windows Pods are exempt.
pub(super) fn seccomp_profile(pod: &PodView<'_>, sink: &mut Sink<'_>) {
    if is_windows(&pod.spec) {
        return;
    }
    let pod_profile = pod
        .spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.seccomp_profile.as_ref());
    let pod_valid = pod_profile.is_some_and(allowed_profile);
    if let Some(profile) = pod_profile.filter(|p| !allowed_profile(p)) {
        sink.deny(
            "spec.securityContext.seccompProfile.type",
            format_args!(
                "is {:?}; allowed: {PROFILE_TYPES_TEXT}, or unset if every container sets one",
                &*profile.type_
            ),
        );
    }
    for (at, c) in containers(&pod.spec) {
        match c
            .security_context
            .as_ref()
            .and_then(|sc| sc.seccomp_profile.as_ref())
        {
            Some(profile) if allowed_profile(profile) => {}
            Some(profile) => sink.deny(
                format_args!("{at}.securityContext.seccompProfile.type"),
                format_args!(
                    "is {:?} (container {:?}); allowed: {PROFILE_TYPES_TEXT}",
                    &*profile.type_, at.name
                ),
            ),
            None if pod_valid => {}
            None => sink.deny(
                format_args!("{at}.securityContext.seccompProfile"),
                format_args!(
                    "is unset and the Pod sets no allowed profile (container {:?}); allowed: \
                     type {PROFILE_TYPES_TEXT}, here or in spec.securityContext.seccompProfile",
                    at.name
                ),
            ),
        }
    }
}

#[cfg(test)]
#[path = "restricted_tests.rs"]
mod tests;
