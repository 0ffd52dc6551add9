//! System facts for the heartbeat, read straight from `/proc` and the cgroup filesystem (no heavy
//! system-information crate). Parsers are pure; [`FactsSampler`] does the reading.

use std::sync::Mutex;

/// Aggregate CPU time counters from the first line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// All non-guest time (user, nice, system, idle, iowait, irq, softirq, steal).
    pub total: u64,
    /// Idle time (idle + iowait).
    pub idle: u64,
}

/// Parses the `cpu` line of `/proc/stat`.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is already in user.
    let total = fields.iter().take(8).sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes { total, idle })
}

/// Busy percentage between two samples (0–100). Without elapsed ticks, the average since `cur`'s
/// boot.
pub fn cpu_usage_percent(prev: Option<CpuTimes>, cur: CpuTimes) -> f32 {
    let (total, idle) = match prev {
        Some(p) if cur.total > p.total => (cur.total - p.total, cur.idle.saturating_sub(p.idle)),
        _ => (cur.total, cur.idle),
    };
    if total == 0 {
        return 0.0;
    }
    let busy = total.saturating_sub(idle) as f64 / total as f64 * 100.0;
    (busy.clamp(0.0, 100.0) * 100.0).round() as f32 / 100.0
}

/// Memory figures from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total: u64,
    /// `MemAvailable` (what can be allocated without swapping), or `MemFree` on old kernels.
    pub available: u64,
}

/// Parses `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kib * 1024)
        })
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable").or_else(|| field("MemFree"))?;
    Some(MemInfo { total, available })
}

/// Applies a cgroup v2 memory limit (`memory.max`, `memory.current`) to the machine's figures: inside
/// a container the limit is what the host may actually use.
pub fn apply_cgroup_limit(mem: MemInfo, memory_max: Option<&str>, memory_current: Option<&str>) -> MemInfo {
    let Some(limit) = memory_max.and_then(|m| m.trim().parse::<u64>().ok()) else {
        return mem;
    };
    let total = mem.total.min(limit);
    let used = memory_current
        .and_then(|c| c.trim().parse::<u64>().ok())
        .unwrap_or(0);
    MemInfo {
        total,
        available: mem.available.min(total.saturating_sub(used)),
    }
}

/// The system facts a heartbeat carries.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemFacts {
    /// e.g. `linux`.
    pub os_name: String,
    /// e.g. `x86_64`.
    pub os_arch: String,
    /// Kernel release, e.g. `6.8.0-41-generic`.
    pub os_kernel: String,
    /// System CPU usage in percent since the previous sample.
    pub cpu_usage_percent: f32,
    /// Memory the host may use, in bytes.
    pub memory_total: u64,
    /// Memory still available to the host, in bytes.
    pub memory_free: u64,
}

/// Reads [`SystemFacts`], remembering the previous CPU sample so usage covers the time between
/// heartbeats.
#[derive(Debug)]
pub struct FactsSampler {
    prev_cpu: Mutex<Option<CpuTimes>>,
    os_kernel: String,
}

impl Default for FactsSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl FactsSampler {
    /// Takes a first CPU sample now, so the first heartbeat reports usage since start-up.
    pub fn new() -> Self {
        let os_kernel = read("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Self {
            prev_cpu: Mutex::new(read("/proc/stat").as_deref().and_then(parse_proc_stat)),
            os_kernel,
        }
    }

    /// The current facts. Figures that cannot be read are reported as zero.
    pub fn sample(&self) -> SystemFacts {
        let cpu = read("/proc/stat").as_deref().and_then(parse_proc_stat);
        let cpu_usage_percent = match cpu {
            Some(cur) => {
                let mut prev = self.prev_cpu.lock().unwrap_or_else(|p| p.into_inner());
                let usage = cpu_usage_percent(*prev, cur);
                *prev = Some(cur);
                usage
            }
            None => 0.0,
        };
        let mem = read("/proc/meminfo")
            .as_deref()
            .and_then(parse_meminfo)
            .map(|m| {
                apply_cgroup_limit(
                    m,
                    read("/sys/fs/cgroup/memory.max").as_deref(),
                    read("/sys/fs/cgroup/memory.current").as_deref(),
                )
            })
            .unwrap_or(MemInfo {
                total: 0,
                available: 0,
            });
        SystemFacts {
            os_name: std::env::consts::OS.to_string(),
            os_arch: std::env::consts::ARCH.to_string(),
            os_kernel: self.os_kernel.clone(),
            cpu_usage_percent,
            memory_total: mem.total,
            memory_free: mem.available,
        }
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 50 800 20 3 2 0 7 0\ncpu0 50 2 25 400 10 1 1 0 3 0\nintr 12345\n";

    #[test]
    fn proc_stat_totals_exclude_guest_time() {
        let t = parse_proc_stat(STAT).unwrap();
        assert_eq!(
            t,
            CpuTimes {
                total: 100 + 5 + 50 + 800 + 20 + 3 + 2,
                idle: 820
            }
        );
        assert_eq!(parse_proc_stat("cpu  1 2\n"), None);
        assert_eq!(parse_proc_stat("garbage"), None);
    }

    #[test]
    fn cpu_usage_is_the_busy_share_between_samples() {
        let prev = CpuTimes {
            total: 1000,
            idle: 800,
        };
        let cur = CpuTimes {
            total: 1200,
            idle: 850,
        };
        assert_eq!(cpu_usage_percent(Some(prev), cur), 75.0);
        // No ticks elapsed: fall back to the since-boot average.
        assert_eq!(cpu_usage_percent(Some(cur), cur), 29.17);
        assert_eq!(cpu_usage_percent(None, CpuTimes { total: 0, idle: 0 }), 0.0);
    }

    #[test]
    fn meminfo_prefers_available_memory() {
        let text = "MemTotal:       16314664 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some(MemInfo {
                total: 16314664 * 1024,
                available: 8000000 * 1024
            })
        );
        let old = "MemTotal: 2048 kB\nMemFree: 1024 kB\n";
        assert_eq!(
            parse_meminfo(old),
            Some(MemInfo {
                total: 2048 * 1024,
                available: 1024 * 1024
            })
        );
        assert_eq!(parse_meminfo("nothing"), None);
    }

    #[test]
    fn cgroup_limits_cap_the_machine_figures() {
        let machine = MemInfo {
            total: 16 << 30,
            available: 8 << 30,
        };
        let limited = apply_cgroup_limit(machine, Some("1073741824\n"), Some("268435456\n"));
        assert_eq!(
            limited,
            MemInfo {
                total: 1 << 30,
                available: 768 << 20
            }
        );
        assert_eq!(apply_cgroup_limit(machine, Some("max\n"), Some("1")), machine);
        assert_eq!(apply_cgroup_limit(machine, None, None), machine);
    }

    #[test]
    fn sampling_this_machine_gives_plausible_figures() {
        let sampler = FactsSampler::new();
        let facts = sampler.sample();
        assert_eq!(facts.os_name, std::env::consts::OS);
        assert!(!facts.os_kernel.is_empty());
        assert!(
            facts.memory_total > 0 && facts.memory_free <= facts.memory_total,
            "{facts:?}"
        );
        assert!((0.0..=100.0).contains(&facts.cpu_usage_percent), "{facts:?}");
    }
}
