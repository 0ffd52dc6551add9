//! Small types shared by several kinds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to an object by name, in the same namespace as the referring object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(extend("x-kubernetes-map-type" = "atomic"))]
pub struct LocalObjectReference {
    /// Name of the referenced object. Effectively required: an empty name refers to nothing.
    #[serde(default)]
    pub name: String,
}

impl LocalObjectReference {
    /// A reference to the object named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

impl From<k8s_openapi::api::core::v1::LocalObjectReference> for LocalObjectReference {
    fn from(reference: k8s_openapi::api::core::v1::LocalObjectReference) -> Self {
        Self { name: reference.name }
    }
}

impl From<LocalObjectReference> for k8s_openapi::api::core::v1::LocalObjectReference {
    fn from(reference: LocalObjectReference) -> Self {
        Self { name: reference.name }
    }
}

/// Defines a string enum for a field whose schema allows a fixed set of values.
///
/// The schema lists only the known values, so the apiserver rejects anything else. Deserializing still
/// accepts any string, as `Other`, and serializes it back unchanged: objects stored before the schema
/// was installed (wasmCloud's CRDs have no such enums) must not stop a controller's watch.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
            /// A value outside the schema's list, read from an object stored before the schema
            /// rejected it. Kept as written.
            Other(String),
        }

        impl $name {
            /// The values the schema allows.
            pub const VALUES: &'static [&'static str] = &[$($value),+];

            /// The value as written in the object.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $value, )+
                    Self::Other(value) => value,
                }
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $( $value => Self::$variant, )+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
                Ok(Self::from(value.as_ref()))
            }
        }

        impl schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "enum": Self::VALUES })
            }
        }
    };
}

pub(crate) use string_enum;

#[cfg(test)]
mod tests {
    string_enum! {
        /// A test enum.
        pub enum Mode {
            /// On.
            On = "On",
            /// Off.
            Off = "Off",
        }
    }

    #[test]
    fn known_values_map_to_variants_and_back() {
        let mode: Mode = serde_json::from_str("\"Off\"").unwrap();
        assert_eq!(mode, Mode::Off);
        assert_eq!(serde_json::to_string(&mode).unwrap(), "\"Off\"");
    }

    #[test]
    fn unknown_values_are_kept_as_written() {
        let mode: Mode = serde_json::from_str("\"off\"").unwrap();
        assert_eq!(mode, Mode::Other("off".into()));
        assert_eq!(serde_json::to_string(&mode).unwrap(), "\"off\"");
        assert!(serde_json::from_str::<Mode>("1").is_err());
    }

    #[test]
    fn the_schema_lists_only_known_values() {
        let schema = schemars::SchemaGenerator::default().into_root_schema_for::<Mode>();
        assert_eq!(schema.get("enum"), Some(&serde_json::json!(["On", "Off"])));
    }
}
