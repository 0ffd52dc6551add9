//! Filters: which hosts may run a workload, and why the others may not.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::interfaces::Requirement;
use crate::model::{HostInfo, Snapshot, WorkloadRequest};
use crate::pipeline::ScheduleError;

/// Everything a filter or scorer reads about one decision, prepared once per decision.
pub struct Context<'a> {
    snapshot: &'a Snapshot,
    request: &'a WorkloadRequest,
    environment: Option<&'a str>,
    requirements: Vec<Requirement<'a>>,
}

impl<'a> Context<'a> {
    /// Prepares a decision; fails when the environment matrix forbids the workload's environment outright.
    pub fn new(snapshot: &'a Snapshot, request: &'a WorkloadRequest) -> Result<Self, ScheduleError> {
        let environment = resolve_environment(request, snapshot.allow_shared_hosts())?;
        Ok(Context {
            snapshot,
            request,
            environment,
            requirements: request
                .host_interfaces
                .iter()
                .map(|interface| Requirement::new(interface, snapshot.implicit_interfaces()))
                .collect(),
        })
    }

    /// The snapshot the decision is made over.
    pub fn snapshot(&self) -> &'a Snapshot {
        self.snapshot
    }

    /// The workload being placed.
    pub fn request(&self) -> &'a WorkloadRequest {
        self.request
    }

    /// The environment hosts must be in, if any (see [`resolve_environment`]).
    pub fn environment(&self) -> Option<&'a str> {
        self.environment
    }

    /// Runs the standard filters, which every policy (native plugins included) applies first.
    pub fn check_standard(&self, host: &HostInfo) -> Result<(), Rejection> {
        self.standard(host).map_err(|(filter, reason)| Rejection {
            filter: filter.to_owned(),
            reason,
        })
    }

    /// The standard filters without allocating: the filter's name and the reason.
    pub(crate) fn standard(&self, host: &HostInfo) -> Result<(), (&'static str, Reason)> {
        let reject = |filter, reason| Err((filter, reason));
        if !host.ready {
            return reject(READINESS, Reason::NotReady);
        }
        if host.draining {
            return reject(READINESS, Reason::Draining);
        }
        if let Some(environment) = self.environment
            && host.environment != environment
        {
            return reject(ENVIRONMENT, Reason::EnvironmentMismatch);
        }
        for (index, (key, value)) in self.request.host_selector.iter().enumerate() {
            if host.labels.get(key) != Some(value) {
                return reject(SELECTOR, Reason::LabelMismatch { index });
            }
        }
        let implicit = self.snapshot.implicit_interfaces();
        for (index, requirement) in self.requirements.iter().enumerate() {
            if !requirement.met(&host.interfaces, implicit) {
                return reject(INTERFACES, Reason::MissingInterface { index });
            }
        }
        Ok(())
    }

    /// Turns a rejection into the text users see.
    pub fn explain(&self, host: &HostInfo, rejection: &Rejection) -> HostRejection {
        self.explain_reason(host, &rejection.filter, &rejection.reason)
    }

    pub(crate) fn explain_reason(&self, host: &HostInfo, filter: &str, reason: &Reason) -> HostRejection {
        let (summary, detail) = self.describe(host, reason);
        HostRejection {
            host_id: host.id.clone(),
            host_name: host.name.clone(),
            filter: filter.to_owned(),
            summary,
            detail,
        }
    }

    /// The short text shared by every host turned down for `reason` in this decision, and this host's details.
    pub(crate) fn describe(&self, host: &HostInfo, reason: &Reason) -> (String, String) {
        match reason {
            Reason::NotReady => ("not Ready".into(), "host is not Ready".into()),
            Reason::Draining => ("draining".into(), "host is draining".into()),
            Reason::EnvironmentMismatch => (
                format!("not in environment {:?}", self.environment.unwrap_or_default()),
                format!("host environment is {:?}", host.environment),
            ),
            Reason::LabelMismatch { index } => {
                let Some((key, wanted)) = self.request.host_selector.iter().nth(*index) else {
                    return ("not matching the host selector".into(), String::new());
                };
                let detail = match host.labels.get(key) {
                    Some(actual) => format!("label {key} is {actual:?}, the selector requires {wanted:?}"),
                    None => format!("label {key} is missing, the selector requires {wanted:?}"),
                };
                ("not matching the host selector".into(), detail)
            }
            Reason::MissingInterface { index } => match self.requirements.get(*index) {
                Some(requirement) => (
                    format!("missing host interface {}", requirement.interface),
                    requirement.describe_offer(&host.interfaces, self.snapshot.implicit_interfaces()),
                ),
                None => ("missing a host interface".into(), String::new()),
            },
            Reason::CpuAboveThreshold {
                usage_bp,
                threshold_bp,
            } => (
                format!("CPU usage above {}", percent(*threshold_bp)),
                format!(
                    "CPU usage {} is above the {} threshold",
                    percent(*usage_bp),
                    percent(*threshold_bp)
                ),
            ),
            Reason::MemoryAboveThreshold {
                used_bp,
                threshold_bp,
            } => (
                format!("memory usage above {}", percent(*threshold_bp)),
                format!(
                    "memory usage would be {} with this workload, above the {} threshold",
                    percent(*used_bp),
                    percent(*threshold_bp)
                ),
            ),
            Reason::Other { summary, detail } => (summary.clone(), detail.clone()),
        }
    }
}

