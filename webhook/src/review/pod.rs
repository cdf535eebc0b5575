//! The parts of a Pod AdmissionReview that a decision reads, deserialized directly from the
//! body. Everything else (env, managed fields, most annotations, status) is skipped by
//! the parser without being built: a Pod review is mostly fields no decision looks at, and
//! building them into a `DynamicObject` (a `serde_json::Value` behind a flattened map) was most
//! of the cost of a review. Strings borrow from the body where JSON allows (no escapes); of the
//! labels only the agent label is kept, of the annotations only the AppArmor ones, and of the
//! spec what the Pod Security Standards read ([`agentgov_api::pod_security::PodView`]) and
//! the containers' images. Of an
//! UPDATE's oldObject, only the agent label and the containers' images are read.
//!
//! Required fields are those kube's `AdmissionRequest` requires, and every label value must
//! be a string, so a body that kube would refuse is refused here too.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use agentgov_api::agent::AGENT_LABEL;
use agentgov_api::pod_security::{self, PodAnnotations, PodSecuritySpec, PodView};
use kube::core::admission::Operation;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A Pod review's request: plain data for the Pod decision (`decide::decide_pod`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRequest<'a> {
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Gvk<'a>,
    /// Required, as in kube's type; not read.
    #[serde(rename = "resource")]
    _resource: IgnoredAny,
    #[serde(default, borrow)]
    pub sub_resource: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub namespace: Option<Text<'a>>,
    pub operation: Operation,
    #[serde(borrow)]
    pub user_info: Requester<'a>,
    #[serde(default, borrow)]
    pub object: Option<PodObject<'a>>,
    /// On UPDATE, the Pod as it was: only its labels are read.
    #[serde(default, borrow)]
    pub old_object: Option<OldPod<'a>>,
    #[serde(default)]
    pub dry_run: bool,
}

/// The previous version of an updated Pod: a decision reads its agent label and its
/// containers' images (what an UPDATE may change that binds a Pod to its agent).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct OldPod<'a> {
    #[serde(default, borrow)]
    pub metadata: PodMetadata<'a>,
    #[serde(default, borrow)]
    pub spec: Option<PodSecuritySpec<'a>>,
}

/// The group, version and kind of the reviewed object.
#[derive(Clone, Debug, Deserialize)]
pub struct Gvk<'a> {
    #[serde(borrow)]
    pub group: Cow<'a, str>,
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

impl Gvk<'_> {
    pub fn is_core_pod(&self) -> bool {
        self.group.is_empty() && self.version == "v1" && self.kind == "Pod"
    }
}

impl fmt::Display for Gvk<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}/{}", self.version, self.kind)
        } else {
            write!(f, "{}/{}/{}", self.group, self.version, self.kind)
        }
    }
}

/// Who sent the request (the AdmissionReview's userInfo); only the name is logged.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Requester<'a> {
    #[serde(default, borrow)]
    pub username: Option<Text<'a>>,
}

/// A Pod object: its namespace and agent label, and what the Pod Security Standards read.
#[derive(Clone, Debug, Default)]
pub struct PodObject<'a> {
    pub metadata: PodMetadata<'a>,
    /// The AppArmor annotations and the spec's security-relevant fields.
    pub security: PodView<'a>,
}

impl<'de: 'a, 'a> Deserialize<'de> for PodObject<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Metadata<'a> {
            #[serde(default, borrow)]
            namespace: Option<Text<'a>>,
            #[serde(default, borrow)]
            labels: Option<AgentLabel<'a>>,
            #[serde(default, borrow)]
            annotations: Option<PodAnnotations<'a>>,
        }
        #[derive(Deserialize)]
        struct Pod<'a> {
            #[serde(default, borrow)]
            metadata: Option<Metadata<'a>>,
            #[serde(default, borrow)]
            spec: Option<PodSecuritySpec<'a>>,
        }
        let Pod { metadata, spec } = Pod::deserialize(deserializer)?;
        let (metadata, annotations) = match metadata {
            Some(m) => (
                PodMetadata {
                    namespace: m.namespace,
                    agent_label: m.labels,
                },
                m.annotations.unwrap_or_default(),
            ),
            None => (PodMetadata::default(), PodAnnotations::default()),
        };
        Ok(PodObject {
            metadata,
            security: PodView::new(annotations, spec.unwrap_or_default()),
        })
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodMetadata<'a> {
    #[serde(default, borrow)]
    pub namespace: Option<Text<'a>>,
    /// The value of the agent label, when the Pod has it.
    #[serde(default, borrow, rename = "labels")]
    pub agent_label: Option<AgentLabel<'a>>,
}

/// Of a label map, the value of [`AGENT_LABEL`]; the other labels are checked to be strings
/// and dropped.
#[derive(Clone, Debug, Default)]
pub struct AgentLabel<'a>(pub Option<Cow<'a, str>>);

