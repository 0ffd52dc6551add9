//! What the operator has heard from each host, kept in memory: the latest heartbeat, when it arrived,
//! the host's heartbeat interval, probe bookkeeping, and which Host object name each host ID holds.
//!
//! Pure data: no I/O and no clock of its own (every method takes `now`), so the I/O layer wraps it in a
//! lock and tests drive it directly. Every replica keeps one (the heartbeat subscription runs on
//! followers too), so a new leader starts with a full picture.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;
use weft_host_api::{HostHeartbeat, subjects};

use super::health::Liveness;

/// How many recent gaps between heartbeats the interval estimate looks at.
const GAPS: usize = 8;
/// How long the heartbeats of a host whose Host was deleted (its pod terminating, or by hand) are
/// ignored, so a draining host does not register again.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(3600);

/// One host as heard.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The latest heartbeat (pushed or a probe reply).
    pub heartbeat: HostHeartbeat,
    /// When it arrived, on the wall clock (the Host's `lastSeen`).
    pub heard_at: Timestamp,
    /// The Host object name this host holds.
    pub name: String,
    /// The name it asked for but could not have (another live host holds it).
    pub wanted_name: Option<String>,
    /// When this process first heard it.
    pub first_heard: Instant,
    /// Liveness facts for the health decision.
    pub live: Liveness,
    gaps: VecDeque<Duration>,
    /// The last pushed heartbeat's arrival and the connection epoch it arrived in.
    last_push: Option<(Instant, u64)>,
    advertised: Option<Duration>,
}

impl Observed {
    /// The heartbeat interval: the advertised one or the largest recent gap, whichever is larger.
    pub fn interval(&self) -> Option<Duration> {
        let observed = self.gaps.iter().max().copied();
        match (self.advertised, observed) {
            (Some(a), Some(o)) => Some(a.max(o)),
            (a, o) => a.or(o),
        }
    }
}

/// What a Host object named like a heartbeat's friendly name belongs to, from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameHolder {
    /// Its `hostId`.
    pub host_id: String,
    /// Its `hostname`.
    pub hostname: Option<String>,
    /// Its `httpPort`.
    pub http_port: Option<u32>,
    /// It is being deleted.
    pub deleting: bool,
    /// When this process last heard the host behind it (`None`: never).
    pub last_heard: Option<Instant>,
}

/// Who may have a contested name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nobody else holds it.
    Free,
    /// The holder is a previous process at the same address (a restarted host): the newcomer takes
    /// over and the holder's Host goes.
    Supersedes,
    /// Another live host holds it: the newcomer takes a fallback name.
    Conflict,
}

/// Decides a contest for a name between `holder` and a newcomer heard first at `first_heard` at
/// `hostname:http_port`.
pub fn claim(holder: Option<&NameHolder>, newcomer: &HostHeartbeat, first_heard: Instant) -> Claim {
    let Some(h) = holder else {
        return Claim::Free;
    };
    if h.host_id == newcomer.id || h.deleting {
        return Claim::Free;
    }
    let same_address = h.hostname.as_deref() == Some(newcomer.hostname.as_str())
        && !newcomer.hostname.is_empty()
        && h.http_port.unwrap_or(0) == newcomer.http_port;
    let quiet_since = h.last_heard.is_none_or(|t| t < first_heard);
    if same_address && quiet_since {
        Claim::Supersedes
    } else {
        Claim::Conflict
    }
}

/// The Host name a heartbeat asks for: its friendly name made a valid object name, or `host-<id>`.
pub fn preferred_name(hb: &HostHeartbeat) -> String {
    let cleaned = sanitize(&hb.friendly_name);
    if cleaned.is_empty() {
        format!("host-{}", sanitize(&hb.id))
    } else {
        cleaned
    }
}

/// The name a host gets when another live host holds its preferred one: `<preferred>-<first 8 of id>`.
pub fn fallback_name(preferred: &str, host_id: &str) -> String {
    let short: String = sanitize(host_id).chars().filter(|c| *c != '-').take(8).collect();
    let base: String = preferred.chars().take(253 - 9).collect();
    format!("{}-{short}", base.trim_end_matches(['-', '.']))
}

