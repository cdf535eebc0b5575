//! The Kubernetes Pod Security Standards, levels `baseline` and `restricted`, as a pure function
//! over a plain-data view of a Pod: [`evaluate`].
//!
//! The behaviour is that of upstream's `k8s.io/pod-security-admission` policy at version
//! "latest" as of v0.37.2 (policy v1.37): the same checks, registered the same way, and each
//! decides as upstream's does. Upstream's conformance fixtures (`test/testdata/{level}/v1.37`)
//! are run against it by `crds/tests/pod_security_conformance.rs`.
//!
//! How upstream composes the levels, and so how this module does:
//! - `restricted` runs every baseline check except four that a restricted check replaces
//!   (upstream's `OverrideCheckIDs`): `capabilities_baseline` by `capabilities_restricted`,
//!   `hostPathVolumes` by `restrictedVolumes`, `procMount` by `procMount_restricted` and
//!   `seccompProfile_baseline` by `seccompProfile_restricted`. Each replacement is stricter,
//!   except that upstream exempts Pods with `spec.os.name: windows` from the restricted
//!   capabilities and seccomp checks (the API server refuses those Linux fields on a Windows Pod).
//! - Containers are visited in the order init containers, containers, ephemeral containers.
//! - A container-level `runAsNonRoot` or `seccompProfile` left unset is covered by a valid
//!   pod-level one; a bad pod-level value is a violation even if every container overrides it.
//! - `hostUsers: false` (a user-namespaced Pod) relaxes baseline `procMount`, and restricted
//!   `runAsNonRoot` and `runAsUser`; it does not relax `procMount_restricted`.
//!
//! The view reads a Pod as the API server hands it to admission, after defaulting. So a volume
//! that sets no source is allowed (the API server defaults it to `emptyDir`, as upstream's
//! fixtures assume), and a volume key that is no 1.37 volume source is denied at restricted as an
//! unknown source (fail closed: a newer API server's new source is not one this policy vetted).
//!
//! One [`Violation`] is reported per offending field. Nothing is allocated unless something is
//! violated, and the view is only read.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod baseline;
mod de;
mod restricted;
#[cfg(test)]
mod test_pods;
mod view;

pub use view::{
    ALLOWED_VOLUME_SOURCES, APPARMOR_ANNOTATION_PREFIX, CapabilitiesView, ContainerView,
    HandlerView, HostView, LifecycleView, PodAnnotations, PodOsView, PodSecurityContextView,
    PodSecuritySpec, PodView, PortView, ProfileView, RESTRICTED_VOLUME_SOURCES, SeLinuxOptionsView,
    SecurityContextView, Str, SysctlView, UNKNOWN_VOLUME_SOURCE, VolumeView, WindowsOptionsView,
};

/// A Pod Security Standards level (`privileged`, which allows everything, is not one to check).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    Baseline,
    Restricted,
}

impl PodSecurityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurityLevel::Baseline => "baseline",
            PodSecurityLevel::Restricted => "restricted",
        }
    }

    fn checks(self) -> &'static [Check] {
        match self {
            PodSecurityLevel::Baseline => &BASELINE,
            PodSecurityLevel::Restricted => &RESTRICTED,
        }
    }
}

impl fmt::Display for PodSecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One field of a Pod that a level does not allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Upstream's check id, e.g. `"privileged"`.
    pub check: &'static str,
    /// The field's path, e.g. `spec.initContainers[1].securityContext.privileged`.
    pub field: String,
    /// A sentence naming the field, its value and what is allowed.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The fields of `pod` that `level` does not allow; empty means the Pod meets the level.
pub fn evaluate(level: PodSecurityLevel, pod: &PodView<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    for &(check, run) in level.checks() {
        run(
            pod,
            &mut Sink {
                check,
                out: &mut out,
            },
        );
    }
    out
}

/// The ids of the checks `level` runs, in the order [`evaluate`] runs them.
pub fn check_ids(level: PodSecurityLevel) -> impl Iterator<Item = &'static str> {
    level.checks().iter().map(|&(id, _)| id)
}

