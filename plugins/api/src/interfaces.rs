//! Whether a host provides an interface a workload needs.
//!
//! Versions match the way Wasmtime's component linker resolves imports: two versions are compatible when they
//! share a major version (`1.2.0` ~ `1.9.3`), or for `0.x` a minor version (`0.2.0` ~ `0.2.6`), or for `0.0.x`
//! and pre-releases only when equal. A side without a version matches any version.

use crate::model::WitInterface;

/// The part of a version that must be equal for two versions to be compatible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CompatKey<'a> {
    Major(u64),
    Minor(u64),
    Exact(&'a str),
}

impl<'a> CompatKey<'a> {
    pub(crate) fn of(version: &'a str) -> Self {
        let version = version.split_once('+').map_or(version, |(core, _build)| core);
        if version.contains('-') {
            return CompatKey::Exact(version);
        }
        let mut parts = version.split('.').map(str::parse::<u64>);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(_)), Some(Ok(_)), None) if major > 0 => CompatKey::Major(major),
            (Some(Ok(0)), Some(Ok(minor)), Some(Ok(_)), None) if minor > 0 => CompatKey::Minor(minor),
            _ => CompatKey::Exact(version),
        }
    }
}

/// Whether versions `a` and `b` are compatible (see the module docs).
pub fn versions_compatible(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => CompatKey::of(a) == CompatKey::of(b),
        _ => true,
    }
}

/// A requirement with its version key worked out once per decision.
pub(crate) struct Requirement<'a> {
    pub(crate) interface: &'a WitInterface,
    key: Option<CompatKey<'a>>,
    /// The implicit interfaces alone satisfy it, so every host does.
    always: bool,
    /// The implicit interfaces include its package, so per-host checks must look at them too.
    implicit_matters: bool,
}

impl<'a> Requirement<'a> {
    pub(crate) fn new(interface: &'a WitInterface, implicit: &[WitInterface]) -> Self {
        let mut requirement = Requirement {
            interface,
            key: interface.version.as_deref().map(CompatKey::of),
            always: false,
            implicit_matters: true,
        };
        requirement.always = requirement.satisfied_by(&[], implicit);
        requirement.implicit_matters = implicit.iter().any(|offered| requirement.accepts(offered));
        requirement
    }

    fn same_package(&self, offered: &WitInterface) -> bool {
        offered.package == self.interface.package && offered.namespace == self.interface.namespace
    }

    fn accepts(&self, offered: &WitInterface) -> bool {
        self.same_package(offered)
            && match (self.key, offered.version.as_deref()) {
                (Some(key), Some(version)) => {
                    self.interface.version.as_deref() == Some(version) || key == CompatKey::of(version)
                }
                _ => true,
            }
    }

    /// Whether a host offering `offered` (plus `implicit`) provides this requirement.
    pub(crate) fn met(&self, offered: &[WitInterface], implicit: &[WitInterface]) -> bool {
        self.always || self.satisfied_by(offered, if self.implicit_matters { implicit } else { &[] })
    }

    /// Whether the union of the compatible entries in `offered` and `implicit` covers this requirement.
    fn satisfied_by(&self, offered: &[WitInterface], implicit: &[WitInterface]) -> bool {
        let mut candidates = offered.iter().chain(implicit).filter(|o| self.accepts(o));
        if self.interface.interfaces.is_empty() {
            return candidates.next().is_some();
        }
        self.interface.interfaces.iter().all(|name| {
            offered
                .iter()
                .chain(implicit)
                .any(|o| self.accepts(o) && o.interfaces.iter().any(|i| i == name))
        })
    }

    /// What `offered` has of this requirement's package, for messages.
    pub(crate) fn describe_offer(&self, offered: &[WitInterface], implicit: &[WitInterface]) -> String {
        let same: Vec<String> = offered
            .iter()
            .chain(implicit)
            .filter(|o| self.same_package(o))
            .map(ToString::to_string)
            .collect();
        if same.is_empty() {
            format!("host provides no {} interfaces", self.interface.package_ref())
        } else {
            format!("host provides {}", same.join(", "))
        }
    }
}