/// Lower-cases and keeps what a DNS subdomain allows (`[a-z0-9.-]`, ≤ 253, alphanumeric at both ends).
fn sanitize(s: &str) -> String {
    let lowered: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(253)
        .collect();
    lowered.trim_matches(['-', '.']).to_string()
}

/// What recording a heartbeat did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The Host name the host holds.
    pub name: String,
    /// First heartbeat from this host ID (in this process).
    pub new: bool,
    /// It wanted a name held by another live host.
    pub conflict_with: Option<String>,
}

/// Every host heard, by ID.
#[derive(Debug, Default)]
pub struct Registry {
    hosts: HashMap<String, Observed>,
    /// Host name → the host ID holding it.
    names: HashMap<String, String>,
    /// Probe bookkeeping of hosts known only from their Host object (e.g. after an operator restart).
    unheard: HashMap<String, Liveness>,
    /// Host IDs whose heartbeats are ignored, and since when.
    tombstones: HashMap<String, Instant>,
    /// `hostname:httpPort` → the host ID registered there last.
    addresses: HashMap<(String, u32), String>,
}

impl Registry {
    /// Records a pushed heartbeat at `now` (`wall` on the wall clock) in connection `epoch`; `holder`
    /// says who holds the preferred name in the Host cache (consulted for a host's first heartbeat).
    pub fn record_heartbeat(
        &mut self,
        hb: HostHeartbeat,
        now: Instant,
        wall: Timestamp,
        epoch: u64,
        holder: impl FnOnce(&str) -> Option<NameHolder>,
    ) -> Option<Recorded> {
        if let Some(buried) = self.tombstones.get(&hb.id) {
            if now.saturating_duration_since(*buried) < TOMBSTONE_TTL {
                return None;
            }
            self.tombstones.remove(&hb.id);
        }
        let advertised = hb
            .labels
            .get(subjects::HEARTBEAT_INTERVAL_LABEL)
            .and_then(|v| subjects::parse_heartbeat_interval_label(v));
        if let Some(obs) = self.hosts.get_mut(&hb.id) {
            if let Some((prev, prev_epoch)) = obs.last_push
                && prev_epoch == epoch
            {
                // A gap that spans one of our own outages says nothing about the host.
                obs.gaps.push_back(now.saturating_duration_since(prev));
                if obs.gaps.len() > GAPS {
                    obs.gaps.pop_front();
                }
            }
            obs.last_push = Some((now, epoch));
            obs.advertised = advertised;
            obs.heartbeat = hb;
            obs.heard_at = wall;
            obs.live.last_heard = Some(now);
            obs.live.interval = obs.interval();
            return Some(Recorded {
                name: obs.name.clone(),
                new: false,
                conflict_with: None,
            });
        }
        let preferred = preferred_name(&hb);
        // A holder in this registry first (it knows when it was last heard), then the cache.
        let registry_holder = self
            .names
            .get(&preferred)
            .and_then(|id| self.hosts.get(id))
            .map(|o| NameHolder {
                host_id: o.heartbeat.id.clone(),
                hostname: Some(o.heartbeat.hostname.clone()),
                http_port: Some(o.heartbeat.http_port),
                deleting: false,
                last_heard: o.live.last_heard,
            });
        let holder = registry_holder.or_else(|| holder(&preferred));
        let (name, conflict_with) = match claim(holder.as_ref(), &hb, now) {
            Claim::Free | Claim::Supersedes => (preferred.clone(), None),
            Claim::Conflict => (fallback_name(&preferred, &hb.id), holder.map(|h| h.host_id)),
        };
        let mut live = self.unheard.remove(&hb.id).unwrap_or_default();
        live.last_heard = Some(now);
        let mut obs = Observed {
            heartbeat: hb,
            heard_at: wall,
            name: name.clone(),
            wanted_name: conflict_with.as_ref().map(|_| preferred),
            first_heard: now,
            live,
            gaps: VecDeque::new(),
            last_push: Some((now, epoch)),
            advertised,
        };
        obs.live.interval = obs.interval();
        let id = obs.heartbeat.id.clone();
        if !obs.heartbeat.hostname.is_empty() {
            self.addresses.insert(
                (obs.heartbeat.hostname.clone(), obs.heartbeat.http_port),
                id.clone(),
            );
        }
        // A superseded holder keeps its observation until its Host is gone; the name now points here.
        self.names.insert(name.clone(), id.clone());
        self.hosts.insert(id, obs);
        Some(Recorded {
            name,
            new: true,
            conflict_with,
        })
    }

