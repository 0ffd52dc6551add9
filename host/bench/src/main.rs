//! Request-path benchmark: `wrk` against weft-host, tuned `wasmtime serve` and a plain hyper server,
//! interleaved, at several connection counts; plus cold start and resident memory with many
//! workloads. Run it with `host/bench/run.sh` (see `docs/benchmarks.md`).

mod http1;
mod stats;
mod wrk;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use weft_host_api::{Component, HostClient, WitInterface, WitWorld, Workload, WorkloadStartRequest};
use weft_testkit::{NatsServer, Supervised, TempDir, free_port};

use crate::stats::{Histogram, median};

/// Benchmark weft-host against tuned `wasmtime serve` and plain hyper.
#[derive(Debug, Parser)]
struct Args {
    /// The weft-host binary (release build).
    #[arg(long)]
    weft_host: PathBuf,
    /// The `wasmtime` CLI (48.0.8 with `serve`), see `install-wasmtime-cli.sh`.
    #[arg(long)]
    wasmtime: PathBuf,
    /// The `plain-hello` binary (release build).
    #[arg(long)]
    plain: PathBuf,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 8)]
    duration: u64,
    /// Interleaved repetitions of each (server, connections) cell.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Connection counts.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    connections: Vec<u32>,
    /// Cold-start runs per case.
    #[arg(long, default_value_t = 7)]
    cold_runs: usize,
    /// Workloads loaded for the memory measurement.
    #[arg(long, default_value_t = 1000)]
    workloads: usize,
    /// Distinct components loaded for the per-component memory measurement.
    #[arg(long, default_value_t = 50)]
    distinct: usize,
    /// Skip the throughput runs (cold start and memory only).
    #[arg(long)]
    skip_throughput: bool,
    /// Skip the cold-start runs.
    #[arg(long)]
    skip_cold_start: bool,
    /// Print where weft-host's resident memory is (largest mappings) after loading the workloads.
    #[arg(long)]
    smaps: bool,
}

const HOST: &str = "bench.local";

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Server {
    Plain,
    Weft,
    WasmtimeServe,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Plain => "plain hyper",
            Server::Weft => "weft-host",
            Server::WasmtimeServe => "wasmtime serve (tuned)",
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let work = TempDir::new("host-bench")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let hello = PathBuf::from(weft_test_components::HELLO);
    println!("# weft-host request-path benchmark\n");
    println!(
        "machine: {} CPUs; wrk and the server share them\n",
        std::thread::available_parallelism()?.get()
    );

    let cwasm = work.path().join("hello.cwasm");
    let status = Command::new(&args.wasmtime)
        .arg("compile")
        .arg(&hello)
        .arg("-o")
        .arg(&cwasm)
        .status()?;
    anyhow::ensure!(status.success(), "wasmtime compile failed");

    let nats = NatsServer::start()?;
    if !args.skip_throughput {
        throughput(&args, &runtime, &nats, work.path(), &hello, &cwasm)?;
    }
    if !args.skip_cold_start {
        cold_start(&args, &runtime, &nats, work.path(), &hello, &cwasm)?;
    }
    memory(&args, &runtime, &nats, work.path(), &hello)?;
    Ok(())
}

/// A running weft-host with its host ID and a NATS client.
struct WeftHost {
    process: Supervised,
    host_id: String,
    /// When its first heartbeat arrived.
    heartbeat_at: Instant,
    http: SocketAddr,
    admin: SocketAddr,
    client: HostClient,
}

impl WeftHost {
    /// Spawns weft-host and waits for its first heartbeat. Returns the host and the spawn instant.
    fn spawn(
        runtime: &tokio::runtime::Runtime,
        binary: &Path,
        nats: &NatsServer,
        cache: &Path,
        log: &Path,
    ) -> anyhow::Result<(Self, Instant)> {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        runtime.block_on(async {
            let nats_client = async_nats::connect(nats.url()).await?;
            let client = HostClient::new(nats_client);
            let mut heartbeats = client.subscribe_heartbeats().await?;
            let mut cmd = Command::new(binary);
            cmd.args(["--scheduler-nats-url", &nats.url()])
                .args(["--http-addr", &http.to_string()])
                .args(["--admin-addr", &admin.to_string()])
                .arg("--cache-dir")
                .arg(cache)
                .args(["--host-name", "127.0.0.1", "--heartbeat-interval", "60s"])
                .env("RUST_LOG", "warn");
            let spawned = Instant::now();
            let process = Supervised::spawn("weft-host", cmd, log)?;
            let heartbeat = tokio::time::timeout(Duration::from_secs(30), heartbeats.next())
                .await
                .context("no heartbeat from weft-host within 30 s")?
                .context("heartbeat stream ended")?;
            let heartbeat_at = Instant::now();
            Ok((
                Self {
                    process,
                    host_id: heartbeat.id,
                    heartbeat_at,
                    http,
                    admin,
                    client,
                },
                spawned,
            ))
        })
    }

