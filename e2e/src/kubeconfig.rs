//! Kubeconfig files for the environment's identities.

use std::path::Path;

use serde_json::json;

/// How a kubeconfig user authenticates.
#[derive(Debug, Clone)]
pub enum Credentials<'a> {
    /// A client certificate and key (file paths).
    ClientCert {
        /// PEM certificate path.
        cert: &'a Path,
        /// PEM key path.
        key: &'a Path,
    },
    /// A bearer token only (e.g. a ServiceAccount token from a TokenRequest).
    Token(&'a str),
}

/// Renders a kubeconfig with one cluster, user and context, all named `name`.
pub fn render(name: &str, server: &str, ca_cert: &Path, credentials: &Credentials<'_>) -> String {
    let user = match credentials {
        Credentials::ClientCert { cert, key } => json!({
            "client-certificate": cert.display().to_string(),
            "client-key": key.display().to_string(),
        }),
        Credentials::Token(token) => json!({ "token": token }),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": name, "cluster": {
            "server": server,
            "certificate-authority": ca_cert.display().to_string(),
        }}],
        "users": [{ "name": name, "user": user }],
        "contexts": [{ "name": name, "context": { "cluster": name, "user": name } }],
        "current-context": name,
    });
    serde_yaml::to_string(&config).expect("a JSON value always renders as YAML")
}

/// Mints a token of ServiceAccount `name` (in `accounts`' namespace) with the TokenRequest API, valid
/// `ttl` (at least the apiserver's minimum of 10 minutes) and, with `bound_to`, only while that object
/// exists.
pub async fn service_account_token(
    accounts: &kube::Api<k8s_openapi::api::core::v1::ServiceAccount>,
    name: &str,
    ttl: std::time::Duration,
    bound_to: Option<k8s_openapi::api::authentication::v1::BoundObjectReference>,
) -> Result<String, crate::Error> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    let account = format!("{}/{name}", accounts.namespace().unwrap_or_default());
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(ttl.as_secs().max(600) as i64),
            bound_object_ref: bound_to,
            ..Default::default()
        }),
        ..Default::default()
    };
    accounts
        .create_token_request(name, &Default::default(), &request)
        .await
        .map_err(crate::Error::kube(format!(
            "TokenRequest for ServiceAccount {account}"
        )))?
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| crate::Error::Env(format!("TokenRequest for {account} returned no token")))
}

/// Loads a kubeconfig file into a kube `Config`.
pub async fn load(path: &Path) -> Result<kube::Config, crate::Error> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| crate::Error::Kubeconfig(format!("{}: {e}", path.display())))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| crate::Error::Kubeconfig(format!("{}: {e}", path.display())))?;
    // A local control plane answers quickly; a hung request is a bug worth surfacing.
    config.connect_timeout = Some(std::time::Duration::from_secs(5));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_kubeconfig_has_no_client_certificate() {
        let yaml = render(
            "sa",
            "https://127.0.0.1:6443",
            Path::new("/x/ca.crt"),
            &Credentials::Token("abc"),
        );
        let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(v["users"][0]["user"]["token"], "abc");
        assert!(v["users"][0]["user"].get("client-certificate").is_none());
        assert_eq!(v["clusters"][0]["cluster"]["server"], "https://127.0.0.1:6443");
        assert_eq!(v["current-context"], "sa");
    }

    #[test]
    fn cert_kubeconfig_points_at_the_files() {
        let creds = Credentials::ClientCert {
            cert: Path::new("/p/a.crt"),
            key: Path::new("/p/a.key"),
        };
        let yaml = render("admin", "https://127.0.0.1:1", Path::new("/p/ca.crt"), &creds);
        let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(v["users"][0]["user"]["client-certificate"], "/p/a.crt");
        assert_eq!(v["users"][0]["user"]["client-key"], "/p/a.key");
        assert_eq!(v["clusters"][0]["cluster"]["certificate-authority"], "/p/ca.crt");
    }
}
