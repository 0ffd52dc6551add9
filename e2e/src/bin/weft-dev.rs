//! `weft-dev`: Weft's local environment — a real control plane, NATS and the process-kubelet — for a
//! person (`make dev`) or around a command (`weft-dev -- cargo test …`, which `make test` uses so that
//! every test binary shares one environment). Ctrl-C or SIGTERM stops everything. It serves `/healthz`
//! (every component process running), `/readyz` and `/metrics` on `--listen`.

use std::net::SocketAddr;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Mutex;
use weft_e2e::{Coordinates, EnvOptions, ImageCommand, RunningEnv};
use weft_testkit::owned;

/// Runs Weft's local environment: etcd, kube-apiserver, kube-controller-manager, nats-server and a
/// process-kubelet that runs pods as local processes.
#[derive(Debug, Parser)]
#[command(name = "weft-dev", version)]
struct Args {
    /// Map a container image to a local command for the kubelet: `IMAGE=PROGRAM [ARG...]`
    /// (repeatable; an IMAGE without tag matches every tag).
    #[arg(long = "image", value_name = "IMAGE=COMMAND")]
    images: Vec<String>,
    /// Run without the process-kubelet (pods stay Pending).
    #[arg(long)]
    no_kubelet: bool,
    /// Keep the run directory (logs, audit log, pod logs) after stopping.
    #[arg(long)]
    keep: bool,
    /// Address for `/healthz`, `/readyz` and `/metrics` (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Seconds pods get to exit after SIGTERM when the environment stops.
    #[arg(long, default_value_t = 5)]
    pod_grace_seconds: u64,
    /// Run this command in the environment (with `WEFT_E2E_ENV` and `KUBECONFIG` set), then stop the
    /// environment and exit with the command's status.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn parse_image(spec: &str) -> anyhow::Result<ImageCommand> {
    let (image, command) = spec
        .split_once('=')
        .context("--image wants IMAGE=PROGRAM [ARG...]")?;
    let command: Vec<String> = command.split_whitespace().map(str::to_string).collect();
    if image.is_empty() || command.is_empty() {
        bail!("--image wants IMAGE=PROGRAM [ARG...], got {spec:?}");
    }
    Ok(ImageCommand {
        image: image.to_string(),
        command,
        args: Vec::new(),
        env: Default::default(),
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,kube_client::client::builder=off")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weft-dev: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let options = EnvOptions {
        kubelet: !args.no_kubelet,
        images: args
            .images
            .iter()
            .map(|s| parse_image(s))
            .collect::<anyhow::Result<_>>()?,
        ..EnvOptions::default()
    };
    let started = Instant::now();
    let mut env = tokio::select! {
        env = RunningEnv::start(options) => env.context("starting the environment")?,
        _ = sigint.recv() => bail!("interrupted while starting"),
        _ = sigterm.recv() => bail!("terminated while starting"),
    };
    env.keep_run_dir(args.keep);
    let coords = env.coordinates().clone();
    // Weft's own components (operator, hosts) join the environment here as they are built.

    let env = Arc::new(Mutex::new(Some(env)));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let observe_addr = listener.local_addr()?;
    let server = tokio::spawn(serve_observability(listener, env.clone()));

    let code = if args.command.is_empty() {
        print_banner(&coords, started.elapsed(), observe_addr);
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        eprintln!("weft-dev: stopping");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "weft-dev: environment ready in {:.1} s ({}); running {:?}",
            started.elapsed().as_secs_f64(),
            coords.run_dir.display(),
            args.command
        );
        run_command(&args.command, &coords, &mut sigint, &mut sigterm).await?
    };
    server.abort();
    if let Some(env) = env.lock().await.take() {
        env.stop(Duration::from_secs(args.pod_grace_seconds)).await;
    }
    if args.keep {
        eprintln!("weft-dev: kept {}", coords.run_dir.display());
    }
    Ok(code)
}

fn print_banner(coords: &Coordinates, took: Duration, observe_addr: SocketAddr) {
    let bin_dir = coords
        .kubectl
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!("weft-dev: environment ready in {:.1} s\n", took.as_secs_f64());
    println!("  export KUBECONFIG={}", coords.kubeconfig.display());
    println!("  export PATH={bin_dir}:$PATH   # kubectl v1.37.2");
    println!("  kubectl get pods -A\n");
    println!("  API server  {}", coords.apiserver_url);
    println!("  NATS        {}", coords.nats_url);
    if let Some(node) = &coords.node_name {
        println!("  Node        {node}: pods run as local processes, each on its own 127.0.0.N");
        println!(
            "  Pod logs    {}/<namespace>_<pod>_<uid>/<container>.log",
            coords.pods_dir.display()
        );
    }
    println!("  Logs        {}", coords.run_dir.join("logs").display());
    println!("  Health      http://{observe_addr}/healthz  /readyz  /metrics");
    println!(
        "  Tests       WEFT_E2E_ENV={} cargo test …   (reuses this environment)\n",
        coords.file().display()
    );
    println!("Ctrl-C stops everything.");
}

