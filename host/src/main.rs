//! `weft-host`: runs WebAssembly components for the operator. See `docs/host.md`.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;
use weft_host::config::{Args, LogFormat};
use weft_runtime::{RuntimeBackend, RuntimeMetrics, WasmtimeBackend};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    runtime
        .block_on(async {
            let mut registry = Registry::default();
            let runtime_metrics = RuntimeMetrics::register(&mut registry);
            // Created on a blocking thread, while `run` connects to NATS.
            let backend = |nats| {
                let mut config = args.wasmtime_config();
                config.keyvalue = args.keyvalue_backends(nats);
                async move {
                    tokio::task::spawn_blocking(move || {
                        WasmtimeBackend::new(config, runtime_metrics)
                            .map(|backend| Arc::new(backend) as Arc<dyn RuntimeBackend>)
                            .context("start the Wasmtime backend")
                    })
                    .await
                    .context("start the Wasmtime backend")?
                }
            };
            weft_host::run(args.clone(), backend, registry).await
        })
        .inspect_err(|e| tracing::error!(error = format!("{e:#}"), "weft-host failed"))
}