    /// Forgets a host and ignores its heartbeats for [`TOMBSTONE_TTL`] (its Host was deleted while it
    /// may still be running, e.g. its pod is terminating).
    pub fn bury(&mut self, host_id: &str, now: Instant) {
        self.forget(host_id);
        self.tombstones
            .retain(|_, t| now.saturating_duration_since(*t) < TOMBSTONE_TTL);
        self.tombstones.insert(host_id.to_string(), now);
    }

    /// Records a probe reply: the host is heard (its gap is not an interval sample). Returns the name it
    /// holds, or `None` for a host never heard before (a probe reply does not register a host: its next
    /// pushed heartbeat does).
    pub fn record_probe_reply(&mut self, hb: HostHeartbeat, now: Instant, wall: Timestamp) -> Option<String> {
        match self.hosts.get_mut(&hb.id) {
            Some(obs) => {
                obs.live.probe_in_flight = false;
                obs.live.last_heard = Some(now);
                obs.heard_at = wall;
                obs.heartbeat = hb;
                Some(obs.name.clone())
            }
            None => {
                let live = self.unheard.entry(hb.id.clone()).or_default();
                live.probe_in_flight = false;
                live.last_heard = Some(now);
                None
            }
        }
    }

    /// Records a probe sent at `now` (one at a time).
    pub fn probe_sent(&mut self, host_id: &str, now: Instant) {
        let live = match self.hosts.get_mut(host_id) {
            Some(obs) => &mut obs.live,
            None => self.unheard.entry(host_id.to_string()).or_default(),
        };
        live.probe_in_flight = true;
        live.last_probe_sent = Some(now);
    }

    /// Records that the probe sent at `sent` got no (valid) reply.
    pub fn probe_failed(&mut self, host_id: &str, sent: Instant) {
        let live = match self.hosts.get_mut(host_id) {
            Some(obs) => &mut obs.live,
            None => self.unheard.entry(host_id.to_string()).or_default(),
        };
        live.probe_in_flight = false;
        live.last_probe_failed = Some(sent);
    }

    /// The liveness facts of a host (empty for one never heard or probed).
    pub fn liveness(&self, host_id: &str) -> Liveness {
        self.hosts
            .get(host_id)
            .map(|o| o.live.clone())
            .or_else(|| self.unheard.get(host_id).cloned())
            .unwrap_or_default()
    }

    /// The host as heard.
    pub fn get(&self, host_id: &str) -> Option<&Observed> {
        self.hosts.get(host_id)
    }

    /// The host ID that holds the Host name `name`.
    pub fn id_for_name(&self, name: &str) -> Option<&str> {
        self.names.get(name).map(String::as_str)
    }

    /// Moves a host to its fallback name because a live host holds the one it has; returns the new
    /// name.
    pub fn move_to_fallback(&mut self, host_id: &str) -> Option<String> {
        let obs = self.hosts.get_mut(host_id)?;
        let old = obs.name.clone();
        let new = fallback_name(&old, host_id);
        if self.names.get(&old).map(String::as_str) == Some(host_id) {
            self.names.remove(&old);
        }
        obs.wanted_name = Some(old);
        obs.name = new.clone();
        self.names.insert(new.clone(), host_id.to_string());
        Some(new)
    }

