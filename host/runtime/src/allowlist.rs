//! The outgoing-HTTP allowlist (`localResources.allowedHosts`), parsed once per component.
//!
//! It fails closed: an empty list allows nothing; `*` must be given explicitly to allow everything.
//! Entries (case-insensitive):
//!
//! | entry | allows |
//! |---|---|
//! | `*` | every request |
//! | `example.com` | host `example.com`, any scheme, any port |
//! | `example.com:8443` | host `example.com` on port 8443 (a URL without a port uses its scheme's default: 80 / 443) |
//! | `*.example.com[:port]` | any subdomain of `example.com` (not `example.com` itself) |
//! | `https://example.com[:port][/]` | as above, and only with that scheme |
//! | `https://*.example.com[:port][/]` | subdomains, only with that scheme |
//!
//! Entries must not carry a path (beyond a bare `/`), query or fragment; a wildcard must be `*.` followed
//! by a host (`*com` is rejected). Parsing reports every bad entry at once.

use http::Uri;

/// A parsed allowlist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    any: bool,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Exactly this host (lower case).
    Exact(String),
    /// Any host ending in this suffix, which starts with `.` (lower case).
    Subdomains(String),
}

impl AllowedHosts {
    /// Parses `entries`; on failure returns one message per bad entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, Vec<String>> {
        let mut allowed = Self::default();
        let mut errors = Vec::new();
        for entry in entries {
            let entry = entry.as_ref();
            match parse_entry(entry) {
                Ok(None) => allowed.any = true,
                Ok(Some(rule)) => allowed.rules.push(rule),
                Err(reason) => errors.push(format!("allowedHosts entry {entry:?}: {reason}")),
            }
        }
        if errors.is_empty() {
            Ok(allowed)
        } else {
            Err(errors)
        }
    }

    /// An allowlist that allows every request (`["*"]`).
    pub fn any() -> Self {
        Self {
            any: true,
            rules: Vec::new(),
        }
    }

    /// Whether the list allows nothing at all.
    pub fn denies_all(&self) -> bool {
        !self.any && self.rules.is_empty()
    }

    /// Whether a request to `uri` is allowed. A URI without a host is never allowed (unless `*`).
    pub fn allows_uri(&self, uri: &Uri) -> bool {
        if self.any {
            return true;
        }
        let Some(host) = uri.host() else { return false };
        let scheme = uri.scheme_str().unwrap_or("http");
        self.allows(scheme, host, uri.port_u16())
    }

    /// Whether a request with this scheme, host and explicit port (if any) is allowed.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        if self.any {
            return true;
        }
        let scheme = scheme.to_ascii_lowercase();
        let host = normalize_host(host);
        let port = port.or_else(|| default_port(&scheme));
        self.rules.iter().any(|rule| {
            rule.scheme.as_ref().is_none_or(|s| *s == scheme)
                && rule.port.is_none_or(|p| Some(p) == port)
                && match &rule.host {
                    HostPattern::Exact(h) => *h == host,
                    HostPattern::Subdomains(suffix) => {
                        host.len() > suffix.len() && host.ends_with(suffix.as_str())
                    }
                }
        })
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn normalize_host(host: &str) -> String {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// `Ok(None)` for `*`.
fn parse_entry(entry: &str) -> Result<Option<Rule>, String> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err("empty entry".into());
    }
    if entry == "*" {
        return Ok(None);
    }
    let (scheme, rest) = match entry.split_once("://") {
        Some((scheme, rest)) => {
            let valid = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if !valid {
                return Err(format!("invalid scheme {scheme:?}"));
            }
            (
                Some(scheme.to_ascii_lowercase()),
                rest.strip_suffix('/').unwrap_or(rest),
            )
        }
        None => (None, entry),
    };
    if rest.contains(['/', '?', '#']) {
        return Err("a hosts policy entry must not contain a path, query or fragment".into());
    }
    if rest.contains('@') {
        return Err("an entry must not contain user information".into());
    }
    let (host, port) = split_host_port(rest)?;
    let pattern = if let Some(suffix) = host.strip_prefix("*.") {
        validate_hostname(suffix)?;
        HostPattern::Subdomains(format!(".{}", suffix.to_ascii_lowercase()))
    } else if host.contains('*') {
        return Err("a wildcard must be a leading `*.` followed by a host name".into());
    } else if host.contains(':') {
        // An IPv6 literal (from brackets).
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("invalid IPv6 address {host:?}"))?;
        HostPattern::Exact(host.to_ascii_lowercase())
    } else {
        validate_hostname(host)?;
        HostPattern::Exact(normalize_host(host))
    };
    Ok(Some(Rule {
        scheme,
        host: pattern,
        port,
    }))
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or("unclosed `[` in IPv6 address")?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or("unexpected text after `]`")?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port > 0 && !p.starts_with('+') => Some(port),
            _ => return Err(format!("invalid port {p:?}")),
        },
    };
    Ok((host, port))
}

