//! What `wasi:sockets` a component may use: the pure policy from its `allowedIpNameLookups` and
//! `allowedHostLoopbackPorts` and the host's `--allow-host-loopback`.
//!
//! Deny by default. With the host's permission, a component may connect (TCP) or send (UDP) to the
//! host's loopback addresses on the ports it lists (`5432`, `5432/tcp`, `53/udp`); binding is allowed
//! only to an ephemeral port (what a connect or a UDP client does implicitly); listening and accepting
//! are never allowed. Name lookups are all or nothing here: `*` allows them, an empty list denies them,
//! and narrower entries are refused at start (the Wasmtime resolver cannot be limited per name).

use std::net::SocketAddr;

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// What a socket operation wants to do with an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketUse {
    /// Bind a socket (explicitly, or implicitly before a connect or send).
    Bind(Protocol),
    /// Connect a TCP socket.
    Connect,
    /// Listen or accept on a TCP socket.
    Serve,
    /// Send a UDP datagram, or receive one.
    Datagram,
}

/// A component's socket policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketPolicy {
    /// Host-loopback ports it may reach (empty unless the host allows loopback).
    loopback: Vec<(u16, Protocol)>,
    /// Whether it may look up names.
    pub name_lookups: bool,
}

impl SocketPolicy {
    /// The policy for a component, or every bad entry. `host_allows_loopback` is the host's
    /// `--allow-host-loopback`; without it the listed ports stay inert (as on a wasmCloud host).
    pub fn parse(
        name_lookups: &[String],
        loopback_ports: &[String],
        host_allows_loopback: bool,
    ) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let mut loopback = Vec::new();
        for entry in loopback_ports {
            match parse_port(entry) {
                Ok(mut ports) => loopback.append(&mut ports),
                Err(e) => errors.push(e),
            }
        }
        let mut lookups = false;
        for entry in name_lookups {
            match entry.trim() {
                "*" => lookups = true,
                other => errors.push(format!(
                    "allowedIpNameLookups entry {other:?} is not supported on this host: name lookups are allowed all or nothing (use \"*\")"
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if !host_allows_loopback {
            loopback.clear();
        }
        Ok(Self {
            loopback,
            name_lookups: lookups,
        })
    }

    /// Whether any TCP use is possible.
    pub fn tcp(&self) -> bool {
        self.loopback.iter().any(|(_, p)| *p == Protocol::Tcp)
    }

    /// Whether any UDP use is possible.
    pub fn udp(&self) -> bool {
        self.loopback.iter().any(|(_, p)| *p == Protocol::Udp)
    }

    /// Whether `use_` of `addr` is allowed.
    pub fn allows(&self, addr: SocketAddr, use_: SocketUse) -> bool {
        let ip = addr.ip();
        match use_ {
            SocketUse::Bind(protocol) => {
                addr.port() == 0
                    && (ip.is_unspecified() || ip.is_loopback())
                    && self.loopback.iter().any(|(_, p)| *p == protocol)
            }
            SocketUse::Connect => ip.is_loopback() && self.loopback.contains(&(addr.port(), Protocol::Tcp)),
            SocketUse::Datagram => ip.is_loopback() && self.loopback.contains(&(addr.port(), Protocol::Udp)),
            SocketUse::Serve => false,
        }
    }
}

/// `5432` (TCP), `5432/tcp` or `53/udp`.
fn parse_port(entry: &str) -> Result<Vec<(u16, Protocol)>, String> {
    let bad =
        || format!("allowedHostLoopbackPorts entry {entry:?}: use PORT, PORT/tcp or PORT/udp (1-65535)");
    let (port, protocol) = match entry.trim().split_once('/') {
        None => (entry.trim(), Protocol::Tcp),
        Some((port, "tcp")) => (port, Protocol::Tcp),
        Some((port, "udp")) => (port, Protocol::Udp),
        Some(_) => return Err(bad()),
    };
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(vec![(port, protocol)]),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(lookups: &[&str], ports: &[&str], host: bool) -> Result<SocketPolicy, Vec<String>> {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        SocketPolicy::parse(&s(lookups), &s(ports), host)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let p = policy(&[], &[], true).unwrap();
        assert!(!p.tcp() && !p.udp() && !p.name_lookups);
        assert!(!p.allows(addr("127.0.0.1:80"), SocketUse::Connect));
        assert!(!p.allows(addr("0.0.0.0:0"), SocketUse::Bind(Protocol::Tcp)));
    }

    #[test]
    fn listed_loopback_ports_are_reachable_only_with_the_hosts_permission() {
        let p = policy(&[], &["5432", "53/udp"], true).unwrap();
        assert!(p.tcp() && p.udp());
        assert!(p.allows(addr("127.0.0.1:5432"), SocketUse::Connect));
        assert!(p.allows(addr("[::1]:5432"), SocketUse::Connect));
        assert!(p.allows(addr("0.0.0.0:0"), SocketUse::Bind(Protocol::Tcp)));
        assert!(p.allows(addr("127.0.0.1:53"), SocketUse::Datagram));
        assert!(
            !p.allows(addr("127.0.0.1:5433"), SocketUse::Connect),
            "other port"
        );
        assert!(
            !p.allows(addr("127.0.0.1:53"), SocketUse::Connect),
            "53 is UDP only"
        );
        assert!(
            !p.allows(addr("10.0.0.1:5432"), SocketUse::Connect),
            "not loopback"
        );
        assert!(
            !p.allows(addr("0.0.0.0:8080"), SocketUse::Bind(Protocol::Tcp)),
            "fixed port bind"
        );
        assert!(!p.allows(addr("127.0.0.1:5432"), SocketUse::Serve));
        let inert = policy(&[], &["5432"], false).unwrap();
        assert!(!inert.tcp());
        assert!(!inert.allows(addr("127.0.0.1:5432"), SocketUse::Connect));
    }

    #[test]
    fn bad_entries_are_all_reported() {
        let errors = policy(
            &["api.example", "*"],
            &["0", "70000", "80/sctp", "1-5", "22"],
            true,
        )
        .unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].contains("\"0\""), "{errors:?}");
        assert!(errors[4].contains("all or nothing"), "{errors:?}");
        assert!(policy(&["*"], &[], false).unwrap().name_lookups);
    }
}
