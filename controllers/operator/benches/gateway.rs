//! The gateway measured (`cargo test -p weft-operator --bench gateway`, or `cargo bench`), on the real
//! environment with one real `weft-host` running the hello component:
//!
//! 1. Throughput and latency: `wrk` (2 threads, 32 connections, `WEFT_BENCH_SECONDS` s, default 5) with
//!    `Host: bench.gw.test` straight at the host, through `weft-gateway`, and through **nginx** and
//!    **HAProxy** (Debian packages `nginx-light`, `haproxy`; skipped with a note when not installed)
//!    configured as keep-alive reverse proxies to the same host with the same forwarding headers. Each of
//!    `WEFT_BENCH_REPS` (default 3) repetitions runs every path once, in a rotated order; medians are
//!    reported, and ratios are taken within a repetition.
//! 2. Route propagation: `WEFT_BENCH_N` (default 50) Workloads created one after another; for each, the
//!    time from the watch event that shows it Ready to the first `200` through the gateway (polled
//!    every millisecond).
//!
//! The binaries come from the same build profile as the bench (`cargo bench` = release; build
//! `weft-host` and `weft-gateway` with `cargo build --release` first). Results go to
//! `docs/benchmarks.md`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use support::{
    Operator, hello_workload, install_host_crd, install_rbac, percentile, ready_host_on, spawn_host,
};
use weft_crds::{Host, Workload};
use weft_e2e::Env;
use weft_e2e::system::{self, GatewayProcess};
use weft_e2e::testing::http_get_host;

const SA: &str = "weft-operator";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Requests/s and p99 (ms) from `wrk --latency` output.
fn parse_wrk(out: &str) -> (f64, f64) {
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let p99 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(str::trim)
        .map(|v| {
            let (n, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
            let n: f64 = n.parse().unwrap_or(0.0);
            match unit {
                "us" => n / 1000.0,
                "s" => n * 1000.0,
                _ => n,
            }
        })
        .unwrap_or(0.0);
    (rps, p99)
}

fn wrk(target: &str, seconds: usize) -> (f64, f64, String) {
    let out = std::process::Command::new("wrk")
        .args([
            "-t2",
            "-c32",
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            "Host: bench.gw.test",
        ])
        .arg(target)
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (rps, p99) = parse_wrk(&text);
    (rps, p99, text)
}

/// A reverse proxy from the Debian archive, configured for the comparison (stopped when dropped).
struct ThirdParty {
    name: &'static str,
    process: weft_testkit::Supervised,
    addr: std::net::SocketAddr,
}

/// nginx with two workers, an upstream keep-alive pool and the forwarding headers the gateway sets.
fn start_nginx(dir: &std::path::Path, upstream: u16) -> Option<ThirdParty> {
    let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())?;
    let port = weft_testkit::free_port();
    let dir = dir.join("nginx");
    std::fs::create_dir_all(&dir).expect("nginx dir");
    let user = if running_as_root() { "user root root;" } else { "" };
    let conf = format!(
        r#"{user}
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  upstream host {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{
      proxy_pass http://host;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Real-IP $remote_addr;
    }}
  }}
}}
"#,
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    let mut cmd = std::process::Command::new(binary);
    cmd.arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&path)
        .args(["-g", "daemon off;"]);
    start_third_party("nginx", cmd, &dir, port)
}

/// HAProxy with two threads, connection reuse to the upstream and `option forwardfor`.
fn start_haproxy(dir: &std::path::Path, upstream: u16) -> Option<ThirdParty> {
    let binary = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())?;
    let port = weft_testkit::free_port();
    let dir = dir.join("haproxy");
    std::fs::create_dir_all(&dir).expect("haproxy dir");
    let conf = format!(
        r#"global
  nbthread 2
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend gateway
  bind 127.0.0.1:{port}
  option forwardfor
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Real-IP %[src]
  default_backend host
backend host
  server host 127.0.0.1:{upstream}
"#
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf).expect("haproxy.cfg");
    let mut cmd = std::process::Command::new(binary);
    cmd.arg("-db").arg("-f").arg(&path);
    start_third_party("haproxy", cmd, &dir, port)
}

