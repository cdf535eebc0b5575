//! Deserialization helpers for the Pod view: strict about JSON types in the way kube's
//! `k8s-openapi` types are. A `null` reads as unset (or the default, for a list or a required
//! string), a struct-valued field must be a JSON object (serde's derive would also take an array,
//! field by field; kube's types refuse it), and a scalar must have its JSON type.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::view::{
    ALLOWED_VOLUME_SOURCES, PodAnnotations, RESTRICTED_VOLUME_SOURCES, Str, UNKNOWN_VOLUME_SOURCE,
    VolumeView,
};

/// `null` or absent reads as the default (wrap the field in `#[serde(default)]` too).
pub(super) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A JSON object read as `T`, or `null` read as unset.
pub(super) fn opt_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Object<T>>::deserialize(deserializer)?.map(|Object(value)| value))
}

/// A JSON object read as `T`, or `null` read as `T::default()`.
pub(super) fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(opt_object(deserializer)?.unwrap_or_default())
}

/// A JSON array of objects, each read as `T`; `null` reads as empty.
pub(super) fn objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Objects<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Objects<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of objects")
        }
        fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(Object(item)) = seq.next_element::<Object<T>>()? {
                items.push(item);
            }
            Ok(items)
        }
    }
    struct OrNull<T>(Vec<T>);
    impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrNull<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer
                .deserialize_seq(Objects(PhantomData))
                .map(OrNull)
        }
    }
    Ok(Option::<OrNull<T>>::deserialize(deserializer)?.map_or_else(Vec::new, |OrNull(v)| v))
}

/// `T` read from a JSON object only (never from an array).
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapOnly<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for MapOnly<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<T, M::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(MapOnly(PhantomData))
            .map(Object)
    }
}

/// A JSON object whose content is not read (a volume source: only whether it is set matters).
pub(super) struct AnyObject;

impl<'de> Deserialize<'de> for AnyObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Skip;
        impl<'de> Visitor<'de> for Skip {
            type Value = AnyObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<AnyObject, M::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyObject)
            }
        }
        deserializer.deserialize_map(Skip)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for StrVisitor<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for PodAnnotations<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Annotations<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Annotations<'a> {
            type Value = PodAnnotations<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of annotation names to string values")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut annotations = PodAnnotations::default();
                while let Some(key) = map.next_key::<Str<'a>>()? {
                    let value = map.next_value::<Str<'a>>()?;
                    annotations.insert(key, value);
                }
                Ok(annotations)
            }
        }
        deserializer.deserialize_map(Annotations(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for VolumeView<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Volume<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Volume<'a> {
            type Value = VolumeView<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a volume")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut volume = VolumeView::default();
                let mut any_source = false;
                // Index into RESTRICTED_VOLUME_SOURCES; its length stands for an unknown key.
                let mut first_restricted: Option<usize> = None;
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    if &*key == "name" {
                        volume.name = map.next_value::<Option<Str<'a>>>()?.unwrap_or_default();
                        continue;
                    }
                    let allowed = ALLOWED_VOLUME_SOURCES.iter().position(|s| *s == &*key);
                    let known = allowed.is_some();
                    let restricted = RESTRICTED_VOLUME_SOURCES.iter().position(|s| *s == &*key);
                    let set = if known || restricted.is_some() {
                        map.next_value::<Option<AnyObject>>()?.is_some()
                    } else {
                        map.next_value::<Option<IgnoredAny>>()?.is_some()
                    };
                    if !set {
                        continue;
                    }
                    any_source = true;
                    if let Some(i) = allowed {
                        volume.allowed_source = true;
                        volume.allowed_sources |= 1 << i;
                        continue;
                    }
                    volume.host_path |= restricted == Some(0);
                    let index = restricted.unwrap_or(RESTRICTED_VOLUME_SOURCES.len());
                    first_restricted = Some(first_restricted.map_or(index, |i| i.min(index)));
                }
                // No source at all: the API server defaults the volume to emptyDir.
                volume.allowed_source |= !any_source;
                volume.restricted_source = first_restricted.map(|i| {
                    RESTRICTED_VOLUME_SOURCES
                        .get(i)
                        .copied()
                        .unwrap_or(UNKNOWN_VOLUME_SOURCE)
                });
                Ok(volume)
            }
        }
        deserializer.deserialize_map(Volume(PhantomData))
    }
}
