//! What the Pod Security Standards read of a Pod, as plain data deserialized straight from the
//! Pod's JSON. Strings borrow from the input where JSON allows (no escapes); everything the
//! checks do not read is skipped without being built.
//!
//! Parse a whole Pod (`{"metadata":{...},"spec":{...}}`, e.g. an AdmissionReview's `object`) as
//! a [`PodView`], or parse the metadata's `annotations` as [`PodAnnotations`] and the `spec` as
//! [`PodSecuritySpec`] in an envelope of one's own and join them with [`PodView::new`].
//!
//! JSON types are checked as kube's `k8s-openapi` types check them, for the fields read here: a
//! wrong type is an error (deny on it), `null` or absent is unset, and a required field that is
//! absent (a container's `name`, a seccomp profile's `type`) reads as empty, as in kube's types.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer};

use super::de;

/// A string that borrows from the input unless JSON escapes forced a copy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Str<'a>(pub Cow<'a, str>);

impl Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'a> From<&'a str> for Str<'a> {
    fn from(s: &'a str) -> Self {
        Str(Cow::Borrowed(s))
    }
}

/// The annotation prefix of the (deprecated, still checked) per-container AppArmor profiles.
pub const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// A Pod as the checks see it: the annotations they read and the spec.
#[derive(Clone, Debug, Default)]
pub struct PodView<'a> {
    pub annotations: PodAnnotations<'a>,
    pub spec: PodSecuritySpec<'a>,
}

impl<'a> PodView<'a> {
    /// Joins a Pod's annotations and spec parsed separately.
    pub fn new(annotations: PodAnnotations<'a>, spec: PodSecuritySpec<'a>) -> Self {
        PodView { annotations, spec }
    }
}

/// Reads a Pod object: `metadata.annotations` and `spec`; other fields are skipped.
impl<'de: 'a, 'a> Deserialize<'de> for PodView<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Default, Deserialize)]
        struct Metadata<'a> {
            #[serde(default, borrow, deserialize_with = "de::nullable")]
            annotations: PodAnnotations<'a>,
        }
        #[derive(Default, Deserialize)]
        struct Pod<'a> {
            #[serde(default, borrow, deserialize_with = "de::object")]
            metadata: Metadata<'a>,
            #[serde(default, borrow, deserialize_with = "de::object")]
            spec: PodSecuritySpec<'a>,
        }
        let Pod { metadata, spec } = de::object(deserializer)?;
        Ok(PodView::new(metadata.annotations, spec))
    }
}

/// Of a Pod's annotations, those a check reads: the AppArmor ones (keys starting with
/// [`APPARMOR_ANNOTATION_PREFIX`]), as (key, value). Deserialized from the whole annotation map:
/// every value must be a string, the other annotations are dropped, and of repeated keys the last
/// wins, as in a map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodAnnotations<'a>(pub Vec<(Str<'a>, Str<'a>)>);

impl<'a> PodAnnotations<'a> {
    /// Adds an annotation if a check reads it (replacing one with the same key); drops it if not.
    pub fn insert(&mut self, key: Str<'a>, value: Str<'a>) {
        if !key.starts_with(APPARMOR_ANNOTATION_PREFIX) {
            return;
        }
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key, value)),
        }
    }
}

/// What the checks read of a Pod's `spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecuritySpec<'a> {
    #[serde(default, deserialize_with = "de::nullable")]
    pub host_network: bool,
    #[serde(default, rename = "hostPID", deserialize_with = "de::nullable")]
    pub host_pid: bool,
    #[serde(default, rename = "hostIPC", deserialize_with = "de::nullable")]
    pub host_ipc: bool,
    /// `Some(false)`: the Pod runs in its own user namespace, which relaxes some checks.
    #[serde(default)]
    pub host_users: Option<bool>,
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub security_context: Option<PodSecurityContextView<'a>>,
    #[serde(default, borrow, deserialize_with = "de::objects")]
    pub init_containers: Vec<ContainerView<'a>>,
    #[serde(default, borrow, deserialize_with = "de::objects")]
    pub containers: Vec<ContainerView<'a>>,
    #[serde(default, borrow, deserialize_with = "de::objects")]
    pub ephemeral_containers: Vec<ContainerView<'a>>,
    #[serde(default, borrow, deserialize_with = "de::nullable")]
    pub volumes: Vec<VolumeView<'a>>,
    /// `spec.os.name`; `"windows"` exempts a Pod from the Linux-only restricted checks.
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub os: Option<PodOsView<'a>>,
}

/// `spec.os`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodOsView<'a> {
    #[serde(default, borrow, deserialize_with = "de::nullable")]
    pub name: Str<'a>,
}

/// `spec.securityContext`: the fields the checks read.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContextView<'a> {
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub se_linux_options: Option<SeLinuxOptionsView<'a>>,
    #[serde(default)]
    pub run_as_user: Option<i64>,
    #[serde(default)]
    pub run_as_non_root: Option<bool>,
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub seccomp_profile: Option<ProfileView<'a>>,
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub app_armor_profile: Option<ProfileView<'a>>,
    #[serde(default, borrow, deserialize_with = "de::objects")]
    pub sysctls: Vec<SysctlView<'a>>,
    #[serde(default, deserialize_with = "de::opt_object")]
    pub windows_options: Option<WindowsOptionsView>,
}