fn validate_hostname(host: &str) -> Result<(), String> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return Err("invalid host name length".into());
    }
    for label in host.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!("invalid host name label {label:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(entries).unwrap()
    }

    fn allows(entries: &[&str], url: &str) -> bool {
        list(entries).allows_uri(&url.parse().unwrap())
    }

    #[test]
    fn empty_list_denies_everything() {
        let empty = list(&[]);
        assert!(empty.denies_all());
        assert!(!empty.allows_uri(&"http://example.com/".parse().unwrap()));
        assert!(!empty.allows_uri(&"https://127.0.0.1:8080/".parse().unwrap()));
    }

    #[test]
    fn star_allows_everything() {
        assert!(allows(&["*"], "http://anything.example/x"));
        assert!(allows(&["*"], "https://[::1]:9/"));
    }

    #[test]
    fn exact_host_matches_any_scheme_and_port_case_insensitively() {
        assert!(allows(&["Example.COM"], "http://example.com/path"));
        assert!(allows(&["example.com"], "https://EXAMPLE.com:8443/"));
        assert!(allows(&["example.com"], "https://example.com./"));
        assert!(!allows(&["example.com"], "http://evil.com/"));
        assert!(!allows(&["example.com"], "http://sub.example.com/"));
        assert!(!allows(&["example.com"], "http://example.com.evil.net/"));
    }

    #[test]
    fn port_is_pinned_and_defaults_by_scheme() {
        assert!(allows(&["example.com:8443"], "https://example.com:8443/"));
        assert!(!allows(&["example.com:8443"], "https://example.com/"));
        assert!(allows(&["example.com:443"], "https://example.com/"));
        assert!(allows(&["example.com:80"], "http://example.com/"));
        assert!(!allows(&["example.com:80"], "https://example.com/"));
        assert!(allows(&["127.0.0.1:8080"], "http://127.0.0.1:8080/x"));
        assert!(!allows(&["127.0.0.1:8080"], "http://127.0.0.1:8081/x"));
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        assert!(allows(&["*.example.com"], "http://a.example.com/"));
        assert!(allows(&["*.Example.COM"], "http://a.b.example.com/"));
        assert!(!allows(&["*.example.com"], "http://example.com/"));
        assert!(!allows(&["*.example.com"], "http://badexample.com/"));
        assert!(allows(&["*.example.com:8443"], "https://a.example.com:8443/"));
        assert!(!allows(&["*.example.com:8443"], "https://a.example.com/"));
    }

    #[test]
    fn scheme_is_pinned() {
        assert!(allows(&["https://api.example.com"], "https://api.example.com/v1"));
        assert!(!allows(&["https://api.example.com"], "http://api.example.com/v1"));
        assert!(allows(
            &["https://api.example.com/"],
            "https://api.example.com:9443/"
        ));
        assert!(allows(
            &["https://*.example.com:8443/"],
            "https://x.example.com:8443/"
        ));
        assert!(!allows(
            &["https://*.example.com:8443/"],
            "http://x.example.com:8443/"
        ));
        assert!(!allows(&["HTTP://api.example.com"], "https://api.example.com/"));
        assert!(allows(&["HTTP://api.example.com"], "http://api.example.com/"));
    }

    #[test]
    fn ipv6_literals() {
        assert!(allows(&["[::1]:8080"], "http://[::1]:8080/"));
        assert!(!allows(&["[::1]:8080"], "http://[::1]:8081/"));
        assert!(allows(&["[::1]"], "http://[::1]/"));
    }

    #[test]
    fn uri_without_host_is_denied() {
        assert!(!list(&["example.com"]).allows_uri(&"/path-only".parse().unwrap()));
    }

    #[test]
    fn bad_entries_are_all_reported() {
        let errors = AllowedHosts::parse(&[
            "",
            "*foo",
            "*com",
            "example.com/v1",
            "example.com:notaport",
            "https://example.com/v1",
            "http://",
            ":8080",
            "-example.com",
            "example-.com",
            "example.com:0",
            "user@example.com",
            "exa mple.com",
            "good.example.com",
        ])
        .unwrap_err();
        assert_eq!(errors.len(), 13, "{errors:#?}");
        assert!(
            errors[1].contains("\"*foo\"") && errors[1].contains("wildcard"),
            "{errors:#?}"
        );
    }

    #[test]
    fn accepted_forms_match_the_crd_pattern() {
        for entry in [
            "*",
            "example.com",
            "example.com:8443",
            "localhost:8080",
            "a.b.c.example.com",
            "*.example.com",
            "*.example.com:8443",
            "https://example.com",
            "https://example.com/",
            "https://example.com:8443",
            "https://*.example.com",
            "https://*.example.com:8443/",
        ] {
            AllowedHosts::parse(&[entry]).unwrap_or_else(|e| panic!("{entry}: {e:?}"));
        }
    }
}
