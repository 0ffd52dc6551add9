//! Placement throughput: 1,000 hosts and 10,000 workloads placed one after another in one session (each
//! placement counted on its host, as the operator does), for every built-in policy and for the example
//! native plugin, whose in-tree twin is `spread`; plus the cost of sending the whole snapshot on every
//! decision instead of once per session. Prints a Markdown table; run with
//! `cargo bench -p weft-scheduler-native --bench placement`.
//!
//! Environment: `WEFT_BENCH_HOSTS` (1000), `WEFT_BENCH_WORKLOADS` (10000), `WEFT_BENCH_RUNS` (5, fastest kept).

use std::time::{Duration, Instant};

use weft_scheduler_api::{Placement, Policy, ScheduleError, Session, Snapshot, SplitMix64, WorkloadRequest};
use weft_scheduler_builtin::{BuiltinOptions, binpack, random, resource_aware, spread};
use weft_scheduler_native::NativePlugin;
use weft_scheduler_testing::{clusters, example_plugin};

const SEED: u64 = 0x5EED;
const TARGET_PER_SECOND: f64 = 5000.0;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

struct Run {
    elapsed: Duration,
    /// Time spent on decisions that found no host.
    unschedulable_time: Duration,
    placements: Vec<Result<Placement, ScheduleError>>,
}

fn place_all(session: &mut dyn Session, workloads: &[WorkloadRequest]) -> Run {
    let mut unschedulable_time = Duration::ZERO;
    let start = Instant::now();
    let placements = workloads
        .iter()
        .map(|workload| {
            let decision = Instant::now();
            let result = session.place(workload);
            if result.is_err() {
                unschedulable_time += decision.elapsed();
            }
            result
        })
        .collect();
    Run {
        elapsed: start.elapsed(),
        unschedulable_time,
        placements,
    }
}

struct Row {
    name: String,
    open: Duration,
    best: Run,
}

impl Row {
    fn per_second(&self) -> f64 {
        self.best.placements.len() as f64 / self.best.elapsed.as_secs_f64()
    }

    fn micros_per_decision(&self) -> f64 {
        self.best.elapsed.as_secs_f64() * 1e6 / self.best.placements.len() as f64
    }

    fn unschedulable(&self) -> usize {
        self.best
            .placements
            .iter()
            .filter(|result| result.is_err())
            .count()
    }

    /// Mean µs of decisions that placed the workload, and of those that found no host.
    fn split_micros(&self) -> (f64, f64) {
        let failed = self.unschedulable();
        let placed = self.best.placements.len() - failed;
        let failed_time = self.best.unschedulable_time.as_secs_f64() * 1e6;
        let placed_time = self.best.elapsed.as_secs_f64() * 1e6 - failed_time;
        (
            placed_time / placed.max(1) as f64,
            failed_time / failed.max(1) as f64,
        )
    }
}

/// One timed session: open it over a copy of the snapshot, then place every workload.
fn measure_once(policy: &dyn Policy, snapshot: &Snapshot, workloads: &[WorkloadRequest]) -> (Duration, Run) {
    let start = Instant::now();
    let mut session = policy.open(snapshot.clone(), SEED).expect("session opens");
    let open = start.elapsed();
    (open, place_all(session.as_mut(), workloads))
}

/// Runs every policy `runs` times, interleaved so that load from other processes spreads evenly over
/// them, and keeps each policy's fastest run.
fn measure(
    policies: &[(&str, &dyn Policy)],
    snapshot: &Snapshot,
    workloads: &[WorkloadRequest],
    runs: usize,
) -> Vec<Row> {
    let mut best: Vec<Option<(Duration, Run)>> = policies.iter().map(|_| None).collect();
    for _ in 0..runs {
        for ((_, policy), kept) in policies.iter().zip(&mut best) {
            let (open, run) = measure_once(*policy, snapshot, workloads);
            if kept
                .as_ref()
                .is_none_or(|(_, fastest)| run.elapsed < fastest.elapsed)
            {
                *kept = Some((open, run));
            }
        }
    }
    policies
        .iter()
        .zip(best)
        .map(|((name, _), kept)| {
            let (open, best) = kept.expect("at least one run");
            Row {
                name: (*name).to_owned(),
                open,
                best,
            }
        })
        .collect()
}

/// Sends the whole snapshot with every decision (a session per decision), as a stateless ABI would.
fn per_call_snapshot(plugin: &NativePlugin, snapshot: &Snapshot, workloads: &[WorkloadRequest]) -> Run {
    let mut current = snapshot.clone();
    let start = Instant::now();
    let placements = workloads
        .iter()
        .map(|workload| {
            let mut session = plugin.open_session(current.clone(), SEED)?;
            let placement = session.place(workload)?;
            current
                .assume(&placement.host_id, &workload.footprint())
                .expect("the host is in the snapshot");
            Ok(placement)
        })
        .collect();
    Run {
        elapsed: start.elapsed(),
        unschedulable_time: Duration::ZERO,
        placements,
    }
}