    /// The host that replaced `host_id` at `hostname:http_port`: a different host registered there after
    /// `host_id` was last heard (a restarted process at the same address). Returns its ID.
    pub fn successor_at(&self, hostname: &str, http_port: u32, host_id: &str) -> Option<&str> {
        let newest = self.addresses.get(&(hostname.to_string(), http_port))?;
        if newest == host_id {
            return None;
        }
        let newcomer = self.hosts.get(newest)?;
        let quiet = self
            .liveness(host_id)
            .last_heard
            .is_none_or(|t| t < newcomer.first_heard);
        quiet.then_some(newest.as_str())
    }

    /// Forgets a host whose Host object is gone (a later heartbeat registers it again).
    pub fn forget(&mut self, host_id: &str) {
        self.unheard.remove(host_id);
        if let Some(obs) = self.hosts.remove(host_id) {
            if self.names.get(&obs.name).map(String::as_str) == Some(host_id) {
                self.names.remove(&obs.name);
            }
            let address = (obs.heartbeat.hostname, obs.heartbeat.http_port);
            if self.addresses.get(&address).map(String::as_str) == Some(host_id) {
                self.addresses.remove(&address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(id: &str, name: &str, hostname: &str) -> HostHeartbeat {
        HostHeartbeat {
            id: id.into(),
            friendly_name: name.into(),
            hostname: hostname.into(),
            http_port: 9191,
            ..Default::default()
        }
    }

    fn wall() -> Timestamp {
        Timestamp::UNIX_EPOCH
    }

    #[test]
    fn names_are_valid_object_names() {
        assert_eq!(preferred_name(&hb("ID-1", "Calm_Otter.", "")), "calm-otter");
        assert_eq!(preferred_name(&hb("ID-1", "", "")), "host-id-1");
        assert_eq!(
            fallback_name("calm-otter", "5f0c9a3e-1111-2222"),
            "calm-otter-5f0c9a3e"
        );
        let long = "a".repeat(300);
        assert!(fallback_name(&sanitize(&long), "abcdef0123").len() <= 253);
    }

    #[test]
    fn the_interval_is_the_larger_of_advertised_and_observed_and_ignores_our_outages() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        let mut beat = hb("a", "calm-otter", "10.0.0.1");
        beat.labels
            .insert(subjects::HEARTBEAT_INTERVAL_LABEL.into(), "1000ms".into());
        r.record_heartbeat(beat.clone(), t0, wall(), 1, |_| None).unwrap();
        assert_eq!(r.liveness("a").interval, Some(Duration::from_secs(1)));
        r.record_heartbeat(beat.clone(), t0 + Duration::from_millis(1200), wall(), 1, |_| {
            None
        })
        .unwrap();
        assert_eq!(r.liveness("a").interval, Some(Duration::from_millis(1200)));
        // A 30 s gap across a reconnection (new epoch) is not a sample.
        r.record_heartbeat(beat.clone(), t0 + Duration::from_secs(31), wall(), 2, |_| None)
            .unwrap();
        assert_eq!(r.liveness("a").interval, Some(Duration::from_millis(1200)));
        // A wasmCloud host advertises nothing: two heartbeats 15 s apart say 15 s.
        r.record_heartbeat(hb("w", "wasm-host", "10.0.0.9"), t0, wall(), 1, |_| None)
            .unwrap();
        assert_eq!(r.liveness("w").interval, None);
        r.record_heartbeat(
            hb("w", "wasm-host", "10.0.0.9"),
            t0 + Duration::from_secs(15),
            wall(),
            1,
            |_| None,
        )
        .unwrap();
        assert_eq!(r.liveness("w").interval, Some(Duration::from_secs(15)));
    }

    #[test]
    fn two_live_hosts_with_one_friendly_name_both_get_a_host() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        let a = r
            .record_heartbeat(hb("aaaa1111", "calm-otter", "10.0.0.1"), t0, wall(), 1, |_| None)
            .unwrap();
        assert_eq!(
            a,
            Recorded {
                name: "calm-otter".into(),
                new: true,
                conflict_with: None
            }
        );
        let b = r
            .record_heartbeat(
                hb("bbbb2222", "calm-otter", "10.0.0.2"),
                t0 + Duration::from_millis(10),
                wall(),
                1,
                |_| None,
            )
            .unwrap();
        assert_eq!(b.name, "calm-otter-bbbb2222");
        assert_eq!(b.conflict_with.as_deref(), Some("aaaa1111"));
        assert_eq!(r.id_for_name("calm-otter"), Some("aaaa1111"));
        assert_eq!(r.id_for_name("calm-otter-bbbb2222"), Some("bbbb2222"));
        // Names stick: later heartbeats keep them.
        let again = r
            .record_heartbeat(
                hb("bbbb2222", "calm-otter", "10.0.0.2"),
                t0 + Duration::from_secs(1),
                wall(),
                1,
                |_| None,
            )
            .unwrap();
        assert_eq!(again.name, "calm-otter-bbbb2222");
        assert!(!again.new);
    }

    #[test]
    fn a_restarted_process_at_the_same_address_supersedes_its_predecessor() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        r.record_heartbeat(hb("old", "pod-host", "10.0.0.1"), t0, wall(), 1, |_| None)
            .unwrap();
        let new = r
            .record_heartbeat(
                hb("new", "pod-host", "10.0.0.1"),
                t0 + Duration::from_secs(2),
                wall(),
                1,
                |_| None,
            )
            .unwrap();
        assert_eq!(new.name, "pod-host");
        assert_eq!(new.conflict_with, None);
        assert_eq!(r.id_for_name("pod-host"), Some("new"));
        // A Host in the cache from before an operator restart, same address: superseded too.
        let mut r = Registry::default();
        let cached = NameHolder {
            host_id: "old".into(),
            hostname: Some("10.0.0.1".into()),
            http_port: Some(9191),
            deleting: false,
            last_heard: None,
        };
        let new = r
            .record_heartbeat(hb("new", "pod-host", "10.0.0.1"), t0, wall(), 1, |_| {
                Some(cached.clone())
            })
            .unwrap();
        assert_eq!(new.name, "pod-host");
        // Elsewhere: a conflict, not a takeover.
        let mut r = Registry::default();
        let other = NameHolder {
            hostname: Some("10.0.0.7".into()),
            ..cached
        };
        let new = r
            .record_heartbeat(hb("new", "pod-host", "10.0.0.1"), t0, wall(), 1, |_| Some(other))
            .unwrap();
        assert_eq!(new.name, "pod-host-new");
    }

    #[test]
    fn a_new_process_at_an_address_is_the_successor_of_the_quiet_one() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        r.record_heartbeat(hb("old", "first-name", "10.0.0.1"), t0, wall(), 1, |_| None)
            .unwrap();
        assert_eq!(r.successor_at("10.0.0.1", 9191, "old"), None);
        r.record_heartbeat(
            hb("new", "other-name", "10.0.0.1"),
            t0 + Duration::from_secs(1),
            wall(),
            1,
            |_| None,
        )
        .unwrap();
        assert_eq!(r.successor_at("10.0.0.1", 9191, "old"), Some("new"));
        assert_eq!(r.successor_at("10.0.0.1", 9191, "new"), None);
        assert_eq!(
            r.successor_at("10.0.0.1", 80, "old"),
            None,
            "another port is another host"
        );
        // Never heard (a Host from before a restart): superseded too.
        assert_eq!(r.successor_at("10.0.0.1", 9191, "ancient"), Some("new"));
        // The old one still speaks: both are alive, nobody is superseded.
        r.record_heartbeat(
            hb("old", "first-name", "10.0.0.1"),
            t0 + Duration::from_secs(2),
            wall(),
            1,
            |_| None,
        )
        .unwrap();
        assert_eq!(r.successor_at("10.0.0.1", 9191, "old"), None);
        r.forget("new");
        assert_eq!(r.successor_at("10.0.0.1", 9191, "ancient"), None);
    }

