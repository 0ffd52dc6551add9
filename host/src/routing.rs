//! The ingress routing table: hostname → the workload replicas bound to it on this host.
//!
//! Hostnames come from the `host` config key (plus the comma-separated `host-aliases`) of a workload's
//! `wasi:http` incoming-handler host interface. Lookups strip the port from the `Host` header, ignore
//! case and a trailing dot, and spread requests over the replicas round-robin. The table is
//! copy-on-write: lookups take a short read lock and clone an `Arc`; starts and stops rebuild it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// Why a request could not be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteMiss {
    /// No `Host` header (and no authority in the request target), or an unusable one: 400.
    #[error("{0}")]
    BadHost(&'static str),
    /// No workload is bound to the hostname on this host: 404.
    #[error("no workload is bound to host {0:?} on this host")]
    UnknownHost(String),
}

/// The routing key of a `Host` header value (or request authority): the host without its port,
/// lowercased, without a trailing dot; IPv6 literals without their brackets. Borrows from `value` when
/// it is already lowercase (the common case), so a lookup does not allocate.
pub fn routing_host(value: &str) -> Result<Cow<'_, str>, RouteMiss> {
    let value = value.trim();
    let host = if let Some(rest) = value.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or(RouteMiss::BadHost("malformed IPv6 literal in Host header"))?;
        if !(after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())))
        {
            return Err(RouteMiss::BadHost("malformed Host header"));
        }
        addr
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            Some(_) => return Err(RouteMiss::BadHost("malformed port in Host header")),
            None => value,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err(RouteMiss::BadHost("request has no Host header"));
    }
    if host
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || matches!(b, b'/' | b'@' | b'?' | b'#'))
    {
        return Err(RouteMiss::BadHost("malformed Host header"));
    }
    Ok(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// Whether `name` is a valid RFC 1123 hostname (what a workload may bind to).
pub fn is_valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The replicas bound to one hostname, with the round-robin cursor.
#[derive(Debug)]
struct Replicas<T> {
    targets: Vec<(String, T)>,
    next: AtomicUsize,
}

#[derive(Debug)]
struct Routes<T> {
    by_host: HashMap<String, Arc<Replicas<T>>>,
    by_workload: HashMap<String, Vec<String>>,
}

impl<T> Default for Routes<T> {
    fn default() -> Self {
        Self {
            by_host: HashMap::new(),
            by_workload: HashMap::new(),
        }
    }
}

/// Hostname → workload replicas. `T` is what a lookup returns (the host uses a workload handle).
#[derive(Debug)]
pub struct RouteTable<T> {
    routes: RwLock<Arc<Routes<T>>>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            routes: RwLock::new(Arc::new(Routes::default())),
        }
    }
}

impl<T: Clone> RouteTable<T> {
    /// Binds `workload_id` to `hostnames` (normalized like [`routing_host`]). Re-binding a workload
    /// replaces its previous hostnames.
    pub fn bind(&self, workload_id: &str, hostnames: &[String], target: T) {
        let keys: Vec<String> = hostnames
            .iter()
            .filter_map(|h| routing_host(h).ok().map(Cow::into_owned))
            .collect();
        self.update(|routes| {
            remove_workload(routes, workload_id);
            for key in &keys {
                let mut targets = routes
                    .by_host
                    .get(key)
                    .map(|r| r.targets.clone())
                    .unwrap_or_default();
                if !targets.iter().any(|(id, _)| id == workload_id) {
                    targets.push((workload_id.to_string(), target.clone()));
                }
                routes.by_host.insert(
                    key.clone(),
                    Arc::new(Replicas {
                        targets,
                        next: AtomicUsize::new(0),
                    }),
                );
            }
            routes.by_workload.insert(workload_id.to_string(), keys.clone());
        });
    }

    /// Removes every route of `workload_id`. Returns whether it had any.
    pub fn unbind(&self, workload_id: &str) -> bool {
        let mut had = false;
        self.update(|routes| had = remove_workload(routes, workload_id));
        had
    }

    /// The next replica for a `Host` header value. Allocates nothing for a lowercase name, and takes
    /// the read lock only for the lookup.
    pub fn route(&self, host_header: &str) -> Result<T, RouteMiss> {
        let key = routing_host(host_header)?;
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        let replicas = match routes.by_host.get(key.as_ref()) {
            Some(replicas) if !replicas.targets.is_empty() => replicas,
            _ => return Err(RouteMiss::UnknownHost(key.into_owned())),
        };
        let n = replicas.targets.len();
        let i = if n == 1 {
            0
        } else {
            replicas.next.fetch_add(1, Ordering::Relaxed) % n
        };
        Ok(replicas.targets[i].1.clone())
    }

    /// Hostnames with at least one replica, sorted.
    pub fn hostnames(&self) -> Vec<String> {
        let mut names: Vec<String> = self.snapshot().by_host.keys().cloned().collect();
        names.sort();
        names
    }

