//! Weft's own components on the environment, from the manifests it ships: the CRDs (`crds/`), the
//! operator under its ServiceAccount with only its RBAC (`deploy/operator/`), and host groups whose pods
//! run the real `weft-host` (`deploy/hostgroup/`). `weft-dev` assembles the whole system from these;
//! end-to-end tests use the same pieces.
//!
//! ```no_run
//! # async fn example() -> Result<(), weft_e2e::Error> {
//! use std::time::Duration;
//! use weft_e2e::system::{self, HostGroup, OperatorOptions, OperatorProcess};
//!
//! let env = weft_e2e::Env::shared().await;
//! let ns = env.new_namespace("system").await?;
//! let admin = env.admin_client();
//! system::install_crds(&admin, Duration::from_secs(60)).await?;
//! system::install_operator_rbac(&admin, &ns, &[], &[system::OPERATOR_SERVICE_ACCOUNT]).await?;
//! let options = OperatorOptions::new(system::workspace_binary("weft-operator")?, &ns, "/tmp/operator.log");
//! let operator = OperatorProcess::start(env, &options, Duration::from_secs(60)).await?;
//! env.kubelet().register_image(&system::host_image(&system::workspace_binary("weft-host")?))?;
//! let group = HostGroup { namespace: ns.to_string(), group: "default".into(), replicas: 2,
//!                         nats_url: env.nats_url().into() };
//! group.apply(&admin).await?;
//! let hosts = group.wait_ready(&admin, Duration::from_secs(60)).await?;
//! # Ok(()) }
//! ```

pub mod chart;
mod gateway;
mod hostgroup;
pub mod manifests;
mod operator;
pub mod prometheus;
mod stack;

use std::path::PathBuf;

pub use gateway::{GATEWAY_SERVICE_ACCOUNT, GatewayProcess, install_gateway_rbac};
pub use hostgroup::{
    DEPLOYMENT_FILE, HOST_CONTAINER, HOST_IMAGE, HOST_IP_VAR, HostGroup, SERVICE_ACCOUNT_FILE, flag_value,
    host_image, is_ready, set_flag,
};
pub use manifests::install_crds;
pub use operator::{
    OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, OperatorOptions, OperatorProcess, install_namespace,
    install_operator_rbac, install_operator_rbac_namespaced,
};
pub use stack::{HELLO_WORLD_BODY, HELLO_WORLD_EXAMPLE, HELLO_WORLD_HOST, Stack, StackOptions};

use crate::Error;

/// Finds a binary built from this workspace (`weft-host`, `weft-operator`, …): `$WEFT_BIN_DIR/<name>`
/// if that variable is set, else next to the running executable or one directory up (test binaries run
/// from `target/<profile>/deps`, binaries from `target/<profile>`). `cargo test --workspace` and
/// `cargo build` put them there; `cargo test -p <one crate>` builds only that crate's binaries.
pub fn workspace_binary(name: &str) -> Result<PathBuf, Error> {
    let candidates: Vec<PathBuf> = match std::env::var_os("WEFT_BIN_DIR") {
        Some(dir) => vec![PathBuf::from(dir).join(name)],
        None => {
            let exe = std::env::current_exe().map_err(|e| Error::io("locate the running executable", e))?;
            exe.ancestors()
                .skip(1)
                .take(2)
                .map(|dir| dir.join(name))
                .collect()
        }
    };
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| Error::MissingBinary {
            name: name.to_string(),
            searched: candidates,
        })
}
