//! Request-path benchmark: `wrk` against weft-host, tuned `wasmtime serve` and a plain hyper server,
//! interleaved, at several connection counts; plus cold start and resident memory with many
//! workloads. Run it with `host/bench/run.sh` (see `docs/benchmarks.md`).

use weft_host_bench::weft::WeftHost;
use weft_host_bench::{http1, stats, wrk};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
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
    /// Skip the resident-memory measurement.
    #[arg(long)]
    skip_memory: bool,
    /// More weft-host binaries measured alongside `--weft-host` in the same interleaved runs (A/B
    /// comparisons of changes); repeatable.
    #[arg(long)]
    variant: Vec<PathBuf>,
    /// Start the servers (weft-host with its workload), print their addresses and process IDs, and
    /// wait until stdin is closed — for profiling by hand.
    #[arg(long)]
    hold: bool,
    /// Print where weft-host's resident memory is (largest mappings) after loading the workloads.
    #[arg(long)]
    smaps: bool,
}

const HOST: &str = "bench.local";

/// What kind of server a subject is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Weft,
    WasmtimeServe,
}

/// A server under test in the throughput runs.
struct Subject {
    name: String,
    kind: Kind,
    addr: SocketAddr,
    pid: u32,
    /// Index into the weft-hosts (for their metrics).
    weft: Option<usize>,
}

/// CPU time (user + system) a process and its threads have used so far, in seconds (`/proc/<pid>/stat`,
/// clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    stat_cpu_seconds(&stat, 13)
}

/// CPU time used by this process' waited-for children (the wrk runs), in seconds.
fn children_cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    stat_cpu_seconds(&stat, 15)
}

/// The sum of the two tick counts at fields `first` and `first + 1` (0-based, counting from `pid`).
fn stat_cpu_seconds(stat: &str, first: usize) -> anyhow::Result<f64> {
    // The command name may contain spaces; fields after it are counted from its closing parenthesis.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i - 2).context("short stat")?.parse::<f64>()? / 100.0)
    };
    Ok(tick(first)? + tick(first + 1)?)
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
    if args.hold {
        return hold(&args, &runtime, &nats, work.path(), &hello, &cwasm);
    }
    if !args.skip_throughput {
        throughput(&args, &runtime, &nats, work.path(), &hello, &cwasm)?;
    }
    if !args.skip_cold_start {
        cold_start(&args, &runtime, &nats, work.path(), &hello, &cwasm)?;
    }
    if !args.skip_memory {
        memory(&args, &runtime, &nats, work.path(), &hello)?;
    }
    Ok(())
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

/// Starts weft-host (`binary`) with the hello workload bound to [`HOST`].
fn spawn_weft_with_hello(
    runtime: &tokio::runtime::Runtime,
    binary: &Path,
    nats: &NatsServer,
    dir: &Path,
    n: usize,
    hello: &Path,
) -> anyhow::Result<WeftHost> {
    let (weft, _) = WeftHost::spawn(
        runtime,
        binary,
        nats,
        &dir.join(format!("cache-throughput-{n}")),
        &dir.join(format!("weft-{n}.log")),
    )?;
    weft.start(runtime, "hello", &format!("file://{}", hello.display()), HOST)?;
    Ok(weft)
}

/// The servers measured side by side: plain hyper, tuned `wasmtime serve`, and every weft-host build.
struct Servers {
    plain: Supervised,
    plain_addr: SocketAddr,
    serve: Supervised,
    serve_addr: SocketAddr,
    /// One per [`weft_binaries`], in that order.
    wefts: Vec<WeftHost>,
}

/// `--weft-host` followed by every `--variant`.
fn weft_binaries(args: &Args) -> impl Iterator<Item = &PathBuf> {
    std::iter::once(&args.weft_host).chain(&args.variant)
}

/// Starts plain hyper, `wasmtime serve` and every weft-host build with the hello workload.
fn spawn_servers(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    nats: &NatsServer,
    dir: &Path,
    hello: &Path,
    cwasm: &Path,
) -> anyhow::Result<Servers> {
    let (plain, plain_addr) = spawn_plain(args, dir)?;
    let (serve, serve_addr) = spawn_wasmtime_serve(args, cwasm, dir)?;
    let wefts = weft_binaries(args)
        .enumerate()
        .map(|(n, binary)| spawn_weft_with_hello(runtime, binary, nats, dir, n, hello))
        .collect::<anyhow::Result<_>>()?;
    Ok(Servers {
        plain,
        plain_addr,
        serve,
        serve_addr,
        wefts,
    })
}