/// A check: upstream's id, and the function that runs it.
type Check = (&'static str, fn(&PodView<'_>, &mut Sink<'_>));

/// Upstream's baseline checks at latest, in its order (sorted by id).
const BASELINE: [Check; 12] = [
    ("appArmorProfile", baseline::app_armor_profile),
    ("capabilities_baseline", baseline::capabilities),
    ("hostNamespaces", baseline::host_namespaces),
    ("hostPathVolumes", baseline::host_path_volumes),
    ("hostPorts", baseline::host_ports),
    (
        "hostProbesAndHostLifecycle",
        baseline::host_probes_and_lifecycle,
    ),
    ("privileged", baseline::privileged),
    ("procMount", baseline::proc_mount),
    ("seLinuxOptions", baseline::se_linux_options),
    ("seccompProfile_baseline", baseline::seccomp_profile),
    ("sysctls", baseline::sysctls),
    ("windowsHostProcess", baseline::windows_host_process),
];

/// Upstream's restricted level at latest: the baseline checks not overridden, then the
/// restricted checks, each group sorted by id.
const RESTRICTED: [Check; 15] = [
    ("appArmorProfile", baseline::app_armor_profile),
    ("hostNamespaces", baseline::host_namespaces),
    ("hostPorts", baseline::host_ports),
    (
        "hostProbesAndHostLifecycle",
        baseline::host_probes_and_lifecycle,
    ),
    ("privileged", baseline::privileged),
    ("seLinuxOptions", baseline::se_linux_options),
    ("sysctls", baseline::sysctls),
    ("windowsHostProcess", baseline::windows_host_process),
    (
        "allowPrivilegeEscalation",
        restricted::allow_privilege_escalation,
    ),
    ("capabilities_restricted", restricted::capabilities),
    ("procMount_restricted", restricted::proc_mount),
    ("restrictedVolumes", restricted::volumes),
    ("runAsNonRoot", restricted::run_as_non_root),
    ("runAsUser", restricted::run_as_user),
    ("seccompProfile_restricted", restricted::seccomp_profile),
];

/// Where a check records violations; it knows which check is running.
struct Sink<'v> {
    check: &'static str,
    out: &'v mut Vec<Violation>,
}

impl Sink<'_> {
    /// Records that `field` is not allowed; the message is `field` followed by `rest`.
    fn deny(&mut self, field: impl fmt::Display, rest: fmt::Arguments<'_>) {
        let field = field.to_string();
        let message = format!("{field} {rest}");
        self.out.push(Violation {
            check: self.check,
            field,
            message,
        });
    }
}

/// A container's place in the Pod: a field path prefix such as `spec.initContainers[1]`, and
/// its name.
#[derive(Clone, Copy, Debug)]
struct At<'s> {
    list: &'static str,
    index: usize,
    name: &'s str,
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spec.{}[{}]", self.list, self.index)
    }
}

/// Every container of the Pod, in upstream's order: init containers, containers, ephemeral
/// containers.
fn containers<'s, 'a>(
    spec: &'s PodSecuritySpec<'a>,
) -> impl Iterator<Item = (At<'s>, &'s ContainerView<'a>)> {
    let list = |name: &'static str, containers: &'s [ContainerView<'a>]| {
        containers.iter().enumerate().map(move |(index, c)| {
            let at = At {
                list: name,
                index,
                name: &c.name,
            };
            (at, c)
        })
    };
    list("initContainers", &spec.init_containers)
        .chain(list("containers", &spec.containers))
        .chain(list("ephemeralContainers", &spec.ephemeral_containers))
}

/// Every container's image, in upstream's order (init containers, containers, ephemeral
/// containers), with where it is: `spec.containers[0] (agent)` when displayed.
pub fn images<'s>(
    spec: &'s PodSecuritySpec<'_>,
) -> impl Iterator<Item = (ContainerAt<'s>, &'s str)> {
    containers(spec).map(|(at, c)| (ContainerAt(at), &*c.image))
}

/// Where a container is in its Pod, displayed as `spec.containers[0] (agent)`.
#[derive(Clone, Copy, Debug)]
pub struct ContainerAt<'s>(At<'s>);

impl fmt::Display for ContainerAt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.0.name)
    }
}

/// A list in a message: its items separated by commas (written without allocating).
struct List<'l>(&'l [&'l str]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(item)?;
        }
        Ok(())
    }
}

/// A list in a message, each item quoted.
struct Quoted<'l>(&'l [&'l str]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item:?}")?;
        }
        Ok(())
    }
}