/// Whether a host offering `offered` (plus `implicit`) provides `required`.
pub fn provides(required: &WitInterface, offered: &[WitInterface], implicit: &[WitInterface]) -> bool {
    Requirement::new(required, implicit).met(offered, implicit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wit(text: &str) -> WitInterface {
        text.parse().unwrap()
    }

    #[test]
    fn version_compatibility_follows_wasmtime_linker_rules() {
        let cases = [
            ("1.0.0", "1.9.3", true),
            ("1.0.0", "2.0.0", false),
            ("0.2.0", "0.2.6", true),
            ("0.2.0", "0.3.0", false),
            ("0.0.1", "0.0.1", true),
            ("0.0.1", "0.0.2", false),
            ("0.3.0-rc-2025-08-15", "0.3.0-rc-2025-08-15", true),
            ("0.3.0-rc-2025-08-15", "0.3.0", false),
            ("0.3.0-draft", "0.3.0-rc-2025-08-15", false),
            ("1.2.3+build.5", "1.0.0", true),
            ("not-semver", "not-semver", true),
            ("not-semver", "1.0.0", false),
        ];
        for (a, b, expected) in cases {
            assert_eq!(versions_compatible(Some(a), Some(b)), expected, "{a} vs {b}");
            assert_eq!(versions_compatible(Some(b), Some(a)), expected, "{b} vs {a}");
        }
        assert!(versions_compatible(None, Some("1.0.0")));
        assert!(versions_compatible(Some("1.0.0"), None));
    }

    #[test]
    fn a_requirement_needs_every_named_interface_of_a_compatible_package() {
        let offered = [
            wit("wasi:keyvalue/store,atomics@0.2.0"),
            wit("wasi:keyvalue/batch@0.2.1"),
        ];
        assert!(provides(&wit("wasi:keyvalue/store@0.2.0"), &offered, &[]));
        assert!(provides(&wit("wasi:keyvalue/store@0.2.5"), &offered, &[]));
        // Interfaces may come from several compatible entries of the same package.
        assert!(provides(&wit("wasi:keyvalue/store,batch@0.2.0"), &offered, &[]));
        assert!(provides(&wit("wasi:keyvalue"), &offered, &[]));
        assert!(provides(&wit("wasi:keyvalue/atomics"), &offered, &[]));
        assert!(!provides(&wit("wasi:keyvalue/watch@0.2.0"), &offered, &[]));
        assert!(!provides(&wit("wasi:keyvalue/store@0.3.0"), &offered, &[]));
        assert!(!provides(&wit("wasi:blobstore/blobstore@0.2.0"), &offered, &[]));
        assert!(!provides(&wit("wasmcloud:keyvalue/store@0.2.0"), &offered, &[]));
        // Unversioned offers match any version.
        assert!(provides(
            &wit("wasi:config/store@0.2.0"),
            &[wit("wasi:config/store")],
            &[]
        ));
    }

    #[test]
    fn implicit_interfaces_count_as_provided() {
        let implicit = crate::model::wasi_builtin_interfaces();
        assert!(provides(&wit("wasi:http/incoming-handler@0.2.3"), &[], &implicit));
        assert!(!provides(&wit("wasi:keyvalue/store@0.2.0"), &[], &implicit));
        let requirement = wit("wasi:http/incoming-handler@0.3.0");
        assert!(!provides(&requirement, &[], &implicit));
        assert_eq!(
            Requirement::new(&requirement, &implicit).describe_offer(&[], &implicit),
            "host provides wasi:http/types,incoming-handler,outgoing-handler@0.2.0"
        );
        assert_eq!(
            Requirement::new(&wit("x:y/z"), &implicit).describe_offer(&[], &implicit),
            "host provides no x:y interfaces"
        );
    }
}
