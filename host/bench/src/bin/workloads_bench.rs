//! Whole-workload benchmark of weft-host (issue: linked components and wasi:keyvalue), one run, side
//! by side:
//!
//! - request throughput and p99 of a two-component workload (`greet-http` calling the `greeter`
//!   library) against one component doing the same work (`greet-inline`), `wrk` interleaved;
//! - `wasi:keyvalue` get/set latency through the host (a component looping over the operation, so the
//!   HTTP request around it is amortised) against a direct `async-nats` client on the same JetStream
//!   KV bucket; the filesystem backend alongside.
//!
//! Run it with `host/bench/run-workloads.sh` (see `docs/benchmarks.md`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use weft_host_api::{Component, WitInterface, WitWorld, Workload, WorkloadStartRequest};
use weft_host_bench::stats::median;
use weft_host_bench::weft::WeftHost;
use weft_host_bench::{http1, wrk};
use weft_testkit::{NatsServer, TempDir};

/// Benchmark linked components and wasi:keyvalue on weft-host.
#[derive(Debug, Parser)]
struct Args {
    /// The weft-host binary (release build).
    #[arg(long)]
    weft_host: PathBuf,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 8)]
    duration: u64,
    /// Interleaved repetitions.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// wrk connections.
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// Key-value operations per timed loop.
    #[arg(long, default_value_t = 2000)]
    kv_ops: u32,
}

fn component(name: &str, path: &str) -> Component {
    Component {
        name: name.into(),
        image: format!("file://{path}"),
        ..Default::default()
    }
}

fn request(
    id: &str,
    hostname: &str,
    components: Vec<Component>,
    keyvalue: Option<&str>,
) -> WorkloadStartRequest {
    let mut host_interfaces = vec![WitInterface {
        namespace: "wasi".into(),
        package: "http".into(),
        interfaces: vec!["incoming-handler".into()],
        config: [("host".to_string(), hostname.to_string())].into_iter().collect(),
        ..Default::default()
    }];
    if let Some(backend) = keyvalue {
        host_interfaces.push(WitInterface {
            namespace: "wasi".into(),
            package: "keyvalue".into(),
            interfaces: vec!["store".into()],
            config: [("backend".to_string(), backend.to_string())]
                .into_iter()
                .collect(),
            ..Default::default()
        });
    }
    WorkloadStartRequest {
        workload_id: id.into(),
        workload: Some(Workload {
            namespace: "bench".into(),
            name: id.into(),
            wit_world: Some(WitWorld {
                components,
                host_interfaces,
            }),
            ..Default::default()
        }),
    }
}

/// Microseconds per operation of one `?repeat=N` loop in the kv-http component.
fn through_host(host: &WeftHost, hostname: &str, method: &str, ops: u32) -> anyhow::Result<f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(host.http)?;
    let body = b"value-0123456789";
    write!(
        stream,
        "{method} /bench/key?repeat={ops} HTTP/1.1\r\nHost: {hostname}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        if method == "PUT" { body.len() } else { 0 }
    )?;
    if method == "PUT" {
        stream.write_all(body)?;
    }
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let line = text
        .lines()
        .find(|l| l.contains(" us"))
        .with_context(|| format!("unexpected answer: {text}"))?;
    let micros: f64 = line
        .split_whitespace()
        .nth(2)
        .context("no time")?
        .parse()
        .with_context(|| format!("unexpected answer: {line}"))?;
    Ok(micros / f64::from(ops))
}

/// Microseconds per operation of the same loop with a direct async-nats client, run in a task of
/// `runtime`.
fn direct(
    runtime: &tokio::runtime::Runtime,
    kv: &async_nats::jetstream::kv::Store,
    set: bool,
    ops: u32,
) -> anyhow::Result<f64> {
    let kv = kv.clone();
    runtime.block_on(async move { runtime_task(kv, set, ops).await? })
}

async fn runtime_task(
    kv: async_nats::jetstream::kv::Store,
    set: bool,
    ops: u32,
) -> anyhow::Result<anyhow::Result<f64>> {
    Ok(tokio::spawn(direct_loop(kv, set, ops)).await?)
}