/// Formats basis points as a percentage: `8000` → `80%`, `8050` → `80.5%`, `8025` → `80.25%`.
pub fn percent(bp: u32) -> String {
    let mut text = format!("{}", bp / 100);
    let fraction = bp % 100;
    if fraction != 0 {
        let _ = write!(text, ".{fraction:02}");
        while text.ends_with('0') {
            text.pop();
        }
    }
    text.push('%');
    text
}

/// Filter name of the Ready/draining check.
pub const READINESS: &str = "readiness";
/// Filter name of the environment check.
pub const ENVIRONMENT: &str = "environment";
/// Filter name of the host selector check.
pub const SELECTOR: &str = "selector";
/// Filter name of the interface compatibility check.
pub const INTERFACES: &str = "interfaces";

/// Which environment a workload's hosts must be in, following wasmCloud's matrix of `spec.environment`
/// and the operator's `allowSharedHosts`:
///
/// | `spec.environment` | `allowSharedHosts` | hosts must be in |
/// |---|---|---|
/// | set, ≠ namespace | true | that environment |
/// | set, ≠ namespace | false | — rejected ([`ScheduleError::CrossEnvironmentDenied`]) |
/// | set, = namespace | any | the namespace |
/// | unset | true | any environment |
/// | unset | false | the namespace |
pub fn resolve_environment(
    request: &WorkloadRequest,
    allow_shared_hosts: bool,
) -> Result<Option<&str>, ScheduleError> {
    match request
        .environment
        .as_deref()
        .filter(|environment| !environment.is_empty())
    {
        Some(environment) if environment != request.namespace => {
            if allow_shared_hosts {
                Ok(Some(environment))
            } else {
                Err(ScheduleError::CrossEnvironmentDenied {
                    environment: environment.to_owned(),
                    namespace: request.namespace.clone(),
                })
            }
        }
        Some(_) => Ok(Some(&request.namespace)),
        None if allow_shared_hosts => Ok(None),
        None => Ok(Some(&request.namespace)),
    }
}

/// Why a filter turned a host down. Built-in reasons are cheap to make; the text is produced only when no
/// host is left (see [`Context::explain`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The host is not Ready.
    NotReady,
    /// The host is draining.
    Draining,
    /// The host is in another environment.
    EnvironmentMismatch,
    /// The host lacks the selector's label at this position (in key order), or has another value.
    LabelMismatch {
        /// Position in the selector.
        index: usize,
    },
    /// The host lacks the required interface at this position of `host_interfaces`.
    MissingInterface {
        /// Position in the workload's interface list.
        index: usize,
    },
    /// The host's CPU usage is above a threshold.
    CpuAboveThreshold {
        /// Usage in basis points.
        usage_bp: u32,
        /// Threshold in basis points.
        threshold_bp: u32,
    },
    /// The host's memory usage would be above a threshold.
    MemoryAboveThreshold {
        /// Usage in basis points, with the workload.
        used_bp: u32,
        /// Threshold in basis points.
        threshold_bp: u32,
    },
    /// Any other reason, from a policy's own filter.
    Other {
        /// Short text to group hosts by, e.g. `"in maintenance"`.
        summary: String,
        /// This host's details.
        detail: String,
    },
}