/// `spec.os.name` is `windows`.
fn is_windows(spec: &PodSecuritySpec<'_>) -> bool {
    spec.os.as_ref().is_some_and(|os| &*os.name == "windows")
}

/// `spec.hostUsers` is `false`: the Pod has its own user namespace.
fn in_user_namespace(spec: &PodSecuritySpec<'_>) -> bool {
    spec.host_users == Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_and_named() {
        assert!(PodSecurityLevel::Restricted > PodSecurityLevel::Baseline);
        for level in [PodSecurityLevel::Baseline, PodSecurityLevel::Restricted] {
            let json = serde_json::to_string(&level).unwrap();
            assert_eq!(json, format!("\"{}\"", level.as_str()));
            assert_eq!(
                serde_json::from_str::<PodSecurityLevel>(&json).unwrap(),
                level
            );
            assert_eq!(level.to_string(), level.as_str());
        }
        assert!(serde_json::from_str::<PodSecurityLevel>("\"privileged\"").is_err());
        assert!(serde_json::from_str::<PodSecurityLevel>("\"Baseline\"").is_err());
    }

    #[test]
    fn restricted_replaces_four_baseline_checks_and_adds_seven() {
        let baseline: Vec<_> = check_ids(PodSecurityLevel::Baseline).collect();
        let restricted: Vec<_> = check_ids(PodSecurityLevel::Restricted).collect();
        let overridden = [
            "capabilities_baseline",
            "hostPathVolumes",
            "procMount",
            "seccompProfile_baseline",
        ];
        let kept: Vec<_> = baseline
            .iter()
            .copied()
            .filter(|id| !overridden.contains(id))
            .collect();
        assert_eq!(restricted[..kept.len()], kept[..]);
        assert_eq!(
            restricted[kept.len()..],
            [
                "allowPrivilegeEscalation",
                "capabilities_restricted",
                "procMount_restricted",
                "restrictedVolumes",
                "runAsNonRoot",
                "runAsUser",
                "seccompProfile_restricted",
            ]
        );
        // Upstream's order: sorted by id (byte order) within each group.
        assert!(baseline.windows(2).all(|w| w[0] < w[1]));
        assert!(restricted[kept.len()..].windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn an_allowed_pod_costs_no_allocation_for_the_answer() {
        let pod = test_pods::restricted_pod();
        let view = test_pods::view(&pod);
        for level in [PodSecurityLevel::Baseline, PodSecurityLevel::Restricted] {
            assert_eq!(evaluate(level, &view).capacity(), 0);
        }
    }

    #[test]
    fn containers_are_visited_init_first_then_ephemeral_last() {
        let pod = test_pods::baseline_pod();
        let view = test_pods::view(&pod);
        let paths: Vec<_> = containers(&view.spec)
            .map(|(at, _)| format!("{at} {}", at.name))
            .collect();
        assert_eq!(
            paths,
            [
                "spec.initContainers[0] init",
                "spec.containers[0] app",
                "spec.containers[1] sidecar",
                "spec.ephemeralContainers[0] debug",
            ]
        );
    }

    #[test]
    fn the_base_pods_meet_their_levels() {
        use PodSecurityLevel::{Baseline, Restricted};
        let baseline = test_pods::baseline_pod();
        assert_eq!(test_pods::violations(Baseline, &baseline), []);
        assert!(!test_pods::violations(Restricted, &baseline).is_empty());
        let restricted = test_pods::restricted_pod();
        assert_eq!(test_pods::violations(Baseline, &restricted), []);
        assert_eq!(test_pods::violations(Restricted, &restricted), []);
    }

    #[test]
    fn a_violation_names_its_check_field_container_and_what_is_allowed() {
        let pod = test_pods::with(
            &test_pods::baseline_pod(),
            "/spec/initContainers/0/securityContext/privileged",
            serde_json::json!(true),
        );
        let got = test_pods::violations(PodSecurityLevel::Baseline, &pod);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].check, "privileged");
        assert_eq!(
            got[0].field,
            "spec.initContainers[0].securityContext.privileged"
        );
        assert!(got[0].message.starts_with(&got[0].field), "{}", got[0]);
        assert!(got[0].message.contains("\"init\""), "{}", got[0]);
        assert!(
            got[0].message.contains("allowed: false or unset"),
            "{}",
            got[0]
        );
    }
}