    /// Starts a one-component workload bound to `hostname`.
    fn start(
        &self,
        runtime: &tokio::runtime::Runtime,
        id: &str,
        image: &str,
        hostname: &str,
    ) -> anyhow::Result<()> {
        let mut config = BTreeMap::new();
        config.insert("host".to_string(), hostname.to_string());
        let request = WorkloadStartRequest {
            workload_id: id.to_string(),
            workload: Some(Workload {
                namespace: "bench".into(),
                name: id.to_string(),
                wit_world: Some(WitWorld {
                    components: vec![Component {
                        name: "hello".into(),
                        image: image.to_string(),
                        ..Default::default()
                    }],
                    host_interfaces: vec![WitInterface {
                        namespace: "wasi".into(),
                        package: "http".into(),
                        interfaces: vec!["incoming-handler".into()],
                        config: config.into_iter().collect(),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
        };
        runtime
            .block_on(self.client.start(&self.host_id, &request))
            .map(|_| ())
            .with_context(|| format!("start workload {id}: host log:\n{}", self.process.log_tail(4096)))
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn metrics(&self) -> anyhow::Result<String> {
        let (status, body) = http1::get(self.admin, "localhost", "/metrics")?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        Ok(body)
    }
}

fn spawn_wasmtime_serve(args: &Args, cwasm: &Path, dir: &Path) -> anyhow::Result<(Supervised, SocketAddr)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cmd = Command::new(&args.wasmtime);
    cmd.arg("serve")
        .arg("-Scli")
        .args(["--addr", &addr.to_string()])
        .args(["-O", "pooling-pagemap-scan=y"])
        .args(["-O", "pooling-memory-keep-resident=1048576"])
        .args(["-O", "pooling-table-keep-resident=1048576"])
        .arg("--allow-precompiled")
        .arg(cwasm);
    let process = Supervised::spawn(
        "wasmtime-serve",
        cmd,
        &dir.join(format!("wasmtime-serve-{}.log", addr.port())),
    )?;
    Ok((process, addr))
}

fn spawn_plain(args: &Args, dir: &Path) -> anyhow::Result<(Supervised, SocketAddr)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cmd = Command::new(&args.plain);
    cmd.arg(addr.to_string());
    let process = Supervised::spawn(
        "plain-hello",
        cmd,
        &dir.join(format!("plain-{}.log", addr.port())),
    )?;
    Ok((process, addr))
}

/// Polls `GET /` until it answers 200; returns when it did.
fn wait_200(addr: SocketAddr, timeout: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok((200, _)) = http1::get(addr, HOST, "/") {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("{addr} did not answer 200 within {timeout:?}");
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn throughput(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    nats: &NatsServer,
    dir: &Path,
    hello: &Path,
    cwasm: &Path,
) -> anyhow::Result<()> {
    let (plain, plain_addr) = spawn_plain(args, dir)?;
    let (serve, serve_addr) = spawn_wasmtime_serve(args, cwasm, dir)?;
    let (weft, _) = WeftHost::spawn(
        runtime,
        &args.weft_host,
        nats,
        &dir.join("cache-throughput"),
        &dir.join("weft.log"),
    )?;
    weft.start(runtime, "hello", &format!("file://{}", hello.display()), HOST)?;
    for addr in [plain_addr, serve_addr, weft.http] {
        wait_200(addr, Duration::from_secs(60))?;
    }
    let servers = [
        (Server::Plain, plain_addr),
        (Server::Weft, weft.http),
        (Server::WasmtimeServe, serve_addr),
    ];
    for (_, addr) in servers {
        wrk::run(addr, HOST, 16, 2)?; // warm-up
    }

    // (server, connections) → runs.
    let mut results: BTreeMap<(Server, u32), Vec<wrk::Result>> = BTreeMap::new();
    let mut instantiate: BTreeMap<u32, Vec<(f64, f64)>> = BTreeMap::new();
    let mut to_headers: BTreeMap<u32, Vec<(f64, f64)>> = BTreeMap::new();
    for rep in 0..args.reps {
        for &connections in &args.connections {
            // Rotate the order each repetition so no server always runs first.
            for i in 0..servers.len() {
                let (server, addr) = servers[(i + rep) % servers.len()];
                let before = (server == Server::Weft).then(|| weft.metrics()).transpose()?;
                let result = wrk::run(addr, HOST, connections, args.duration)?;
                if let Some(before) = before {
                    let after = weft.metrics()?;
                    let inst =
                        Histogram::delta(&before, &after, "weft_runtime_instantiate_duration_seconds")?;
                    let head = Histogram::delta(&before, &after, "weft_runtime_request_duration_seconds")?;
                    instantiate
                        .entry(connections)
                        .or_default()
                        .push((inst.quantile(0.5), inst.quantile(0.99)));
                    to_headers
                        .entry(connections)
                        .or_default()
                        .push((head.quantile(0.5), head.quantile(0.99)));
                }
                eprintln!(
                    "rep {rep} c={connections} {}: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, errors {}",
                    server.name(),
                    result.requests_per_sec,
                    result.p50_us,
                    result.p99_us,
                    result.errors
                );
                results.entry((server, connections)).or_default().push(result);
            }
        }
    }
    drop((plain, serve));

    println!(
        "## Throughput (wrk, {} s per run, median of {} interleaved runs)\n",
        args.duration, args.reps
    );
    println!("Cells: req/s (ratio to plain hyper), latency p50 / p99 in µs.\n");
    print!("| server |");
    for c in &args.connections {
        print!(" c={c} |");
    }
    println!("\n|---|{}", "---|".repeat(args.connections.len()));
    let cell = |server: Server, c: u32| -> (f64, f64, f64) {
        let runs = &results[&(server, c)];
        (
            median(runs.iter().map(|r| r.requests_per_sec)),
            median(runs.iter().map(|r| r.p50_us)),
            median(runs.iter().map(|r| r.p99_us)),
        )
    };
    for server in [Server::Plain, Server::Weft, Server::WasmtimeServe] {
        print!("| {} |", server.name());
        for &c in &args.connections {
            let (rps, p50, p99) = cell(server, c);
            let plain = cell(Server::Plain, c).0;
            print!(" {rps:.0} ({:.2}) {p50:.0} / {p99:.0} |", rps / plain);
        }
        println!();
    }
    println!(
        "\n| ratio | {} |",
        args.connections
            .iter()
            .map(|c| format!("c={c}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(args.connections.len()));
    let ratio_row = |name: &str, a: Server, b: Server| {
        let cells: Vec<String> = args
            .connections
            .iter()
            .map(|&c| format!("{:.2}×", cell(a, c).0 / cell(b, c).0))
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    };
    ratio_row(
        "weft-host / tuned wasmtime serve",
        Server::Weft,
        Server::WasmtimeServe,
    );
    ratio_row("weft-host / plain hyper", Server::Weft, Server::Plain);
    ratio_row(
        "tuned wasmtime serve / plain hyper",
        Server::WasmtimeServe,
        Server::Plain,
    );
    let errors: u64 = results.values().flatten().map(|r| r.errors).sum();
    println!("\nwrk socket errors and non-2xx responses over all runs: {errors}\n");

    println!("weft-host's own histograms (`weft_runtime_*`, median over runs of each run's quantile):\n");
    println!("| connections | instantiate p50 / p99 (µs) | request to response head p50 / p99 (µs) |");
    println!("|---|---|---|");
    for &c in &args.connections {
        let i = &instantiate[&c];
        let h = &to_headers[&c];
        println!(
            "| {c} | {:.1} / {:.1} | {:.1} / {:.1} |",
            median(i.iter().map(|x| x.0 * 1e6)),
            median(i.iter().map(|x| x.1 * 1e6)),
            median(h.iter().map(|x| x.0 * 1e6)),
            median(h.iter().map(|x| x.1 * 1e6)),
        );
    }
    println!();
    Ok(())
}

fn cold_start(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    nats: &NatsServer,
    dir: &Path,
    hello: &Path,
    cwasm: &Path,
) -> anyhow::Result<()> {
    let mut plain = Vec::new();
    let mut serve = Vec::new();
    let mut weft_warm = Vec::new();
    let mut weft_warm_start = Vec::new();
    let mut weft_cold = Vec::new();
    let mut weft_cold_start = Vec::new();
    let mut weft_heartbeat = Vec::new();
    let image = format!("file://{}", hello.display());
    // A cache directory with the component already compiled (as after a host restart).
    let warm_cache = dir.join("cache-warm");
    {
        let (host, _) = WeftHost::spawn(
            runtime,
            &args.weft_host,
            nats,
            &warm_cache,
            &dir.join("weft-warmup.log"),
        )?;
        host.start(runtime, "hello", &image, HOST)?;
        wait_200(host.http, Duration::from_secs(60))?;
    }
    for run in 0..args.cold_runs {
        let spawned = Instant::now();
        let (process, addr) = spawn_plain(args, dir)?;
        plain.push(wait_200(addr, Duration::from_secs(30))?.duration_since(spawned));
        drop(process);

        let spawned = Instant::now();
        let (process, addr) = spawn_wasmtime_serve(args, cwasm, dir)?;
        serve.push(wait_200(addr, Duration::from_secs(30))?.duration_since(spawned));
        drop(process);

        for (cache, total, start_only) in [
            (warm_cache.clone(), &mut weft_warm, &mut weft_warm_start),
            (
                dir.join(format!("cache-cold-{run}")),
                &mut weft_cold,
                &mut weft_cold_start,
            ),
        ] {
            let (host, spawned) = WeftHost::spawn(
                runtime,
                &args.weft_host,
                nats,
                &cache,
                &dir.join(format!("weft-cold-{run}.log")),
            )?;
            let started = Instant::now();
            host.start(runtime, "hello", &image, HOST)?;
            let served = wait_200(host.http, Duration::from_secs(60))?;
            total.push(served.duration_since(spawned));
            start_only.push(served.duration_since(started));
            weft_heartbeat.push(host.heartbeat_at.duration_since(spawned));
        }
    }
    let ms = |v: &[Duration]| {
        let mut sorted: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        sorted.sort_by(f64::total_cmp);
        format!(
            "{:.1} | {:.1}–{:.1}",
            median(sorted.iter().copied()),
            sorted[0],
            sorted[sorted.len() - 1]
        )
    };
    println!(
        "## Cold start (process spawn → first `200 hello`, {} runs, ms)\n",
        args.cold_runs
    );
    println!("| case | median | min–max |\n|---|---|---|");
    println!("| plain hyper | {} |", ms(&plain));
    println!("| wasmtime serve, precompiled `.cwasm` | {} |", ms(&serve));
    println!(
        "| weft-host: spawn → first heartbeat on NATS (all runs) | {} |",
        ms(&weft_heartbeat)
    );
    println!(
        "| weft-host, component compiled in its cache (restart) | {} |",
        ms(&weft_warm)
    );
    println!(
        "| … of which `workload.start` → first 200 | {} |",
        ms(&weft_warm_start)
    );
    println!(
        "| weft-host, empty cache (compiles the `.wasm`) | {} |",
        ms(&weft_cold)
    );
    println!(
        "| … of which `workload.start` → first 200 | {} |",
        ms(&weft_cold_start)
    );
    println!(
        "\nweft-host's spawn includes connecting to NATS and its first heartbeat; the start goes over NATS.\n"
    );
    Ok(())
}

/// Prints the mappings holding the most resident memory.
fn print_smaps(pid: u32) -> anyhow::Result<()> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut mappings: Vec<(u64, String)> = Vec::new();
    let mut current = String::new();
    for line in smaps.lines() {
        if let Some(rest) = line.strip_prefix("Rss:") {
            let kib: u64 = rest.split_whitespace().next().unwrap_or("0").parse()?;
            mappings.push((kib, current.clone()));
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            current = line.to_string();
        }
    }
    mappings.sort_by_key(|m| std::cmp::Reverse(m.0));
    eprintln!("largest resident mappings of weft-host:");
    for (kib, mapping) in mappings.iter().take(12) {
        eprintln!("{kib:>8} KiB  {mapping}");
    }
    Ok(())
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
}

/// Appends a custom section so the component has a distinct digest (and is compiled separately).
fn variant(wasm: &[u8], n: usize) -> Vec<u8> {
    let name = b"weft-bench";
    let payload = n.to_le_bytes();
    let mut section = Vec::new();
    leb128(&mut section, name.len() as u64);
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = wasm.to_vec();
    out.push(0);
    leb128(&mut out, section.len() as u64);
    out.extend_from_slice(&section);
    out
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn memory(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    nats: &NatsServer,
    dir: &Path,
    hello: &Path,
) -> anyhow::Result<()> {
    let image = format!("file://{}", hello.display());
    let serve = |host: &WeftHost, name: &str| -> anyhow::Result<()> {
        let (status, _) = http1::get(host.http, name, "/")?;
        anyhow::ensure!(status == 200, "{name} answered {status}");
        Ok(())
    };
    let (host, _) = WeftHost::spawn(
        runtime,
        &args.weft_host,
        nats,
        &dir.join("cache-memory"),
        &dir.join("weft-mem.log"),
    )?;
    let idle = rss_kib(host.pid())?;
    // The first workload compiles the component (Cranelift's working memory and code pages count here).
    host.start(runtime, "w0", &image, "w0.bench")?;
    serve(&host, "w0.bench")?;
    let first = rss_kib(host.pid())?;
    let begun = Instant::now();
    for i in 1..args.workloads {
        host.start(runtime, &format!("w{i}"), &image, &format!("w{i}.bench"))?;
    }
    let start_time = begun.elapsed();
    for i in 0..args.workloads {
        serve(&host, &format!("w{i}.bench"))?;
    }
    let loaded = rss_kib(host.pid())?;
    if args.smaps {
        print_smaps(host.pid())?;
    }

    // Distinct components: each is compiled and kept separately.
    let bytes = std::fs::read(hello)?;
    let variants = dir.join("variants");
    std::fs::create_dir_all(&variants)?;
    let begun = Instant::now();
    for n in 0..args.distinct {
        let path = variants.join(format!("hello-{n}.wasm"));
        std::fs::write(&path, variant(&bytes, n))?;
        host.start(
            runtime,
            &format!("d{n}"),
            &format!("file://{}", path.display()),
            &format!("d{n}.bench"),
        )?;
        serve(&host, &format!("d{n}.bench"))?;
    }
    let distinct_time = begun.elapsed();
    let with_distinct = rss_kib(host.pid())?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let per_workload = loaded.saturating_sub(first) as f64 / (args.workloads.max(2) - 1) as f64;
    let per_component = with_distinct.saturating_sub(loaded) as f64 / args.distinct.max(1) as f64;

    println!("## Resident memory (weft-host, VmRSS)\n");
    println!("| state | RSS |\n|---|---|");
    println!("| idle, no workloads | {:.1} MiB |", mib(idle));
    println!(
        "| 1 workload (its component compiled in this process), served once | {:.1} MiB |",
        mib(first)
    );
    println!(
        "| {} workloads of that component, each served once | {:.1} MiB (+{per_workload:.1} KiB per additional workload) |",
        args.workloads,
        mib(loaded)
    );
    println!(
        "| + {} workloads of {} distinct components | {:.1} MiB (+{per_component:.0} KiB per distinct component) |",
        args.distinct,
        args.distinct,
        mib(with_distinct)
    );
    println!(
        "\nStarting {} more workloads over NATS took {:.2} s ({:.2} ms each); the {} distinct ones (each compiled) {:.1} s.\n",
        args.workloads - 1,
        start_time.as_secs_f64(),
        start_time.as_secs_f64() * 1e3 / (args.workloads.max(2) - 1) as f64,
        args.distinct,
        distinct_time.as_secs_f64()
    );
    Ok(())
}