/// A container, init container or ephemeral container: the fields the checks read.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView<'a> {
    #[serde(default, borrow, deserialize_with = "de::nullable")]
    pub name: Str<'a>,
    /// Not read by the Pod Security checks: the image a Pod of an agent runs is bound to the
    /// agent's approved runtime ([`crate::runtime`]).
    #[serde(default, borrow, deserialize_with = "de::nullable")]
    pub image: Str<'a>,
    #[serde(default, deserialize_with = "de::objects")]
    pub ports: Vec<PortView>,
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub security_context: Option<SecurityContextView<'a>>,
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub liveness_probe: Option<HandlerView<'a>>,
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub readiness_probe: Option<HandlerView<'a>>,
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub startup_probe: Option<HandlerView<'a>>,
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub lifecycle: Option<LifecycleView<'a>>,
}

/// A container's `securityContext`: the fields the checks read.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContextView<'a> {
    #[serde(default)]
    pub privileged: Option<bool>,
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub capabilities: Option<CapabilitiesView<'a>>,
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub se_linux_options: Option<SeLinuxOptionsView<'a>>,
    #[serde(default, borrow)]
    pub proc_mount: Option<Str<'a>>,
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub seccomp_profile: Option<ProfileView<'a>>,
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub app_armor_profile: Option<ProfileView<'a>>,
    #[serde(default, deserialize_with = "de::opt_object")]
    pub windows_options: Option<WindowsOptionsView>,
    #[serde(default)]
    pub allow_privilege_escalation: Option<bool>,
    #[serde(default)]
    pub run_as_non_root: Option<bool>,
    #[serde(default)]
    pub run_as_user: Option<i64>,
}

/// `securityContext.capabilities`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CapabilitiesView<'a> {
    #[serde(default, borrow, deserialize_with = "de::nullable")]
    pub add: Vec<Str<'a>>,
    #[serde(default, borrow, deserialize_with = "de::nullable")]
    pub drop: Vec<Str<'a>>,
}

/// `securityContext.seLinuxOptions` (`level` is not restricted, so not read).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SeLinuxOptionsView<'a> {
    #[serde(default, borrow, rename = "type", deserialize_with = "de::nullable")]
    pub type_: Str<'a>,
    #[serde(default, borrow, deserialize_with = "de::nullable")]
    pub user: Str<'a>,
    #[serde(default, borrow, deserialize_with = "de::nullable")]
    pub role: Str<'a>,
}

/// A `seccompProfile` or an `appArmorProfile`: its `type`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ProfileView<'a> {
    #[serde(default, borrow, rename = "type", deserialize_with = "de::nullable")]
    pub type_: Str<'a>,
}

/// `securityContext.windowsOptions`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowsOptionsView {
    #[serde(default)]
    pub host_process: Option<bool>,
}

/// `spec.securityContext.sysctls[*]`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SysctlView<'a> {
    #[serde(default, borrow, deserialize_with = "de::nullable")]
    pub name: Str<'a>,
}

/// A container port: its `hostPort` (0 or unset means none).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortView {
    #[serde(default)]
    pub host_port: Option<i32>,
}

/// A probe or a lifecycle handler: the hosts of its `httpGet` and `tcpSocket` actions.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandlerView<'a> {
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub http_get: Option<HostView<'a>>,
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub tcp_socket: Option<HostView<'a>>,
}

/// An `httpGet` or `tcpSocket` action: its `host` (empty means the Pod's IP).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HostView<'a> {
    #[serde(default, borrow, deserialize_with = "de::nullable")]
    pub host: Str<'a>,
}

/// A container's `lifecycle`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleView<'a> {
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub post_start: Option<HandlerView<'a>>,
    #[serde(default, borrow, deserialize_with = "de::opt_object")]
    pub pre_stop: Option<HandlerView<'a>>,
}

/// The volume sources the restricted level allows, as upstream lists them.
pub const ALLOWED_VOLUME_SOURCES: [&str; 9] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The other volume sources of `core/v1` (1.37), in the order upstream names the first one set.
pub const RESTRICTED_VOLUME_SOURCES: [&str; 21] = [
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

/// What `restricted_source` holds for a key that is no volume source this version knows.
pub const UNKNOWN_VOLUME_SOURCE: &str = "unknown";

/// A volume: its name and which sources it sets (a source set to `null` is not set). Any key
/// other than `name` is a volume source; a known source must be an object.
///
/// A volume that sets no source is one the API server defaults to `emptyDir` before admission,
/// which is how upstream's conformance fixtures use it; it reads as an allowed source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeView<'a> {
    pub name: Str<'a>,
    /// `hostPath` is set.
    pub host_path: bool,
    /// A source in [`ALLOWED_VOLUME_SOURCES`] is set, or no source is.
    pub allowed_source: bool,
    /// Which of [`ALLOWED_VOLUME_SOURCES`] are set: bit `i` for the `i`-th.
    pub allowed_sources: u16,
    /// Of the other sources set, the first in [`RESTRICTED_VOLUME_SOURCES`] order, else
    /// [`UNKNOWN_VOLUME_SOURCE`] if a key no version-1.37 volume has is set.
    pub restricted_source: Option<&'static str>,
}

impl VolumeView<'_> {
    /// Whether the source `source` (one of [`ALLOWED_VOLUME_SOURCES`]) is set.
    pub fn sets(&self, source: &str) -> bool {
        ALLOWED_VOLUME_SOURCES
            .iter()
            .position(|s| *s == source)
            .is_some_and(|i| self.allowed_sources & (1 << i) != 0)
    }

    /// The name of the source that keeps this volume out of the restricted level, if any
    /// (an allowed source wins over others, as upstream checks them).
    pub fn restricted_only_source(&self) -> Option<&'static str> {
        if self.allowed_source {
            None
        } else {
            self.restricted_source
        }
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