fn start_third_party(
    name: &'static str,
    cmd: std::process::Command,
    dir: &std::path::Path,
    port: u16,
) -> Option<ThirdParty> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut process = weft_testkit::Supervised::spawn(name, cmd, &dir.join(format!("{name}.log")))
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    if let Err(e) = process.wait_tcp(addr, Duration::from_secs(10)) {
        panic!("{name} did not listen: {e}\n{}", process.log_tail(4096));
    }
    Some(ThirdParty { name, process, addr })
}

/// Whether the bench runs as root (nginx then needs an explicit `user`).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// CPU time (user + system, seconds) of `pid` and its direct children (nginx's workers).
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = |pid: &str| -> f64 {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
                // Fields after the command: state is 3rd overall, utime the 14th, stime the 15th.
                Some(rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?)
            })
            .unwrap_or(0.0)
    };
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let total: f64 = ticks(&pid.to_string()) + children.split_whitespace().map(ticks).sum::<f64>();
    // SAFETY: sysconf has no preconditions.
    total / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let Some(rt) = support::bench_runtime() else {
        return;
    };
    rt.block_on(run());
}

async fn run() {
    let seconds = env_usize("WEFT_BENCH_SECONDS", 5);
    let n = env_usize("WEFT_BENCH_N", 50);
    let env = Env::shared().await;
    let ns = env.new_namespace("bench-gw").await.expect("namespace");
    let admin: Client = env.admin_client();
    install_host_crd(&admin).await;
    install_rbac(&admin, ns.name(), &[], &[SA]).await;
    system::install_gateway_rbac(&admin, ns.name())
        .await
        .expect("gateway RBAC");
    let operator = Operator::start(env, ns.name(), SA, &[], &[]).await;
    let url = operator.nats.as_ref().expect("own NATS").url();
    let hosts: Api<Host> = Api::namespaced(admin.clone(), ns.name());
    let host = spawn_host(&url, weft_testkit::free_port(), &[]);
    ready_host_on(&hosts, host.http_port).await;
    let dir = weft_testkit::TempDir::new("bench-gateway").expect("temp dir");
    let gateway = GatewayProcess::start(
        env,
        system::workspace_binary("weft-gateway").unwrap_or_else(|e| panic!("{e}")),
        ns.name(),
        None,
        &[],
        &dir.path().join("gateway.log"),
        support::WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let workloads: Api<Workload> = Api::namespaced(admin.clone(), ns.name());
    workloads
        .create(
            &PostParams::default(),
            &hello_workload("bench", weft_test_components::HELLO, "bench.gw.test"),
        )
        .await
        .expect("create");
    support::eventually("bench through the gateway", support::WAIT, || async {
        (http_get_host(gateway.proxy, "bench.gw.test").await.ok()?.status == 200).then_some(())
    })
    .await;

    // 1. Throughput: the host alone, and each proxy in front of it, in a rotated order per repetition.
    let reps = env_usize("WEFT_BENCH_REPS", 3).max(1);
    let nginx = start_nginx(dir.path(), host.http_port);
    let haproxy = start_haproxy(dir.path(), host.http_port);
    // (name, URL, the process whose CPU is counted: the host alone, else the proxy)
    let mut paths: Vec<(String, String, u32)> = vec![
        (
            "host alone".into(),
            format!("http://127.0.0.1:{}/", host.http_port),
            host.process.pid(),
        ),
        (
            "through weft-gateway".into(),
            format!("http://{}/", gateway.proxy),
            gateway.process.pid(),
        ),
    ];
    for proxy in [&nginx, &haproxy].into_iter().flatten() {
        assert_eq!(
            http_get_host(proxy.addr, "bench.gw.test")
                .await
                .map(|r| r.status)
                .ok(),
            Some(200),
            "{} reaches the host",
            proxy.name
        );
        paths.push((
            format!("through {}", proxy.name),
            format!("http://{}/", proxy.addr),
            proxy.process.pid(),
        ));
    }
    // results[path][rep] = (requests/s, p99 ms, CPU µs per request of the measured process)
    let mut results: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); paths.len()];
    for rep in 0..reps {
        for k in 0..paths.len() {
            let i = (k + rep) % paths.len();
            let cpu_before = cpu_seconds(paths[i].2);
            let (rps, p99, text) = wrk(&paths[i].1, seconds);
            let cpu = cpu_seconds(paths[i].2) - cpu_before;
            let per_request = cpu * 1e6 / (rps * seconds as f64).max(1.0);
            eprintln!("---- wrk, {}, repetition {} ----\n{text}", paths[i].0, rep + 1);
            results[i].push((rps, p99, per_request));
        }
    }
    drop((nginx, haproxy));

    // 2. Propagation: Ready (as a watch sees it) → first 200 through the gateway.
    let ready_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = {
        let ready_at = ready_at.clone();
        let api = workloads.clone();
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Ok(Some(ev)) = events.try_next().await {
                if let watcher::Event::Apply(w) | watcher::Event::InitApply(w) = ev
                    && w.is_ready()
                {
                    ready_at
                        .lock()
                        .unwrap()
                        .entry(w.name_any())
                        .or_insert_with(Instant::now);
                }
            }
        })
    };
    let mut delays = Vec::new();
    for i in 0..n {
        let name = format!("p-{i}");
        let hostname = format!("p-{i}.gw.test");
        workloads
            .create(
                &PostParams::default(),
                &hello_workload(&name, weft_test_components::HELLO, &hostname),
            )
            .await
            .expect("create");
        let first_200 = loop {
            if let Ok(r) = http_get_host(gateway.proxy, &hostname).await
                && r.status == 200
            {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let ready = support::eventually("the Ready event", support::WAIT, || async {
            ready_at.lock().unwrap().get(&name).copied()
        })
        .await;
        delays.push(first_200.saturating_duration_since(ready));
        let _ = workloads.delete(&name, &DeleteParams::default()).await;
    }
    watch.abort();
    delays.sort();

    println!(
        "\nthroughput (wrk -t2 -c32 -d{seconds}s, hello component, {reps} repetitions, medians; ratios within a repetition)"
    );
    println!(
        "{:<24} {:>12} {:>10} {:>12} {:>12} {:>14}",
        "path", "requests/s", "p99 ms", "vs host", "gateway vs", "CPU µs/req"
    );
    let gateway_row = 1;
    for (i, (name, _, _)) in paths.iter().enumerate() {
        let rps = median(results[i].iter().map(|r| r.0).collect());
        let p99 = median(results[i].iter().map(|r| r.1).collect());
        let cpu = median(results[i].iter().map(|r| r.2).collect());
        let vs_host = median(
            (0..reps)
                .map(|r| results[i][r].0 / results[0][r].0.max(1.0))
                .collect(),
        );
        let gateway_vs = median(
            (0..reps)
                .map(|r| results[gateway_row][r].0 / results[i][r].0.max(1.0))
                .collect(),
        );
        println!("{name:<24} {rps:>12.0} {p99:>10.2} {vs_host:>12.2} {gateway_vs:>12.2} {cpu:>14.1}");
    }
    println!("(CPU µs/req: the host's own for the host alone, else the proxy's, nginx's workers included)");
    if paths.len() < 4 {
        println!("(nginx and/or HAProxy not installed: apt-get install nginx-light haproxy)");
    }
    println!(
        "\nroute propagation, Workload Ready (watch event) → first 200 through the gateway, n = {n}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&delays, 0.5).as_secs_f64() * 1000.0,
        percentile(&delays, 0.99).as_secs_f64() * 1000.0,
        delays.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    drop((gateway, host));
}
