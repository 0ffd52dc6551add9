//! Linking the components of one workload to each other.
//!
//! An instance import of one component (`ns:pkg/iface@version`) is served by the component of the
//! same workload that exports a compatible version of it (the version rule of Wasmtime's linker),
//! otherwise by the host. The plan ([`plan`]) is pure: who serves what, in which order components
//! must be pre-instantiated (exporters first), and the errors — an import two components export, a
//! cycle. [`WorkloadLinker`] then turns the plan into a per-workload [`Linker`] whose definitions
//! forward each call into the exporting component.
//!
//! Calls run in the caller's `Store`: the exporter is instantiated there on its first call and that
//! instance serves every later call of the same request (as wasmCloud's shared store does), so a
//! request's memory limit and CPU budget cover all the components it runs. Interfaces whose
//! functions pass resources, streams or futures are refused at start: forwarding them needs
//! resource bridging that is not implemented.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker};

use super::state::InstanceState;

/// What linking needs to know of one component: its instance imports and exports by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ComponentFacts {
    pub name: String,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Its exports may not serve other components (the service's).
    pub private: bool,
}

impl ComponentFacts {
    /// The instance imports and exports of `component`.
    pub(crate) fn of(name: &str, component: &Component, engine: &Engine, private: bool) -> Self {
        let ty = component.component_type();
        let instances = |items: Vec<(&str, ComponentItem)>| {
            items
                .into_iter()
                .filter(|(_, item)| matches!(item, ComponentItem::ComponentInstance(_)))
                .map(|(name, _)| name.to_string())
                .collect()
        };
        Self {
            name: name.to_string(),
            imports: instances(ty.imports(engine).map(|(n, e)| (n, e.ty)).collect()),
            exports: instances(ty.exports(engine).map(|(n, e)| (n, e.ty)).collect()),
            private,
        }
    }
}

/// Who serves each component's imports, and the order to prepare components in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LinkPlan {
    /// Component indexes, every exporter before its importers.
    pub order: Vec<usize>,
    /// Per component: `(import name, index of the component exporting it, its export name)`.
    pub served: Vec<Vec<(String, usize, String)>>,
}

impl LinkPlan {
    /// Whether any component imports from another.
    pub(crate) fn has_links(&self) -> bool {
        self.served.iter().any(|s| !s.is_empty())
    }

    /// The components `root` may call, directly or through others (not `root` itself).
    pub(crate) fn reachable_from(&self, root: usize) -> Vec<usize> {
        let mut seen = vec![false; self.served.len()];
        let mut stack = vec![root];
        let mut out = Vec::new();
        while let Some(i) = stack.pop() {
            for (_, provider, _) in &self.served[i] {
                if !seen[*provider] {
                    seen[*provider] = true;
                    out.push(*provider);
                    stack.push(*provider);
                }
            }
        }
        out.sort_unstable();
        out
    }
}

/// Splits `ns:pkg/iface@version` into the name and the part of the version that must match
/// (major; minor for `0.x`; the whole version for `0.0.x` and pre-releases), as Wasmtime does.
pub(crate) fn compat_key(name: &str) -> (&str, Option<String>) {
    let Some((base, version)) = name.split_once('@') else {
        return (name, None);
    };
    let core = version.split_once('+').map_or(version, |(core, _)| core);
    if core.contains('-') {
        return (base, Some(core.to_string()));
    }
    let parts: Vec<&str> = core.split('.').collect();
    let key = match parts.as_slice() {
        [major, _, _] if *major != "0" => major.to_string(),
        ["0", minor, _] if *minor != "0" => format!("0.{minor}"),
        _ => core.to_string(),
    };
    (base, Some(key))
}

/// A component index and the name it exports an interface under.
type Exporter = (usize, String);