/// Starts every server with its workload and waits until stdin is closed.
fn hold(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    nats: &NatsServer,
    dir: &Path,
    hello: &Path,
    cwasm: &Path,
) -> anyhow::Result<()> {
    let Servers {
        plain,
        plain_addr,
        serve,
        serve_addr,
        wefts,
    } = spawn_servers(args, runtime, nats, dir, hello, cwasm)?;
    println!("plain hyper: http://{plain_addr}/ pid {}", plain.pid());
    println!("wasmtime serve: http://{serve_addr}/ pid {}", serve.pid());
    for (weft, binary) in wefts.iter().zip(weft_binaries(args)) {
        println!(
            "weft-host {}: http://{}/ (Host: {HOST}) admin http://{}/metrics pid {}",
            binary.display(),
            weft.http,
            weft.admin,
            weft.pid()
        );
    }
    println!("close stdin (Ctrl-D) to stop");
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    Ok(())
}

/// The per-run numbers of one subject.
struct Run {
    wrk: wrk::Result,
    /// Server CPU time per request, µs.
    server_cpu_us: f64,
    /// wrk CPU time per request, µs.
    wrk_cpu_us: f64,
    /// weft-host's instantiate and request-to-head (p50, p99), seconds.
    histograms: Option<((f64, f64), (f64, f64))>,
}

