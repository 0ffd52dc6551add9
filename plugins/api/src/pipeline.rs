//! The pipeline: standard filters, the policy's filters, then weighted scores, then a seeded tie-break.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::filter::{Context, Filter, HostRejection, Reason, Scorer};
use crate::model::{HostInfo, Placement, Snapshot, SnapshotError, WorkloadRequest};
use crate::registry::UnknownPolicy;
use crate::rng::pick_index;

/// How many hosts an [`Unschedulable`] message lists by name; the rest are counted.
pub const LISTED_HOSTS: usize = 10;

/// Why a workload could not be placed. The `Display` text is meant for the Workload's conditions.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "detail")]
pub enum ScheduleError {
    /// Every host was filtered out.
    #[error("{0}")]
    NoFeasibleHost(Unschedulable),
    /// The workload targets another environment and the operator does not allow shared hosts.
    #[error(
        "workload targets environment {environment:?}, outside its namespace {namespace:?}, and the operator \
         does not allow shared hosts (allowSharedHosts=false)"
    )]
    #[serde(rename_all = "camelCase")]
    CrossEnvironmentDenied {
        /// The workload's `spec.environment`.
        environment: String,
        /// The workload's namespace.
        namespace: String,
    },
    /// The workload names a policy that is not registered.
    #[error(transparent)]
    UnknownPolicy(UnknownPolicy),
    /// A snapshot update was invalid.
    #[error(transparent)]
    Snapshot(SnapshotError),
    /// A native plugin failed; the decision was not made.
    #[error("scheduling plugin {plugin:?} {failure}: {message}")]
    #[serde(rename_all = "camelCase")]
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// What went wrong.
        failure: PluginFailure,
        /// The plugin's message, or what was wrong with its output.
        message: String,
    },
}

/// How a native plugin failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PluginFailure {
    /// It returned an error.
    Error,
    /// It panicked (the panic was caught at the boundary).
    Panic,
    /// Its output broke the ABI contract (unreadable, or a host it may not choose).
    InvalidOutput,
}

impl fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginFailure::Error => "failed",
            PluginFailure::Panic => "panicked",
            PluginFailure::InvalidOutput => "returned invalid output",
        })
    }
}

/// No host can run the workload: how many hosts were turned down for each reason, and the first few hosts
/// with their details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unschedulable {
    /// `namespace/name` of the workload.
    pub workload: String,
    /// Hosts in the snapshot (all of them were turned down).
    pub total_hosts: u64,
    /// Hosts turned down per reason, most common first; the counts add up to `total_hosts`.
    pub reasons: Vec<ReasonCount>,
    /// The first [`LISTED_HOSTS`] hosts turned down, in host ID order, with their details.
    pub hosts: Vec<HostRejection>,
}

/// How many hosts were turned down for one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasonCount {
    /// The reason, e.g. `not Ready` or `missing host interface wasi:keyvalue/store@0.2.0`.
    pub summary: String,
    /// How many hosts.
    pub hosts: u64,
}

impl fmt::Display for Unschedulable {
    /// `0/4 hosts can run workload ns/w: 2 not Ready, 1 missing host interface wasi:keyvalue/store@0.2.0, ...
    /// (h1: host is not Ready; h2: ...)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total_hosts;
        write!(f, "0/{total} hosts can run workload {}: ", self.workload)?;
        if total == 0 {
            return f.write_str("no hosts are registered");
        }
        for (position, reason) in self.reasons.iter().enumerate() {
            let separator = if position == 0 { "" } else { ", " };
            write!(f, "{separator}{} {}", reason.hosts, reason.summary)?;
        }
        f.write_str(" (")?;
        for (position, rejection) in self.hosts.iter().enumerate() {
            let separator = if position == 0 { "" } else { "; " };
            let name = if rejection.host_name.is_empty() {
                &rejection.host_id
            } else {
                &rejection.host_name
            };
            write!(f, "{separator}{name}: {}", rejection.detail)?;
        }
        let unlisted = total.saturating_sub(self.hosts.len() as u64);
        if unlisted > 0 {
            write!(f, "; and {unlisted} more")?;
        }
        f.write_str(")")
    }
}

struct Stages {
    filters: Vec<Box<dyn Filter>>,
    scorers: Vec<(i64, Box<dyn Scorer>)>,
}