async fn run_command(
    command: &[String],
    coords: &Coordinates,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<ExitCode> {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("WEFT_E2E_ENV", coords.file())
        .env("KUBECONFIG", &coords.kubeconfig);
    let mut child = owned::spawn(cmd).with_context(|| format!("starting {:?}", command[0]))?;
    let pid = child.id();
    let mut wait = tokio::task::spawn_blocking(move || owned::wait(&mut child));
    let status = loop {
        tokio::select! {
            status = &mut wait => break status??,
            // The command runs in its own process group; pass interruptions on and wait for it.
            _ = sigint.recv() => owned::signal_group(pid, libc::SIGINT),
            _ = sigterm.recv() => owned::signal_group(pid, libc::SIGTERM),
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Serves `/healthz`, `/readyz` and `/metrics` (OpenMetrics text) until aborted.
async fn serve_observability(listener: TcpListener, env: Arc<Mutex<Option<RunningEnv>>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let env = env.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .ok()?
                .ok()?;
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (code, content_type, body) = respond(&path, &env).await;
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                _ => "Service Unavailable",
            };
            let head = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.ok()?;
            stream.write_all(body.as_bytes()).await.ok()
        });
    }
}

async fn respond(path: &str, env: &Mutex<Option<RunningEnv>>) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let mut guard = env.lock().await;
    let Some(env) = guard.as_mut() else {
        return (503, TEXT, "stopping\n".into());
    };
    let components = env.component_status();
    let kubelet_healthy = env.kubelet().is_none_or(|k| k.is_healthy());
    match path {
        "/readyz" => (200, TEXT, "ready\n".into()),
        "/healthz" => {
            let down: Vec<&str> = components
                .iter()
                .filter(|(_, up)| !up)
                .map(|(name, _)| *name)
                .collect();
            if down.is_empty() && kubelet_healthy {
                (200, TEXT, "ok\n".into())
            } else {
                (
                    503,
                    TEXT,
                    format!("not running: {down:?}; kubelet healthy: {kubelet_healthy}\n"),
                )
            }
        }
        "/metrics" => {
            let mut registry = Registry::default();
            let up = Family::<Vec<(String, String)>, Gauge>::default();
            for (name, running) in &components {
                up.get_or_create(&vec![("component".to_string(), name.to_string())])
                    .set(i64::from(*running));
            }
            registry.register(
                "weft_dev_component_up",
                "Whether an environment process is running",
                up,
            );
            if let Some(kubelet) = env.kubelet() {
                let stats = kubelet.stats();
                let pods = Gauge::<i64>::default();
                pods.set(kubelet.pod_count() as i64);
                registry.register(
                    "weft_kubelet_pods",
                    "Pods the process-kubelet is working on",
                    pods,
                );
                let counters = [
                    (
                        "weft_kubelet_pods_bound",
                        "Pods bound to the node",
                        &stats.pods_bound,
                    ),
                    (
                        "weft_kubelet_container_starts",
                        "Container processes started",
                        &stats.container_starts,
                    ),
                    (
                        "weft_kubelet_container_exits",
                        "Container processes that exited",
                        &stats.container_exits,
                    ),
                    (
                        "weft_kubelet_final_deletes",
                        "Final deletes after graceful termination",
                        &stats.final_deletes,
                    ),
                ];
                for (name, help, value) in counters {
                    registry.register(name, help, ConstCounter::new(value.load(Ordering::Relaxed)));
                }
            }
            let mut body = String::new();
            match encode(&mut body, &registry) {
                Ok(()) => (
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                ),
                Err(e) => (503, TEXT, format!("encoding metrics: {e}\n")),
            }
        }
        _ => (404, TEXT, "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_flags_parse_into_mappings() {
        let image = parse_image("ghcr.io/w/host=/opt/weft-host --verbose").unwrap();
        assert_eq!(image.image, "ghcr.io/w/host");
        assert_eq!(image.command, vec!["/opt/weft-host", "--verbose"]);
        assert!(parse_image("no-equals-sign").is_err());
        assert!(parse_image("img=").is_err());
        assert!(parse_image("=/bin/true").is_err());
    }
}