fn throughput(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    nats: &NatsServer,
    dir: &Path,
    hello: &Path,
    cwasm: &Path,
) -> anyhow::Result<()> {
    let Servers {
        plain,
        plain_addr,
        serve,
        serve_addr,
        wefts,
    } = spawn_servers(args, runtime, nats, dir, hello, cwasm)?;
    let binaries: Vec<&PathBuf> = weft_binaries(args).collect();
    let mut subjects = vec![Subject {
        name: "plain hyper".into(),
        kind: Kind::Plain,
        addr: plain_addr,
        pid: plain.pid(),
        weft: None,
    }];
    for (n, weft) in wefts.iter().enumerate() {
        subjects.push(Subject {
            name: if n == 0 {
                "weft-host".into()
            } else {
                format!(
                    "weft-host variant `{}`",
                    binaries[n].file_name().unwrap_or_default().to_string_lossy()
                )
            },
            kind: Kind::Weft,
            addr: weft.http,
            pid: weft.pid(),
            weft: Some(n),
        });
    }
    subjects.push(Subject {
        name: "wasmtime serve (tuned)".into(),
        kind: Kind::WasmtimeServe,
        addr: serve_addr,
        pid: serve.pid(),
        weft: None,
    });
    for subject in &subjects {
        wait_200(subject.addr, Duration::from_secs(60))?;
    }
    for subject in &subjects {
        wrk::run(subject.addr, HOST, 16, 2)?; // warm-up
    }

    // (subject index, connections) → runs.
    let mut results: BTreeMap<(usize, u32), Vec<Run>> = BTreeMap::new();
    for rep in 0..args.reps {
        for &connections in &args.connections {
            // Rotate the order each repetition so no server always runs first.
            for i in 0..subjects.len() {
                let index = (i + rep) % subjects.len();
                let subject = &subjects[index];
                let weft = subject.weft.map(|n| &wefts[n]);
                let before = weft.map(|w| w.metrics()).transpose()?;
                let cpu_before = (cpu_seconds(subject.pid)?, children_cpu_seconds()?);
                let result = wrk::run(subject.addr, HOST, connections, args.duration)?;
                let cpu_after = (cpu_seconds(subject.pid)?, children_cpu_seconds()?);
                let histograms = match (weft, before) {
                    (Some(weft), Some(before)) => {
                        let after = weft.metrics()?;
                        let inst =
                            Histogram::delta(&before, &after, "weft_runtime_instantiate_duration_seconds")?;
                        let head =
                            Histogram::delta(&before, &after, "weft_runtime_request_duration_seconds")?;
                        Some((
                            (inst.quantile(0.5), inst.quantile(0.99)),
                            (head.quantile(0.5), head.quantile(0.99)),
                        ))
                    }
                    _ => None,
                };
                let per_request = |s: f64| s * 1e6 / result.requests.max(1) as f64;
                let run = Run {
                    server_cpu_us: per_request(cpu_after.0 - cpu_before.0),
                    wrk_cpu_us: per_request(cpu_after.1 - cpu_before.1),
                    wrk: result,
                    histograms,
                };
                eprintln!(
                    "rep {rep} c={connections} {}: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, errors {}, CPU/request: server {:.1} µs, wrk {:.1} µs",
                    subject.name,
                    run.wrk.requests_per_sec,
                    run.wrk.p50_us,
                    run.wrk.p99_us,
                    run.wrk.errors,
                    run.server_cpu_us,
                    run.wrk_cpu_us,
                );
                results.entry((index, connections)).or_default().push(run);
            }
        }
    }
    drop((plain, serve, wefts));

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
    let runs = |index: usize, c: u32| &results[&(index, c)];
    let rps = |index: usize, c: u32| median(runs(index, c).iter().map(|r| r.wrk.requests_per_sec));
    let plain_index = 0;
    let serve_index = subjects.len() - 1;
    for (index, subject) in subjects.iter().enumerate() {
        print!("| {} |", subject.name);
        for &c in &args.connections {
            let r = runs(index, c);
            print!(
                " {:.0} ({:.2}) {:.0} / {:.0} |",
                rps(index, c),
                rps(index, c) / rps(plain_index, c),
                median(r.iter().map(|r| r.wrk.p50_us)),
                median(r.iter().map(|r| r.wrk.p99_us)),
            );
        }
        println!();
    }
    println!(
        "\nRatios of the medians; in parentheses the median and the range of the ratios within each \
         repetition (the two servers ran back to back, so these cancel most of the machine's drift).\n"
    );
    println!(
        "| ratio | {} |",
        args.connections
            .iter()
            .map(|c| format!("c={c}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(args.connections.len()));
    // Ratio of the medians, then the median and range of the per-repetition ratios: the two servers of
    // one repetition ran minutes apart at most, so those ratios cancel most of the machine's drift.
    let ratio_row = |name: &str, a: usize, b: usize| {
        let cells: Vec<String> = args
            .connections
            .iter()
            .map(|&c| {
                let paired: Vec<f64> = runs(a, c)
                    .iter()
                    .zip(runs(b, c))
                    .map(|(x, y)| x.wrk.requests_per_sec / y.wrk.requests_per_sec)
                    .collect();
                let (low, high) = paired
                    .iter()
                    .fold((f64::INFINITY, 0f64), |(l, h), r| (l.min(*r), h.max(*r)));
                format!(
                    "{:.2}× (per rep {:.2}×, {low:.2}–{high:.2})",
                    rps(a, c) / rps(b, c),
                    median(paired.iter().copied())
                )
            })
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    };
    for (index, subject) in subjects.iter().enumerate().filter(|(_, s)| s.kind == Kind::Weft) {
        ratio_row(
            &format!("{} / tuned wasmtime serve", subject.name),
            index,
            serve_index,
        );
        ratio_row(&format!("{} / plain hyper", subject.name), index, plain_index);
    }
    ratio_row("tuned wasmtime serve / plain hyper", serve_index, plain_index);
    let errors: u64 = results.values().flatten().map(|r| r.wrk.errors).sum();
    println!("\nwrk socket errors and non-2xx responses over all runs: {errors}\n");

    println!("CPU time per request in µs (median over runs; user + system, from `/proc`): server / wrk.\n");
    print!("| server |");
    for c in &args.connections {
        print!(" c={c} |");
    }
    println!("\n|---|{}", "---|".repeat(args.connections.len()));
    for (index, subject) in subjects.iter().enumerate() {
        print!("| {} |", subject.name);
        for &c in &args.connections {
            let r = runs(index, c);
            print!(
                " {:.1} / {:.1} |",
                median(r.iter().map(|r| r.server_cpu_us)),
                median(r.iter().map(|r| r.wrk_cpu_us)),
            );
        }
        println!();
    }

    println!("\nweft-host's own histograms (`weft_runtime_*`, median over runs of each run's quantile):\n");
    println!(
        "| server | connections | instantiate p50 / p99 (µs) | request to response head p50 / p99 (µs) |"
    );
    println!("|---|---|---|---|");
    for (index, subject) in subjects.iter().enumerate().filter(|(_, s)| s.kind == Kind::Weft) {
        for &c in &args.connections {
            let h: Vec<_> = runs(index, c).iter().filter_map(|r| r.histograms).collect();
            println!(
                "| {} | {c} | {:.1} / {:.1} | {:.1} / {:.1} |",
                subject.name,
                median(h.iter().map(|x| x.0.0 * 1e6)),
                median(h.iter().map(|x| x.0.1 * 1e6)),
                median(h.iter().map(|x| x.1.0 * 1e6)),
                median(h.iter().map(|x| x.1.1 * 1e6)),
            );
        }
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
