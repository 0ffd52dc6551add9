//! The pure health decision for one host: from when it was last heard (heartbeat or probe reply), how
//! often it heartbeats, what the last probe said and whether the operator's own NATS link is up, decide
//! whether it is Ready, suspect (Ready Unknown), dead (Ready False, then deleted) or whether nothing can
//! be said yet, whether to probe it now and when to look again.
//!
//! The rules:
//! - A host heard within `suspect_after` (= `missed_heartbeats` × its interval, at least
//!   `min_suspect`) is Ready.
//! - A host silent for longer than about one and a half intervals is probed
//!   (`runtime.host.<id>.heartbeat`), again every `probe_every` while it stays silent.
//! - It is suspect once silent for `suspect_after`, or sooner (after `min_suspect`) when a probe sent
//!   since it was last heard failed.
//! - It is dead only when silent for `dead_after` (the TTL, and never less than `suspect_after` plus one
//!   probe timeout) **and** a probe sent since it was last heard failed.
//! - Silence is only counted while the operator can hear: from the later of "last heard" and "our NATS
//!   connection came up". While the connection is down nothing changes (no host degrades because the
//!   operator is deaf), and after it comes back (or after a restart or leader change) a host can be dead
//!   only after a full TTL of listening (wasmCloud #5502).
//!
//! The interval is what the host advertises (`weft.dev/heartbeat-interval`) or the largest gap seen
//! between its recent heartbeats, whichever is larger; before either is known it is
//! `default_interval` (15 s, what a wasmCloud host sends), so a slow host never flaps.

use std::time::Duration;

use tokio::time::Instant;

/// The health settings (operator flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Silence after which a host is declared dead (Ready False) and deleted: `--host-ttl`.
    pub ttl: Duration,
    /// Heartbeats a host may miss before it is suspect (Ready Unknown).
    pub missed_heartbeats: u32,
    /// The interval assumed for a host until its interval is known.
    pub default_interval: Duration,
    /// The shortest silence that makes a host suspect.
    pub min_suspect: Duration,
    /// How long a probe waits for the reply.
    pub probe_timeout: Duration,
    /// How often a silent host is probed again.
    pub probe_every: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            missed_heartbeats: 3,
            default_interval: weft_host_api::subjects::DEFAULT_HEARTBEAT_INTERVAL,
            min_suspect: Duration::from_secs(2),
            probe_timeout: Duration::from_secs(1),
            probe_every: Duration::from_secs(1),
        }
    }
}

/// What the operator knows about one host's liveness.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Liveness {
    /// When it was last heard from (a heartbeat or a probe reply).
    pub last_heard: Option<Instant>,
    /// Its heartbeat interval, if known (advertised or observed).
    pub interval: Option<Duration>,
    /// When the last probe was sent, and whether one is still waiting for its reply.
    pub last_probe_sent: Option<Instant>,
    /// A probe is in flight.
    pub probe_in_flight: bool,
    /// When the last probe that failed was sent.
    pub last_probe_failed: Option<Instant>,
}

/// The operator's own NATS link, as far as health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bus {
    /// Since when the connection has been up (`None` while it is down).
    pub connected_since: Option<Instant>,
}

/// The verdict on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Heard recently.
    Ready,
    /// Silent too long: Ready Unknown.
    Suspect {
        /// How long it has been silent (as far as the operator could hear).
        silence: Duration,
        /// A probe since it was last heard failed.
        probe_failed: bool,
    },
    /// Silent beyond the TTL and not answering probes: Ready False, delete it.
    Dead {
        /// How long it has been silent.
        silence: Duration,
    },
    /// Nothing can be said (the operator's link is down, or it has not listened long enough since it
    /// came up): keep the conditions as they are.
    Hold,
}

/// What to do about a host now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assessment {
    /// The verdict.
    pub verdict: Verdict,
    /// Send a probe now.
    pub probe: bool,
    /// When to assess again if nothing is heard meanwhile (`None`: only when something changes).
    pub recheck_in: Option<Duration>,
    /// The interval the decision assumed.
    pub interval: Duration,
    /// The silence after which the host is suspect.
    pub suspect_after: Duration,
    /// The silence after which the host is dead (given a failed probe).
    pub dead_after: Duration,
}