/// Works out the plan, or says why the components cannot be linked.
pub(crate) fn plan(components: &[ComponentFacts]) -> Result<LinkPlan, String> {
    // Export key → (component, export name), or several components when ambiguous.
    let mut exporters: BTreeMap<(String, Option<String>), Vec<Exporter>> = BTreeMap::new();
    for (i, c) in components.iter().enumerate() {
        if c.private {
            continue;
        }
        for export in &c.exports {
            let (base, key) = compat_key(export);
            exporters
                .entry((base.to_string(), key))
                .or_default()
                .push((i, export.clone()));
        }
    }
    let mut served = vec![Vec::new(); components.len()];
    for (i, c) in components.iter().enumerate() {
        for import in &c.imports {
            let (base, key) = compat_key(import);
            let Some(providers) = exporters.get(&(base.to_string(), key)) else {
                continue;
            };
            let providers: Vec<&(usize, String)> = providers.iter().filter(|(p, _)| *p != i).collect();
            match providers.as_slice() {
                [] => {}
                [(p, export)] => served[i].push((import.clone(), *p, export.clone())),
                several => {
                    return Err(format!(
                        "component {:?} imports {import}, which several components of the workload export ({}); a workload may have only one",
                        c.name,
                        several
                            .iter()
                            .map(|(p, _)| format!("{:?}", components[*p].name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
    }
    // Kahn's algorithm: a component is ready once every provider it imports from is placed.
    let providers: Vec<Vec<usize>> = served
        .iter()
        .map(|s| {
            let mut p: Vec<usize> = s.iter().map(|(_, p, _)| *p).collect();
            p.sort_unstable();
            p.dedup();
            p
        })
        .collect();
    let mut waiting: Vec<usize> = providers.iter().map(Vec::len).collect();
    let mut order = Vec::with_capacity(components.len());
    let mut ready: Vec<usize> = (0..components.len()).filter(|i| waiting[*i] == 0).collect();
    while let Some(next) = ready.pop() {
        order.push(next);
        for (i, p) in providers.iter().enumerate() {
            if p.contains(&next) {
                waiting[i] -= 1;
                if waiting[i] == 0 {
                    ready.push(i);
                }
            }
        }
    }
    if order.len() < components.len() {
        let mut cycle: Vec<&str> = (0..components.len())
            .filter(|i| !order.contains(i))
            .map(|i| components[i].name.as_str())
            .collect();
        cycle.sort_unstable();
        return Err(format!(
            "components import from each other in a cycle ({}); links must form a tree",
            cycle.join(", ")
        ));
    }
    Ok(LinkPlan { order, served })
}

/// Why an interface cannot be forwarded between components, if it cannot.
fn unforwardable(engine: &Engine, component: &Component, export: &str) -> Option<String> {
    let ty = component.component_type();
    let ComponentItem::ComponentInstance(instance) = ty.get_export(engine, export)?.ty else {
        return Some("it is not an instance".into());
    };
    for (name, item) in instance.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => {
                if func.async_() {
                    return Some(format!("function {name:?} is async"));
                }
                let types: Vec<Type> = func.params().map(|(_, t)| t).chain(func.results()).collect();
                if let Some(what) = types.iter().find_map(handle_in) {
                    return Some(format!("function {name:?} passes {what}"));
                }
            }
            ComponentItem::Resource(_) => return Some(format!("it exports resource {name:?}")),
            ComponentItem::Type(_) => {}
            _ => return Some(format!("it exports {name:?}, which is not a function")),
        }
    }
    None
}

/// The first resource, stream, future or error-context inside `ty`.
fn handle_in(ty: &Type) -> Option<&'static str> {
    match ty {
        Type::Own(_) | Type::Borrow(_) => Some("a resource"),
        Type::Future(_) => Some("a future"),
        Type::Stream(_) => Some("a stream"),
        Type::ErrorContext => Some("an error-context"),
        Type::List(l) => handle_in(&l.ty()),
        Type::FixedLengthList(l) => handle_in(&l.ty()),
        Type::Map(m) => handle_in(&m.key()).or_else(|| handle_in(&m.value())),
        Type::Record(r) => r.fields().find_map(|f| handle_in(&f.ty)),
        Type::Tuple(t) => t.types().find_map(|t| handle_in(&t)),
        Type::Variant(v) => v.cases().find_map(|c| c.ty.as_ref().and_then(handle_in)),
        Type::Option(o) => handle_in(&o.ty()),
        Type::Result(r) => r
            .ok()
            .as_ref()
            .and_then(handle_in)
            .or_else(|| r.err().as_ref().and_then(handle_in)),
        _ => None,
    }
}

/// Where a forwarded call goes.
struct Target {
    /// Index of the exporting component in the workload (its slot in `InstanceState::linked`).
    slot: usize,
    pre: InstancePre<InstanceState>,
    func: ComponentExportIndex,
    what: String,
}

/// Pre-instantiations of a workload's components, linked to each other per the plan.
pub(crate) struct WorkloadLinker {
    /// Per component (spec order).
    pub pres: Vec<InstancePre<InstanceState>>,
}

impl WorkloadLinker {
    /// Builds the workload's linker on top of the host's and pre-instantiates every component.
    /// `components[i]` belongs to `facts[i]`.
    pub(crate) fn build(
        engine: &Engine,
        base: &Linker<InstanceState>,
        components: &[Component],
        facts: &[ComponentFacts],
        plan: &LinkPlan,
    ) -> Result<Self, (usize, String)> {
        let mut linker = base.clone();
        // A component of the workload serves its interface even where the host has one too.
        linker.allow_shadowing(true);
        let mut pres: Vec<Option<InstancePre<InstanceState>>> = vec![None; components.len()];
        let mut defined: Vec<String> = Vec::new();
        for &i in &plan.order {
            let pre = linker
                .instantiate_pre(&components[i])
                .map_err(|e| (i, format!("{e:#}")))?;
            // Define forwarders for every export of `i` that some component imports.
            let mut wanted: Vec<&str> = plan
                .served
                .iter()
                .flatten()
                .filter(|(_, provider, _)| *provider == i)
                .map(|(_, _, export)| export.as_str())
                .collect();
            wanted.sort_unstable();
            wanted.dedup();
            for export in wanted {
                if defined.iter().any(|d| d == export) {
                    continue;
                }
                if let Some(why) = unforwardable(engine, &components[i], export) {
                    return Err((
                        i,
                        format!(
                            "its export {export} cannot be linked to another component: {why}; linking interfaces that pass resources, streams or futures is not supported"
                        ),
                    ));
                }
                define_forwarders(
                    engine,
                    &mut linker,
                    &components[i],
                    i,
                    &facts[i].name,
                    export,
                    &pre,
                )
                .map_err(|e| (i, format!("linking its export {export}: {e:#}")))?;
                defined.push(export.to_string());
            }
            pres[i] = Some(pre);
        }
        Ok(Self {
            pres: pres
                .into_iter()
                .map(|p| p.expect("the plan orders every component"))
                .collect(),
        })
    }
}

fn define_forwarders(
    engine: &Engine,
    linker: &mut Linker<InstanceState>,
    component: &Component,
    slot: usize,
    component_name: &str,
    export: &str,
    pre: &InstancePre<InstanceState>,
) -> wasmtime::Result<()> {
    let ty = component.component_type();
    let Some(ComponentItem::ComponentInstance(instance_ty)) = ty.get_export(engine, export).map(|e| e.ty)
    else {
        wasmtime::bail!("{export} is not an instance export");
    };
    let (_, instance_index) = component
        .get_export(None, export)
        .ok_or_else(|| wasmtime::format_err!("{export} not found"))?;
    let mut instance = linker.instance(export)?;
    for (func_name, item) in instance_ty.exports(engine) {
        if !matches!(item.ty, ComponentItem::ComponentFunc(_)) {
            continue;
        }
        let (_, func) = component
            .get_export(Some(&instance_index), func_name)
            .ok_or_else(|| wasmtime::format_err!("{export}#{func_name} not found"))?;
        let target = Arc::new(Target {
            slot,
            pre: pre.clone(),
            func,
            what: format!("{component_name}: {export}#{func_name}"),
        });
        instance.func_new_async(func_name, move |mut store, _ty, params, results| {
            let target = target.clone();
            Box::new(async move {
                let existing = store.data().linked.get(target.slot).copied().flatten();
                let callee = match existing {
                    Some(instance) => instance,
                    None => {
                        let instance = target.pre.instantiate_async(&mut store).await?;
                        if let Some(slot) = store.data_mut().linked.get_mut(target.slot) {
                            *slot = Some(instance);
                        }
                        instance
                    }
                };
                let func = callee
                    .get_func(&mut store, target.func)
                    .ok_or_else(|| wasmtime::format_err!("{} is not a function", target.what))?;
                store.data().metrics.count_linked_call();
                let caller = std::mem::replace(&mut store.data_mut().current_component, target.slot);
                let result = func.call_async(&mut store, params, results).await;
                store.data_mut().current_component = caller;
                result
            })
        })?;
    }
    Ok(())
}

/// Whether `linker` defines the instance `name` (e.g. `wasi:cli/environment@0.2.0`), with the linker's
/// own name and version matching.
///
/// The linker has no query for this, and an import of an instance with no expected contents
/// typechecks whether or not the instance exists. So the probe imports `name` as a *function*, which
/// an interface name never is in this linker: the typecheck then fails either way, saying "expected
/// function found instance" when an instance of that name is defined and "function implementation is
/// missing" when nothing is (a unit test pins this to the Wasmtime version).
pub(crate) fn linker_provides(engine: &Engine, linker: &Linker<InstanceState>, name: &str) -> bool {
    let bytes = {
        let mut component = wasm_encoder::Component::new();
        let mut types = wasm_encoder::ComponentTypeSection::new();
        types
            .function()
            .params(std::iter::empty::<(&str, wasm_encoder::ComponentValType)>())
            .result(None);
        component.section(&types);
        let mut imports = wasm_encoder::ComponentImportSection::new();
        imports.import(name, wasm_encoder::ComponentTypeRef::Func(0));
        component.section(&imports);
        component.finish()
    };
    let Ok(component) = Component::new(engine, &bytes) else {
        return false;
    };
    match linker.instantiate_pre(&component) {
        Ok(_) => true,
        Err(err) => format!("{err:#}").contains("expected function found instance"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(name: &str, imports: &[&str], exports: &[&str]) -> ComponentFacts {
        ComponentFacts {
            name: name.into(),
            imports: imports.iter().map(|s| s.to_string()).collect(),
            exports: exports.iter().map(|s| s.to_string()).collect(),
            private: false,
        }
    }

    #[test]
    fn the_linker_probe_tells_defined_instances_from_missing_ones() {
        let engine = Engine::default();
        let mut linker: Linker<InstanceState> = Linker::new(&engine);
        linker
            .instance("t:probe/here@0.2.1")
            .unwrap()
            .func_wrap("f", |_, (): ()| Ok(()))
            .unwrap();
        assert!(linker_provides(&engine, &linker, "t:probe/here@0.2.1"));
        assert!(
            linker_provides(&engine, &linker, "t:probe/here@0.2.0"),
            "semver-compatible"
        );
        assert!(!linker_provides(&engine, &linker, "t:probe/here@0.3.0"));
        assert!(!linker_provides(&engine, &linker, "t:probe/elsewhere@0.2.1"));
        let real = super::super::state::linker(&engine).unwrap();
        assert!(linker_provides(&engine, &real, "wasi:keyvalue/store@0.2.0-draft"));
        assert!(linker_provides(&engine, &real, "wasi:cli/environment@0.2.0"));
        assert!(!linker_provides(
            &engine,
            &real,
            "wasi:keyvalue/watcher@0.2.0-draft"
        ));
        assert!(!linker_provides(
            &engine,
            &real,
            "wasi:blobstore/container@0.2.0-draft"
        ));
    }

    #[test]
    fn versions_match_like_the_linker() {
        assert_eq!(compat_key("a:b/c@1.2.3"), ("a:b/c", Some("1".into())));
        assert_eq!(compat_key("a:b/c@0.2.6"), ("a:b/c", Some("0.2".into())));
        assert_eq!(compat_key("a:b/c@0.0.3"), ("a:b/c", Some("0.0.3".into())));
        assert_eq!(
            compat_key("a:b/c@0.2.0-draft"),
            ("a:b/c", Some("0.2.0-draft".into()))
        );
        assert_eq!(compat_key("a:b/c"), ("a:b/c", None));
    }

    #[test]
    fn imports_are_served_by_the_exporting_component_in_dependency_order() {
        let components = [
            facts(
                "http",
                &["wasi:cli/environment@0.2.0", "t:lib/greeter@0.1.0"],
                &["wasi:http/incoming-handler@0.2.0"],
            ),
            facts("greeter", &["t:lib/words@1.0.0"], &["t:lib/greeter@0.1.3"]),
            facts("words", &[], &["t:lib/words@1.4.0"]),
        ];
        let plan = plan(&components).unwrap();
        assert_eq!(plan.order, [2, 1, 0]);
        assert_eq!(
            plan.served[0],
            [(
                "t:lib/greeter@0.1.0".to_string(),
                1,
                "t:lib/greeter@0.1.3".to_string()
            )]
        );
        assert_eq!(
            plan.served[1],
            [(
                "t:lib/words@1.0.0".to_string(),
                2,
                "t:lib/words@1.4.0".to_string()
            )]
        );
        assert!(plan.served[2].is_empty());
        assert!(plan.has_links());
        assert_eq!(plan.reachable_from(0), [1, 2]);
        assert!(plan.reachable_from(2).is_empty());
    }

    #[test]
    fn incompatible_versions_and_private_exports_do_not_link() {
        let components = [
            facts("http", &["t:lib/greeter@0.2.0", "t:svc/api@1.0.0"], &[]),
            facts("greeter", &[], &["t:lib/greeter@0.1.0"]),
            ComponentFacts {
                private: true,
                ..facts("service", &[], &["t:svc/api@1.0.0"])
            },
        ];
        let plan = plan(&components).unwrap();
        assert!(!plan.has_links());
    }

    #[test]
    fn an_interface_two_components_export_is_ambiguous_only_when_imported() {
        let mut components = vec![
            facts("a", &[], &["t:lib/x@1.0.0"]),
            facts("b", &[], &["t:lib/x@1.1.0"]),
        ];
        assert!(plan(&components).is_ok());
        components.push(facts("c", &["t:lib/x@1.0.0"], &[]));
        let err = plan(&components).unwrap_err();
        assert!(
            err.contains("\"c\" imports t:lib/x@1.0.0") && err.contains("\"a\", \"b\""),
            "{err}"
        );
    }

    #[test]
    fn cycles_are_refused_with_their_members() {
        let components = [
            facts("a", &["t:x/b@1.0.0"], &["t:x/a@1.0.0"]),
            facts("b", &["t:x/a@1.0.0"], &["t:x/b@1.0.0"]),
            facts("c", &[], &[]),
        ];
        let err = plan(&components).unwrap_err();
        assert!(err.contains("cycle (a, b)"), "{err}");
    }
}