impl Reason {
    /// Hosts turned down for reasons with equal keys share one summary text within a decision.
    pub(crate) fn group_key(&self) -> (u8, u64, Option<&str>) {
        match self {
            Reason::NotReady => (0, 0, None),
            Reason::Draining => (1, 0, None),
            Reason::EnvironmentMismatch => (2, 0, None),
            Reason::LabelMismatch { .. } => (3, 0, None),
            Reason::MissingInterface { index } => (4, *index as u64, None),
            Reason::CpuAboveThreshold { threshold_bp, .. } => (5, u64::from(*threshold_bp), None),
            Reason::MemoryAboveThreshold { threshold_bp, .. } => (6, u64::from(*threshold_bp), None),
            Reason::Other { summary, .. } => (7, 0, Some(summary)),
        }
    }
}

/// A filter's verdict against one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The filter's name.
    pub filter: String,
    /// Why.
    pub reason: Reason,
}

/// One host turned down, as users see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRejection {
    /// The host's ID.
    pub host_id: String,
    /// The host's name.
    pub host_name: String,
    /// The filter that turned it down.
    pub filter: String,
    /// Why, in a few words shared by every host turned down for the same reason.
    pub summary: String,
    /// Why, with this host's figures.
    pub detail: String,
}

/// Decides whether a host may run a workload. Filters run in order; the first that rejects a host decides.
pub trait Filter: Send + Sync {
    /// Name shown in rejections.
    fn name(&self) -> &str;
    /// `Ok` if the host may run the workload, otherwise why not.
    fn filter(&self, cx: &Context<'_>, host: &HostInfo) -> Result<(), Reason>;
}

/// Ranks the hosts that passed every filter: higher is better. Scores are summed with weights; ties are
/// broken by the seeded draw.
pub trait Scorer: Send + Sync {
    /// Name, for diagnostics.
    fn name(&self) -> &str;
    /// The host's score for this workload.
    fn score(&self, cx: &Context<'_>, host: &HostInfo) -> i64;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(namespace: &str, environment: Option<&str>) -> WorkloadRequest {
        WorkloadRequest {
            namespace: namespace.into(),
            environment: environment.map(Into::into),
            ..WorkloadRequest::default()
        }
    }

    #[test]
    fn environment_matrix_matches_wasmcloud() {
        let cases = [
            // (spec.environment, allowSharedHosts, expected filter or None for "denied")
            (Some("prod"), true, Some(Some("prod"))),
            (Some("prod"), false, None),
            (Some("team-a"), true, Some(Some("team-a"))),
            (Some("team-a"), false, Some(Some("team-a"))),
            (None, true, Some(None)),
            (None, false, Some(Some("team-a"))),
            (Some(""), true, Some(None)),
            (Some(""), false, Some(Some("team-a"))),
        ];
        for (environment, allow, expected) in cases {
            let request = request("team-a", environment);
            let result = resolve_environment(&request, allow);
            match expected {
                Some(filter) => assert_eq!(result.unwrap(), filter, "{environment:?} allow={allow}"),
                None => {
                    let error = result.unwrap_err();
                    assert_eq!(
                        error,
                        ScheduleError::CrossEnvironmentDenied {
                            environment: "prod".into(),
                            namespace: "team-a".into()
                        }
                    );
                    assert!(error.to_string().contains("allowSharedHosts=false"), "{error}");
                }
            }
        }
    }

    #[test]
    fn percent_formats_basis_points() {
        assert_eq!(percent(8000), "80%");
        assert_eq!(percent(8050), "80.5%");
        assert_eq!(percent(8025), "80.25%");
        assert_eq!(percent(5), "0.05%");
        assert_eq!(percent(0), "0%");
    }
}