/// A named composition of filters and weighted scorers. Cheap to clone.
///
/// The standard filters (readiness, environment, selector, interfaces) always run first; a pipeline adds its
/// own filters after them and its scorers. With no scorers every feasible host ties and the seeded draw
/// chooses uniformly among them.
#[derive(Clone)]
pub struct Pipeline {
    name: Arc<str>,
    stages: Arc<Stages>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field(
                "filters",
                &self.stages.filters.iter().map(|f| f.name()).collect::<Vec<_>>(),
            )
            .field(
                "scorers",
                &self
                    .stages
                    .scorers
                    .iter()
                    .map(|(w, s)| (s.name(), *w))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Builds a [`Pipeline`].
pub struct PipelineBuilder {
    name: String,
    stages: Stages,
}

impl PipelineBuilder {
    /// Adds a filter, run after the standard filters and any added before it.
    pub fn filter(mut self, filter: impl Filter + 'static) -> Self {
        self.stages.filters.push(Box::new(filter));
        self
    }

    /// Adds a scorer; its scores are multiplied by `weight` and summed with the others.
    pub fn scorer(mut self, weight: i64, scorer: impl Scorer + 'static) -> Self {
        self.stages.scorers.push((weight, Box::new(scorer)));
        self
    }

    /// The pipeline.
    pub fn build(self) -> Pipeline {
        Pipeline {
            name: self.name.into(),
            stages: Arc::new(self.stages),
        }
    }
}

impl Pipeline {
    /// Starts a pipeline called `name` (the name users select it by).
    pub fn builder(name: impl Into<String>) -> PipelineBuilder {
        PipelineBuilder {
            name: name.into(),
            stages: Stages {
                filters: Vec::new(),
                scorers: Vec::new(),
            },
        }
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a host passes every filter; allocates nothing.
    fn feasible(&self, cx: &Context<'_>, host: &HostInfo) -> bool {
        cx.standard(host).is_ok()
            && self
                .stages
                .filters
                .iter()
                .all(|filter| filter.filter(cx, host).is_ok())
    }

    /// The first filter that rejects a host, and why.
    fn check<'p>(&'p self, cx: &Context<'_>, host: &HostInfo) -> Result<(), (&'p str, Reason)> {
        cx.standard(host)?;
        for filter in &self.stages.filters {
            filter
                .filter(cx, host)
                .map_err(|reason| (filter.name(), reason))?;
        }
        Ok(())
    }

    fn score(&self, cx: &Context<'_>, host: &HostInfo) -> i64 {
        self.stages.scorers.iter().fold(0i64, |total, (weight, scorer)| {
            total.saturating_add(scorer.score(cx, host).saturating_mul(*weight))
        })
    }

    /// Chooses a host for `request`. Among the best-scored feasible hosts (in host ID order), `tie_break`
    /// picks one uniformly ([`pick_index`]); the same inputs always give the same host.
    pub fn schedule(
        &self,
        snapshot: &Snapshot,
        request: &WorkloadRequest,
        tie_break: u64,
    ) -> Result<Placement, ScheduleError> {
        let cx = Context::new(snapshot, request)?;
        let mut best = i64::MIN;
        let mut ties: Vec<usize> = Vec::new();
        let mut feasible = 0u64;
        for (index, host) in snapshot.hosts().iter().enumerate() {
            if !self.feasible(&cx, host) {
                continue;
            }
            feasible += 1;
            let score = self.score(&cx, host);
            if score > best {
                best = score;
                ties.clear();
            }
            if score == best {
                ties.push(index);
            }
        }
        if ties.is_empty() {
            return Err(ScheduleError::NoFeasibleHost(self.explain(&cx)));
        }
        let host = &snapshot.hosts()[ties[pick_index(tie_break, ties.len())]];
        Ok(Placement {
            host_id: host.id.clone(),
            host_name: host.name.clone(),
            score: best,
            feasible_hosts: feasible,
        })
    }

    fn explain(&self, cx: &Context<'_>) -> Unschedulable {
        struct Group<'r> {
            key: (u8, u64, Option<&'r str>),
            summary: String,
            hosts: u64,
        }
        let hosts = cx.snapshot().hosts();
        let mut rejections: Vec<(&HostInfo, &str, Reason)> = Vec::new();
        let mut listed = Vec::new();
        for host in hosts {
            if let Err((filter, reason)) = self.check(cx, host) {
                if listed.len() < LISTED_HOSTS {
                    listed.push(cx.explain_reason(host, filter, &reason));
                }
                rejections.push((host, filter, reason));
            }
        }
        let mut groups: Vec<Group<'_>> = Vec::new();
        for (host, _, reason) in &rejections {
            let key = reason.group_key();
            match groups.iter_mut().find(|group| group.key == key) {
                Some(group) => group.hosts += 1,
                None => groups.push(Group {
                    key,
                    summary: cx.describe(host, reason).0,
                    hosts: 1,
                }),
            }
        }
        groups.sort_by(|a, b| b.hosts.cmp(&a.hosts).then_with(|| a.summary.cmp(&b.summary)));
        let request = cx.request();
        Unschedulable {
            workload: format!("{}/{}", request.namespace, request.name),
            total_hosts: hosts.len() as u64,
            reasons: groups
                .into_iter()
                .map(|group| ReasonCount {
                    summary: group.summary,
                    hosts: group.hosts,
                })
                .collect(),
            hosts: listed,
        }
    }

    /// Every host the filters turn down for `request`, with why, in host ID order: the full account behind
    /// an [`Unschedulable`], for diagnostics.
    pub fn rejections(
        &self,
        snapshot: &Snapshot,
        request: &WorkloadRequest,
    ) -> Result<Vec<HostRejection>, ScheduleError> {
        let cx = Context::new(snapshot, request)?;
        Ok(snapshot
            .hosts()
            .iter()
            .filter_map(|host| {
                self.check(&cx, host)
                    .err()
                    .map(|(filter, reason)| cx.explain_reason(host, filter, &reason))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Reason;

    fn host(id: &str) -> HostInfo {
        HostInfo {
            id: id.into(),
            name: format!("host-{id}"),
            ready: true,
            ..HostInfo::default()
        }
    }

    fn request() -> WorkloadRequest {
        WorkloadRequest {
            namespace: "ns".into(),
            name: "w".into(),
            ..WorkloadRequest::default()
        }
    }

    struct Maintenance;
    impl Filter for Maintenance {
        fn name(&self) -> &str {
            "maintenance"
        }
        fn filter(&self, _: &Context<'_>, host: &HostInfo) -> Result<(), Reason> {
            if host.labels.contains_key("maintenance") {
                return Err(Reason::Other {
                    summary: "in maintenance".into(),
                    detail: "window open".into(),
                });
            }
            Ok(())
        }
    }

    struct LabelScore(&'static str);
    impl Scorer for LabelScore {
        fn name(&self) -> &str {
            self.0
        }
        fn score(&self, _: &Context<'_>, host: &HostInfo) -> i64 {
            host.labels.get(self.0).and_then(|v| v.parse().ok()).unwrap_or(0)
        }
    }

    fn labelled(id: &str, labels: &[(&str, &str)]) -> HostInfo {
        let mut host = host(id);
        host.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        host
    }

    #[test]
    fn scores_are_weighted_and_summed() {
        let pipeline = Pipeline::builder("t")
            .scorer(10, LabelScore("a"))
            .scorer(1, LabelScore("b"))
            .build();
        let snapshot = Snapshot::new(vec![
            labelled("1", &[("a", "1"), ("b", "5")]),
            labelled("2", &[("a", "2"), ("b", "0")]),
            labelled("3", &[("a", "1"), ("b", "9")]),
        ])
        .unwrap();
        for draw in [0, u64::MAX / 2, u64::MAX] {
            let placement = pipeline.schedule(&snapshot, &request(), draw).unwrap();
            assert_eq!(placement.host_id, "2");
            assert_eq!(placement.score, 20);
            assert_eq!(placement.feasible_hosts, 3);
        }
    }

    #[test]
    fn the_draw_breaks_ties_in_host_id_order() {
        let pipeline = Pipeline::builder("t").build();
        let snapshot = Snapshot::new(vec![host("c"), host("a"), host("b")]).unwrap();
        let pick = |draw| pipeline.schedule(&snapshot, &request(), draw).unwrap().host_id;
        assert_eq!(pick(0), "a");
        assert_eq!(pick(u64::MAX / 2), "b");
        assert_eq!(pick(u64::MAX), "c");
    }

    #[test]
    fn policy_filters_run_after_the_standard_ones_and_explain_rejections() {
        let pipeline = Pipeline::builder("t").filter(Maintenance).build();
        let snapshot = Snapshot::new(vec![
            labelled("1", &[("maintenance", "yes")]),
            HostInfo {
                ready: false,
                ..labelled("2", &[("maintenance", "yes")])
            },
            labelled("3", &[("maintenance", "yes")]),
        ])
        .unwrap();
        let Err(ScheduleError::NoFeasibleHost(unschedulable)) = pipeline.schedule(&snapshot, &request(), 0)
        else {
            panic!("expected no feasible host");
        };
        let filters: Vec<_> = unschedulable.hosts.iter().map(|r| r.filter.as_str()).collect();
        assert_eq!(filters, ["maintenance", "readiness", "maintenance"]);
        assert_eq!(unschedulable.total_hosts, 3);
        assert_eq!(
            unschedulable.reasons,
            [
                ReasonCount {
                    summary: "in maintenance".into(),
                    hosts: 2
                },
                ReasonCount {
                    summary: "not Ready".into(),
                    hosts: 1
                }
            ]
        );
        assert_eq!(
            pipeline.rejections(&snapshot, &request()).unwrap(),
            unschedulable.hosts
        );
        assert_eq!(
            unschedulable.to_string(),
            "0/3 hosts can run workload ns/w: 2 in maintenance, 1 not Ready \
             (host-1: window open; host-2: host is not Ready; host-3: window open)"
        );
    }

    #[test]
    fn long_explanations_list_ten_hosts_and_count_the_rest() {
        let hosts = (0..25)
            .map(|i| {
                if i % 5 == 0 {
                    host(&format!("{i:02}"))
                } else {
                    HostInfo {
                        ready: false,
                        ..host(&format!("{i:02}"))
                    }
                }
            })
            .map(|h| {
                if h.ready {
                    HostInfo {
                        labels: [("maintenance".into(), "y".into())].into(),
                        ..h
                    }
                } else {
                    h
                }
            })
            .collect();
        let snapshot = Snapshot::new(hosts).unwrap();
        let pipeline = Pipeline::builder("t").filter(Maintenance).build();
        let error = pipeline.schedule(&snapshot, &request(), 0).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with(
                "0/25 hosts can run workload ns/w: 20 not Ready, 5 in maintenance (host-00: window open;"
            ),
            "{text}"
        );
        assert!(
            text.contains("host-09: host is not Ready; and 15 more)"),
            "{text}"
        );
        assert!(!text.contains("host-10"), "{text}");
        let ScheduleError::NoFeasibleHost(unschedulable) = error else {
            unreachable!()
        };
        assert_eq!(unschedulable.hosts.len(), LISTED_HOSTS);
        assert_eq!(pipeline.rejections(&snapshot, &request()).unwrap().len(), 25);
    }

    #[test]
    fn an_empty_snapshot_says_so() {
        let error = Pipeline::builder("t")
            .build()
            .schedule(&Snapshot::default(), &request(), 0)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "0/0 hosts can run workload ns/w: no hosts are registered"
        );
    }

    #[test]
    fn errors_round_trip_through_json() {
        let errors = [
            ScheduleError::CrossEnvironmentDenied {
                environment: "a".into(),
                namespace: "b".into(),
            },
            ScheduleError::Snapshot(SnapshotError::UnknownHost("h".into())),
            ScheduleError::UnknownPolicy(UnknownPolicy {
                name: "x".into(),
                known: vec!["random".into()],
            }),
            ScheduleError::Plugin {
                plugin: "p".into(),
                failure: PluginFailure::Panic,
                message: "boom".into(),
            },
            ScheduleError::NoFeasibleHost(Unschedulable {
                workload: "ns/w".into(),
                total_hosts: 1,
                reasons: vec![ReasonCount {
                    summary: "not Ready".into(),
                    hosts: 1,
                }],
                hosts: vec![HostRejection {
                    host_id: "h".into(),
                    host_name: "n".into(),
                    filter: "readiness".into(),
                    summary: "not Ready".into(),
                    detail: "host is not Ready".into(),
                }],
            }),
        ];
        for error in errors {
            let json = serde_json::to_string(&error).unwrap();
            assert_eq!(
                serde_json::from_str::<ScheduleError>(&json).unwrap(),
                error,
                "{json}"
            );
        }
    }
}