impl HealthConfig {
    /// The silence after which a host with `interval` is suspect.
    pub fn suspect_after(&self, interval: Duration) -> Duration {
        (interval * self.missed_heartbeats.max(1)).max(self.min_suspect)
    }

    /// The silence after which a host with `interval` is dead (given a failed probe).
    pub fn dead_after(&self, interval: Duration) -> Duration {
        self.ttl.max(self.suspect_after(interval) + self.probe_timeout)
    }

    /// The silence after which a host with `interval` is first probed.
    pub fn probe_after(&self, interval: Duration) -> Duration {
        (interval + interval / 2).min(self.suspect_after(interval))
    }
}

/// Decides about one host at `now`.
pub fn assess(live: &Liveness, bus: Bus, cfg: &HealthConfig, now: Instant) -> Assessment {
    let interval = live.interval.unwrap_or(cfg.default_interval);
    let suspect_after = cfg.suspect_after(interval);
    let dead_after = cfg.dead_after(interval);
    let probe_after = cfg.probe_after(interval);
    let mut out = Assessment {
        verdict: Verdict::Hold,
        probe: false,
        recheck_in: None,
        interval,
        suspect_after,
        dead_after,
    };
    let Some(since) = bus.connected_since else {
        // Deaf: no verdict, no probe; the connection coming back triggers a new look.
        return out;
    };
    // Silence counts only from when the operator could hear.
    let reference = live.last_heard.map_or(since, |h| h.max(since));
    let silence = now.saturating_duration_since(reference);
    let probe_failed = live.last_probe_failed.is_some_and(|p| p >= reference);
    let heard_recently = live
        .last_heard
        .is_some_and(|h| now.saturating_duration_since(h) < suspect_after);

    out.verdict = if heard_recently && !(probe_failed && silence >= cfg.min_suspect) {
        Verdict::Ready
    } else if silence >= dead_after && probe_failed {
        Verdict::Dead { silence }
    } else if silence >= suspect_after || (probe_failed && silence >= cfg.min_suspect) {
        Verdict::Suspect {
            silence,
            probe_failed,
        }
    } else if heard_recently {
        Verdict::Ready
    } else {
        Verdict::Hold
    };

    let probe_due_at = match live.last_probe_sent {
        Some(sent) if sent >= reference => sent + cfg.probe_every,
        _ => reference + probe_after,
    };
    if matches!(out.verdict, Verdict::Dead { .. }) {
        return out;
    }
    if !live.probe_in_flight && now >= probe_due_at {
        out.probe = true;
    }
    // The next moment something could change if nothing is heard: a probe falls due, the host becomes
    // suspect or dead. A probe in flight re-triggers a look when it ends.
    let mut next: Vec<Instant> = vec![reference + suspect_after, reference + dead_after];
    if !live.probe_in_flight {
        next.push(if out.probe {
            now + cfg.probe_every
        } else {
            probe_due_at
        });
    }
    if probe_failed {
        next.push(reference + cfg.min_suspect);
    }
    out.recheck_in = next
        .into_iter()
        .filter(|t| *t > now)
        .min()
        .map(|t| t.saturating_duration_since(now));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    struct Clock(Instant);
    impl Clock {
        fn at(&self, s: f64) -> Instant {
            self.0 + secs(s)
        }
    }

    fn clock() -> Clock {
        Clock(Instant::now())
    }

    fn up_since(t: Instant) -> Bus {
        Bus {
            connected_since: Some(t),
        }
    }

    fn weft_host(last_heard: Instant) -> Liveness {
        Liveness {
            last_heard: Some(last_heard),
            interval: Some(secs(1.0)),
            ..Default::default()
        }
    }

    #[test]
    fn a_host_heard_within_its_deadline_is_ready() {
        let c = clock();
        let cfg = HealthConfig::default();
        let a = assess(&weft_host(c.at(100.0)), up_since(c.at(0.0)), &cfg, c.at(100.5));
        assert_eq!(a.verdict, Verdict::Ready);
        assert!(!a.probe);
        assert_eq!(a.suspect_after, secs(3.0));
        assert_eq!(a.dead_after, secs(10.0));
        // Next look: when the first probe falls due (1.5 intervals after the last heartbeat).
        assert_eq!(a.recheck_in, Some(secs(1.0)));
    }

    #[test]
    fn a_silent_weft_host_is_probed_then_suspect_within_five_seconds_then_dead_after_the_ttl() {
        let c = clock();
        let cfg = HealthConfig::default();
        let bus = up_since(c.at(0.0));
        let mut live = weft_host(c.at(100.0));
        // 1.5 s of silence: probe.
        let a = assess(&live, bus, &cfg, c.at(101.5));
        assert_eq!(a.verdict, Verdict::Ready);
        assert!(a.probe);
        live.last_probe_sent = Some(c.at(101.5));
        live.probe_in_flight = true;
        // The probe times out after 1 s.
        live.probe_in_flight = false;
        live.last_probe_failed = Some(c.at(101.5));
        let a = assess(&live, bus, &cfg, c.at(102.5));
        assert_eq!(
            a.verdict,
            Verdict::Suspect {
                silence: secs(2.5),
                probe_failed: true
            },
            "a failed probe makes it suspect after min_suspect"
        );
        assert!(a.probe, "probed again every probe_every");
        // Even without any probe answer it is suspect at 3 s.
        let no_probe = weft_host(c.at(100.0));
        assert!(matches!(
            assess(&no_probe, bus, &cfg, c.at(103.0)).verdict,
            Verdict::Suspect { .. }
        ));
        // Dead once silent for the TTL with a failed probe.
        live.last_probe_failed = Some(c.at(109.0));
        assert_eq!(
            assess(&live, bus, &cfg, c.at(110.0)).verdict,
            Verdict::Dead { silence: secs(10.0) }
        );
        // Never dead without a failed probe since it was last heard.
        assert!(matches!(
            assess(&no_probe, bus, &cfg, c.at(200.0)).verdict,
            Verdict::Suspect { .. }
        ));
    }

    #[test]
    fn an_answered_probe_keeps_a_host_ready() {
        let c = clock();
        let cfg = HealthConfig::default();
        let mut live = weft_host(c.at(100.0));
        live.last_probe_failed = Some(c.at(90.0)); // before it was last heard: irrelevant
        live.last_heard = Some(c.at(101.6)); // the probe reply
        live.last_probe_sent = Some(c.at(101.5));
        let a = assess(&live, up_since(c.at(0.0)), &cfg, c.at(102.0));
        assert_eq!(a.verdict, Verdict::Ready);
        assert!(!a.probe);
    }

    #[test]
    fn a_wasmcloud_host_heartbeating_every_15s_never_flaps() {
        let c = clock();
        let cfg = HealthConfig::default();
        let live = Liveness {
            last_heard: Some(c.at(100.0)),
            interval: Some(secs(15.0)),
            ..Default::default()
        };
        let bus = up_since(c.at(0.0));
        // Just before its next heartbeat (with jitter) it is still Ready and not even probed.
        for t in [101.0, 110.0, 114.9, 122.0] {
            let a = assess(&live, bus, &cfg, c.at(t));
            assert_eq!(a.verdict, Verdict::Ready, "at {t}");
            assert!(!a.probe, "probed only after 1.5 intervals (at {t})");
        }
        assert!(assess(&live, bus, &cfg, c.at(122.5)).probe);
        assert_eq!(assess(&live, bus, &cfg, c.at(144.9)).verdict, Verdict::Ready);
        assert!(matches!(
            assess(&live, bus, &cfg, c.at(145.0)).verdict,
            Verdict::Suspect { .. }
        ));
        // Its TTL stretches to cover three missed heartbeats and a probe.
        assert_eq!(cfg.dead_after(secs(15.0)), secs(46.0));
        // Unknown interval: the same as wasmCloud's 15 s.
        let unknown = Liveness {
            last_heard: Some(c.at(100.0)),
            ..Default::default()
        };
        assert_eq!(assess(&unknown, bus, &cfg, c.at(140.0)).verdict, Verdict::Ready);
    }

    #[test]
    fn nothing_changes_while_the_operator_is_deaf() {
        let c = clock();
        let cfg = HealthConfig::default();
        let mut live = weft_host(c.at(100.0));
        live.last_probe_failed = Some(c.at(101.0));
        let deaf = Bus {
            connected_since: None,
        };
        let a = assess(&live, deaf, &cfg, c.at(1000.0));
        assert_eq!(a.verdict, Verdict::Hold);
        assert!(!a.probe);
        assert_eq!(a.recheck_in, None);
    }

    #[test]
    fn after_a_bus_outage_silence_counts_from_the_reconnection() {
        let c = clock();
        let cfg = HealthConfig::default();
        // Last heard at 100, the operator's link was down from 101 to 130.
        let mut live = weft_host(c.at(100.0));
        let bus = up_since(c.at(130.0));
        let a = assess(&live, bus, &cfg, c.at(130.5));
        assert_eq!(a.verdict, Verdict::Hold, "no evidence either way yet");
        assert!(!a.probe, "the host gets 1.5 intervals to speak up first");
        assert!(assess(&live, bus, &cfg, c.at(131.5)).probe);
        // A probe fails right after reconnecting: suspect, but not dead before a full TTL of listening.
        live.last_probe_failed = Some(c.at(131.5));
        live.last_probe_sent = Some(c.at(131.5));
        assert!(matches!(
            assess(&live, bus, &cfg, c.at(133.0)).verdict,
            Verdict::Suspect { .. }
        ));
        live.last_probe_failed = Some(c.at(139.0));
        assert!(matches!(
            assess(&live, bus, &cfg, c.at(139.9)).verdict,
            Verdict::Suspect { .. }
        ));
        assert!(matches!(
            assess(&live, bus, &cfg, c.at(140.0)).verdict,
            Verdict::Dead { .. }
        ));
        // The host speaks up after reconnecting: ready again.
        live.last_heard = Some(c.at(141.0));
        assert_eq!(assess(&live, bus, &cfg, c.at(141.2)).verdict, Verdict::Ready);
    }

    #[test]
    fn after_an_operator_restart_known_hosts_are_held_then_probed() {
        let c = clock();
        let cfg = HealthConfig::default();
        // A Host from the cache, never heard by this process.
        let live = Liveness::default();
        let bus = up_since(c.at(0.0));
        assert_eq!(assess(&live, bus, &cfg, c.at(1.0)).verdict, Verdict::Hold);
        // Interval unknown (15 s assumed): first probe after 22.5 s, suspect at 45 s.
        assert!(!assess(&live, bus, &cfg, c.at(22.0)).probe);
        assert!(assess(&live, bus, &cfg, c.at(22.5)).probe);
        assert!(matches!(
            assess(&live, bus, &cfg, c.at(45.0)).verdict,
            Verdict::Suspect { .. }
        ));
    }

    #[test]
    fn the_ttl_never_undercuts_suspicion_plus_one_probe() {
        let cfg = HealthConfig {
            ttl: Duration::from_millis(100),
            ..Default::default()
        };
        assert_eq!(cfg.dead_after(secs(1.0)), secs(4.0));
        let wasmcloud_like = HealthConfig {
            ttl: secs(60.0),
            ..Default::default()
        };
        assert_eq!(wasmcloud_like.dead_after(secs(15.0)), secs(60.0));
    }

    #[test]
    fn in_flight_probes_are_not_doubled_and_rechecks_follow_deadlines() {
        let c = clock();
        let cfg = HealthConfig::default();
        let mut live = weft_host(c.at(100.0));
        live.last_probe_sent = Some(c.at(101.5));
        live.probe_in_flight = true;
        let a = assess(&live, up_since(c.at(0.0)), &cfg, c.at(102.0));
        assert!(!a.probe);
        assert_eq!(a.recheck_in, Some(secs(1.0)), "at 103 it becomes suspect");
    }
}