async fn direct_loop(kv: async_nats::jetstream::kv::Store, set: bool, ops: u32) -> anyhow::Result<f64> {
    let value = Bytes::from_static(b"value-0123456789");
    let started = Instant::now();
    for _ in 0..ops {
        if set {
            kv.put("key", value.clone()).await?;
        } else {
            kv.get("key").await?;
        }
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(ops))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Two workers, as weft-host has on this two-core machine; the direct client's loops run in a task
    // on it, as the host's key-value calls run in its tasks.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = TempDir::new("workloads-bench")?;
    let nats = NatsServer::start()?;
    let (host, _) = WeftHost::spawn(
        &runtime,
        &args.weft_host,
        &nats,
        &dir.path().join("cache"),
        &dir.path().join("weft.log"),
    )?;
    use weft_test_components as c;
    host.start_request(
        &runtime,
        &request(
            "linked",
            "linked.bench",
            vec![
                component("greeter", c::GREETER),
                component("greet-http", c::GREET_HTTP),
            ],
            None,
        ),
    )?;
    host.start_request(
        &runtime,
        &request(
            "single",
            "single.bench",
            vec![component("greet-inline", c::GREET_INLINE)],
            None,
        ),
    )?;
    host.start_request(
        &runtime,
        &request(
            "kv-nats",
            "kv-nats.bench",
            vec![component("kv-http", c::KV_HTTP)],
            Some("nats"),
        ),
    )?;
    host.start_request(
        &runtime,
        &request(
            "kv-fs",
            "kv-fs.bench",
            vec![component("kv-http", c::KV_HTTP)],
            Some("filesystem"),
        ),
    )?;
    for hostname in ["linked.bench", "single.bench"] {
        let (status, body) = http1::get(host.http, hostname, "/")?;
        anyhow::ensure!(
            status == 200 && body == "Hello, world!\n",
            "{hostname}: {status} {body}"
        );
    }

    // Throughput: interleaved, after a warm-up of each.
    let subjects = [
        ("one component (greet-inline)", "single.bench"),
        ("two linked components (greet-http → greeter)", "linked.bench"),
    ];
    for (_, hostname) in subjects {
        wrk::run(host.http, hostname, args.connections, 2)?;
    }
    let mut results: Vec<Vec<wrk::Result>> = vec![Vec::new(); subjects.len()];
    for _ in 0..args.reps {
        for (i, (_, hostname)) in subjects.iter().enumerate() {
            let result = wrk::run(host.http, hostname, args.connections, args.duration)?;
            anyhow::ensure!(result.errors == 0, "{hostname}: {} errors", result.errors);
            results[i].push(result);
        }
    }
    println!(
        "### Linked components: `wrk -c{}`, {} × {} s interleaved\n",
        args.connections, args.reps, args.duration
    );
    println!("| workload | requests/s (median) | p50 µs | p99 µs | vs one component |");
    println!("|---|---:|---:|---:|---:|");
    let base = median(results[0].iter().map(|r| r.requests_per_sec));
    for ((name, _), runs) in subjects.iter().zip(&results) {
        let rps = median(runs.iter().map(|r| r.requests_per_sec));
        println!(
            "| {name} | {rps:.0} | {:.0} | {:.0} | {:.2}× |",
            median(runs.iter().map(|r| r.p50_us)),
            median(runs.iter().map(|r| r.p99_us)),
            rps / base
        );
    }

    // Key-value latency: through the host (NATS and filesystem backends) and a direct client.
    let kv = runtime.block_on(async {
        let client = async_nats::connect(nats.url()).await?;
        // The component's first operation created the bucket.
        let (status, body) = http1::get(host.http, "kv-nats.bench", "/bench/key")?;
        anyhow::ensure!(status == 404 || status == 200, "kv-nats: {status} {body}");
        Ok::<_, anyhow::Error>(async_nats::jetstream::new(client).get_key_value("bench").await?)
    })?;
    let mut rows: Vec<(&str, Vec<f64>)> = vec![
        ("set, through weft-host (NATS JetStream KV)", Vec::new()),
        ("set, direct async-nats client", Vec::new()),
        ("set, through weft-host (filesystem)", Vec::new()),
        ("get, through weft-host (NATS JetStream KV)", Vec::new()),
        ("get, direct async-nats client", Vec::new()),
        ("get, through weft-host (filesystem)", Vec::new()),
    ];
    // Warm-up.
    through_host(&host, "kv-nats.bench", "PUT", 100)?;
    through_host(&host, "kv-fs.bench", "PUT", 100)?;
    direct(&runtime, &kv, true, 100)?;
    for _ in 0..args.reps.max(3) {
        rows[0]
            .1
            .push(through_host(&host, "kv-nats.bench", "PUT", args.kv_ops)?);
        rows[1].1.push(direct(&runtime, &kv, true, args.kv_ops)?);
        rows[2]
            .1
            .push(through_host(&host, "kv-fs.bench", "PUT", args.kv_ops)?);
        rows[3]
            .1
            .push(through_host(&host, "kv-nats.bench", "GET", args.kv_ops)?);
        rows[4].1.push(direct(&runtime, &kv, false, args.kv_ops)?);
        rows[5]
            .1
            .push(through_host(&host, "kv-fs.bench", "GET", args.kv_ops)?);
    }
    println!(
        "\n### wasi:keyvalue latency: {} sequential operations per loop, {} loops interleaved\n",
        args.kv_ops,
        args.reps.max(3)
    );
    println!("| operation | µs per operation (median) | vs direct client |");
    println!("|---|---:|---:|");
    let set_base = median(rows[1].1.iter().copied());
    let get_base = median(rows[4].1.iter().copied());
    for (i, (name, values)) in rows.iter().enumerate() {
        let us = median(values.iter().copied());
        let base = if i < 3 { set_base } else { get_base };
        println!("| {name} | {us:.1} | {:.2}× |", us / base);
    }
    drop(host);
    std::thread::sleep(Duration::from_millis(10));
    Ok(())
}