fn main() {
    let host_count = setting("WEFT_BENCH_HOSTS", 1000);
    let workload_count = setting("WEFT_BENCH_WORKLOADS", 10_000);
    let runs = setting("WEFT_BENCH_RUNS", 5).max(1);
    let mut rng = SplitMix64::new(42);
    let snapshot = clusters::snapshot(&mut rng, host_count);
    let workloads = clusters::workloads(&mut rng, workload_count);
    let options = BuiltinOptions::default();

    // SAFETY: the example plugin is built from this repository.
    let plugin = unsafe { NativePlugin::load(example_plugin()) }.expect("the example plugin loads");
    let policies: [(&str, &dyn Policy); 5] = [
        ("random", &random()),
        ("spread", &spread()),
        ("binpack", &binpack(options.thresholds)),
        (
            "resource-aware",
            &resource_aware(options.thresholds, options.headroom_bucket_bp),
        ),
        ("example-spread (native plugin)", &plugin),
    ];
    let rows = measure(&policies, &snapshot, &workloads, runs);

    let spread_row = &rows[1];
    let native_row = &rows[4];
    let identical = spread_row.best.placements == native_row.best.placements;

    // The fixed cost of crossing the boundary: one host, so the decision itself costs next to nothing.
    let tiny = Snapshot::new(vec![snapshot.hosts()[0].clone()]).expect("one host");
    let tiny_workloads: Vec<WorkloadRequest> = workloads
        .iter()
        .map(|workload| WorkloadRequest {
            host_interfaces: Vec::new(),
            ..workload.clone()
        })
        .collect();
    let boundary = measure(
        &[("spread", &spread()), ("native", &plugin)],
        &tiny,
        &tiny_workloads,
        runs,
    );

    let naive_count = workloads.len().min(200);
    let naive = per_call_snapshot(&plugin, &snapshot, &workloads[..naive_count]);
    let naive_rate = naive_count as f64 / naive.elapsed.as_secs_f64();

    println!(
        "placement benchmark: {host_count} hosts, {workload_count} workloads, fastest of {runs} interleaved runs"
    );
    println!();
    println!(
        "| policy | decisions/s | µs/decision | µs placed / unschedulable | unschedulable | session open | \
         ≥ {TARGET_PER_SECOND}/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|:---:|");
    for row in &rows {
        let (placed, failed) = row.split_micros();
        println!(
            "| {} | {:.0} | {:.1} | {placed:.1} / {failed:.1} | {} | {:.2} ms | {} |",
            row.name,
            row.per_second(),
            row.micros_per_decision(),
            row.unschedulable(),
            row.open.as_secs_f64() * 1e3,
            if row.per_second() >= TARGET_PER_SECOND {
                "yes"
            } else {
                "no"
            },
        );
    }
    println!(
        "| example-spread, whole snapshot sent with every decision (first {naive_count} workloads) | \
         {naive_rate:.0} | {:.1} | — | {} | — | {} |",
        naive.elapsed.as_secs_f64() * 1e6 / naive_count as f64,
        naive.placements.iter().filter(|result| result.is_err()).count(),
        if naive_rate >= TARGET_PER_SECOND {
            "yes"
        } else {
            "no"
        },
    );
    println!();
    println!(
        "FFI overhead: native plugin / in-tree spread = {:.3}× the time per decision ({:+.1} µs per decision); \
         native rate = {:.2}× in-tree",
        native_row.micros_per_decision() / spread_row.micros_per_decision(),
        native_row.micros_per_decision() - spread_row.micros_per_decision(),
        native_row.per_second() / spread_row.per_second(),
    );
    println!(
        "snapshot once per session vs with every decision: {:.0}× the decisions per second",
        native_row.per_second() / naive_rate
    );
    println!(
        "boundary cost on a one-host snapshot: in-tree {:.2} µs, native {:.2} µs per decision ({:+.2} µs, {:.2}×)",
        boundary[0].micros_per_decision(),
        boundary[1].micros_per_decision(),
        boundary[1].micros_per_decision() - boundary[0].micros_per_decision(),
        boundary[1].micros_per_decision() / boundary[0].micros_per_decision(),
    );
    println!(
        "native placements identical to in-tree spread: {}",
        if identical { "yes" } else { "NO" }
    );
    assert!(identical, "the native plugin diverged from its in-tree twin");
}