    /// Number of workloads with routes.
    pub fn workload_count(&self) -> usize {
        self.snapshot().by_workload.len()
    }

    fn snapshot(&self) -> Arc<Routes<T>> {
        self.routes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut Routes<T>)) {
        let mut guard = self.routes.write().unwrap_or_else(|p| p.into_inner());
        let mut next = Routes {
            by_host: guard.by_host.clone(),
            by_workload: guard.by_workload.clone(),
        };
        f(&mut next);
        *guard = Arc::new(next);
    }
}

fn remove_workload<T: Clone>(routes: &mut Routes<T>, workload_id: &str) -> bool {
    let Some(keys) = routes.by_workload.remove(workload_id) else {
        return false;
    };
    for key in keys {
        let Some(replicas) = routes.by_host.get(&key) else {
            continue;
        };
        let targets: Vec<(String, T)> = replicas
            .targets
            .iter()
            .filter(|(id, _)| id != workload_id)
            .cloned()
            .collect();
        if targets.is_empty() {
            routes.by_host.remove(&key);
        } else {
            routes.by_host.insert(
                key,
                Arc::new(Replicas {
                    targets,
                    next: AtomicUsize::new(0),
                }),
            );
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_host_strips_port_case_and_trailing_dot() {
        assert_eq!(routing_host("Hello.Example.COM").unwrap(), "hello.example.com");
        assert_eq!(
            routing_host("hello.example.com:8080").unwrap(),
            "hello.example.com"
        );
        assert_eq!(
            routing_host("hello.example.com.:80").unwrap(),
            "hello.example.com"
        );
        assert_eq!(routing_host("10.1.2.3:9191").unwrap(), "10.1.2.3");
        assert_eq!(routing_host("[::1]:8080").unwrap(), "::1");
        assert_eq!(routing_host("[2001:DB8::1]").unwrap(), "2001:db8::1");
        assert_eq!(routing_host("localhost:").unwrap(), "localhost");
    }

    #[test]
    fn routing_host_rejects_empty_and_malformed_values() {
        for bad in [
            "",
            "   ",
            ":8080",
            "[::1",
            "[::1]x",
            "host:port",
            "a b",
            "evil/path",
            "user@host",
        ] {
            assert!(matches!(routing_host(bad), Err(RouteMiss::BadHost(_))), "{bad:?}");
        }
    }

    #[test]
    fn hostname_validation_follows_rfc1123() {
        assert!(is_valid_hostname("hello.example.com"));
        assert!(is_valid_hostname("my-svc.default.svc.cluster.local"));
        assert!(is_valid_hostname("localhost"));
        for bad in [
            "",
            "-a.com",
            "a-.com",
            "a..com",
            "a_b.com",
            "a.com:80",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_hostname(bad), "{bad:?}");
        }
    }

    #[test]
    fn routes_by_host_with_ports_and_case_ignored() {
        let table = RouteTable::default();
        table.bind("w1", &["one.example".into()], 1);
        table.bind("w2", &["two.example".into(), "alias.two".into()], 2);
        assert_eq!(table.route("one.example").unwrap(), 1);
        assert_eq!(table.route("ONE.example:9191").unwrap(), 1);
        assert_eq!(table.route("alias.two").unwrap(), 2);
        assert_eq!(
            table.route("three.example"),
            Err(RouteMiss::UnknownHost("three.example".into()))
        );
        assert!(matches!(table.route(""), Err(RouteMiss::BadHost(_))));
        assert_eq!(table.hostnames(), ["alias.two", "one.example", "two.example"]);
    }

    #[test]
    fn replicas_share_load_round_robin() {
        let table = RouteTable::default();
        for (id, n) in [("a", 1), ("b", 2), ("c", 3)] {
            table.bind(id, &["app.example".into()], n);
        }
        let mut counts = [0; 3];
        for _ in 0..300 {
            let n = table.route("app.example").unwrap();
            counts[n - 1] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn unbinding_removes_only_that_workload() {
        let table = RouteTable::default();
        table.bind("a", &["app.example".into(), "a.example".into()], 1);
        table.bind("b", &["app.example".into()], 2);
        assert!(table.unbind("a"));
        assert!(!table.unbind("a"));
        for _ in 0..4 {
            assert_eq!(table.route("app.example").unwrap(), 2);
        }
        assert!(matches!(table.route("a.example"), Err(RouteMiss::UnknownHost(_))));
        assert!(table.unbind("b"));
        assert!(table.hostnames().is_empty());
        assert_eq!(table.workload_count(), 0);
    }

    #[test]
    fn rebinding_replaces_previous_hostnames() {
        let table = RouteTable::default();
        table.bind("a", &["old.example".into()], 1);
        table.bind("a", &["new.example".into()], 1);
        assert!(table.route("old.example").is_err());
        assert_eq!(table.route("new.example").unwrap(), 1);
    }
}