impl PodRequest<'_> {
    /// The namespace of the request, or else of the object; never empty.
    pub fn namespace(&self) -> Option<&str> {
        super::request_namespace(
            self.namespace.as_deref(),
            self.object
                .as_ref()
                .and_then(|o| o.metadata.namespace.as_deref()),
        )
    }

    /// The value of the agent label on the Pod, if the Pod has it.
    pub fn agent_label(&self) -> Option<&str> {
        self.object.as_ref()?.metadata.agent()
    }

    /// On UPDATE, the value of the agent label the Pod had before, if it had it.
    pub fn old_agent_label(&self) -> Option<&str> {
        self.old_object.as_ref()?.metadata.agent()
    }

    /// On UPDATE, whether any container's image differs from before (the Pod's own spec is
    /// otherwise nearly immutable).
    pub fn images_changed(&self) -> bool {
        let new = self.object.as_ref().map(|o| &o.security.spec);
        let old = self.old_object.as_ref().and_then(|o| o.spec.as_ref());
        !images_of(new).eq(images_of(old))
    }
}

/// A Pod spec's images in upstream's order (none when there is no spec).
fn images_of<'s>(spec: Option<&'s PodSecuritySpec<'_>>) -> impl Iterator<Item = &'s str> {
    spec.into_iter()
        .flat_map(|s| pod_security::images(s).map(|(_, image)| image))
}

impl PodMetadata<'_> {
    /// The value of the agent label, if present.
    pub fn agent(&self) -> Option<&str> {
        self.agent_label.as_ref()?.0.as_deref()
    }
}

/// A string that borrows from the body unless JSON escapes forced a copy. (serde borrows a
/// `Cow<str>` field only when it is not inside an `Option`.)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for AgentLabel<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for LabelsVisitor<'a> {
            type Value = AgentLabel<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of label names to string values")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut agent = None;
                while let Some(Text(key)) = map.next_key::<Text<'a>>()? {
                    let Text(value) = map.next_value::<Text<'a>>()?;
                    // As with a map, the last of repeated keys wins.
                    if key == AGENT_LABEL {
                        agent = Some(value);
                    }
                }
                Ok(AgentLabel(agent))
            }
        }
        deserializer.deserialize_map(LabelsVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = r#"{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},
        "resource":{"group":"","version":"v1","resource":"pods"},
        "operation":"CREATE","userInfo":{"username":"alice","groups":["g"]},
        "object":{"metadata":{"namespace":"team","labels":{"app":"x","agentgov.dev/agent":"a"},
                  "managedFields":[{"x":1}]},
                  "spec":{"containers":[{"name":"c"}],"volumes":[{"name":"v","emptyDir":{}}]}}}"#;

    #[test]
    fn reads_only_what_decisions_need() {
        let req: PodRequest<'_> = serde_json::from_str(REQUEST).unwrap();
        assert_eq!(req.namespace(), Some("team"));
        assert_eq!(req.agent_label(), Some("a"));
        assert!(req.kind.is_core_pod());
        assert_eq!(req.kind.to_string(), "v1/Pod");
        assert_eq!(req.user_info.username.as_deref(), Some("alice"));
        assert!(!req.dry_run);
        let spec = &req.object.as_ref().unwrap().security.spec;
        assert_eq!(spec.volumes.len(), 1);
        assert!(spec.volumes[0].sets("emptyDir"));
        assert_eq!(&*spec.containers[0].name, "c");
    }

    #[test]
    fn labels_are_strings_and_escapes_are_read() {
        let escaped = REQUEST.replace(
            r#""agentgov.dev/agent":"a""#,
            r#""agentgov.dev\/agent":"\u0061""#,
        );
        let req: PodRequest<'_> = serde_json::from_str(&escaped).unwrap();
        assert_eq!(req.agent_label(), Some("a"));
        let not_a_string = REQUEST.replace(r#""app":"x""#, r#""app":1"#);
        assert!(serde_json::from_str::<PodRequest<'_>>(&not_a_string).is_err());
        let no_labels = REQUEST.replace(r#""labels":{"app":"x","agentgov.dev/agent":"a"},"#, "");
        let req: PodRequest<'_> = serde_json::from_str(&no_labels).unwrap();
        assert_eq!(req.agent_label(), None);
    }

    #[test]
    fn requires_what_kube_requires() {
        for missing in ["uid", "kind", "resource", "operation", "userInfo"] {
            let mut value: serde_json::Value = serde_json::json!({
                "uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},
                "resource":{"group":"","version":"v1","resource":"pods"},
                "operation":"CREATE","userInfo":{}
            });
            value.as_object_mut().unwrap().remove(missing);
            let text = value.to_string();
            assert!(
                serde_json::from_str::<PodRequest<'_>>(&text).is_err(),
                "{missing} is required"
            );
        }
    }
}