    #[test]
    fn claims() {
        let t0 = Instant::now();
        let newcomer = hb("n", "x", "10.0.0.1");
        let holder = NameHolder {
            host_id: "o".into(),
            hostname: Some("10.0.0.1".into()),
            http_port: Some(9191),
            deleting: false,
            last_heard: Some(t0),
        };
        assert_eq!(claim(None, &newcomer, t0), Claim::Free);
        assert_eq!(
            claim(Some(&holder), &newcomer, t0 + Duration::from_secs(1)),
            Claim::Supersedes
        );
        assert_eq!(
            claim(Some(&holder), &newcomer, t0),
            Claim::Conflict,
            "heard after the newcomer appeared: both are alive"
        );
        let deleting = NameHolder {
            deleting: true,
            ..holder.clone()
        };
        assert_eq!(claim(Some(&deleting), &newcomer, t0), Claim::Free);
        let same = NameHolder {
            host_id: "n".into(),
            ..holder
        };
        assert_eq!(claim(Some(&same), &newcomer, t0), Claim::Free);
    }

    #[test]
    fn probes_are_tracked_for_heard_and_unheard_hosts() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        r.probe_sent("ghost", t0);
        assert!(r.liveness("ghost").probe_in_flight);
        r.probe_failed("ghost", t0);
        let live = r.liveness("ghost");
        assert!(!live.probe_in_flight);
        assert_eq!(live.last_probe_failed, Some(t0));
        assert_eq!(live.last_heard, None);
        r.record_heartbeat(hb("a", "calm-otter", "10.0.0.1"), t0, wall(), 1, |_| None)
            .unwrap();
        r.probe_sent("a", t0 + Duration::from_secs(2));
        let name = r.record_probe_reply(
            hb("a", "calm-otter", "10.0.0.1"),
            t0 + Duration::from_millis(2100),
            wall(),
        );
        assert_eq!(name.as_deref(), Some("calm-otter"));
        assert_eq!(r.liveness("a").last_heard, Some(t0 + Duration::from_millis(2100)));
        r.forget("a");
        assert!(r.get("a").is_none());
        assert_eq!(r.id_for_name("calm-otter"), None);
    }

    #[test]
    fn a_buried_host_does_not_register_again_until_its_tombstone_expires() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        r.record_heartbeat(hb("a", "calm-otter", "10.0.0.1"), t0, wall(), 1, |_| None)
            .unwrap();
        r.bury("a", t0);
        assert!(r.get("a").is_none());
        assert!(
            r.record_heartbeat(
                hb("a", "calm-otter", "10.0.0.1"),
                t0 + Duration::from_secs(5),
                wall(),
                1,
                |_| None
            )
            .is_none()
        );
        // Another process (new ID) at the same place registers at once.
        assert!(
            r.record_heartbeat(
                hb("b", "calm-otter", "10.0.0.1"),
                t0 + Duration::from_secs(5),
                wall(),
                1,
                |_| None
            )
            .is_some()
        );
        let later = t0 + TOMBSTONE_TTL + Duration::from_secs(1);
        assert!(
            r.record_heartbeat(hb("a", "calm-otter", "10.0.0.1"), later, wall(), 1, |_| None)
                .is_some()
        );
    }

    #[test]
    fn a_host_moved_to_its_fallback_name_frees_the_other() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        r.record_heartbeat(hb("bbbb2222", "calm-otter", "10.0.0.2"), t0, wall(), 1, |_| None)
            .unwrap();
        assert_eq!(
            r.move_to_fallback("bbbb2222").as_deref(),
            Some("calm-otter-bbbb2222")
        );
        assert_eq!(r.id_for_name("calm-otter"), None);
        assert_eq!(
            r.get("bbbb2222").unwrap().wanted_name.as_deref(),
            Some("calm-otter")
        );
    }
}
