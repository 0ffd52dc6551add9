//! Runs `wrk` and parses its summary.

use std::net::SocketAddr;
use std::process::Command;

use anyhow::Context;

/// One wrk run's numbers.
#[derive(Debug, Clone)]
pub struct Result {
    /// Requests completed in the run.
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Socket errors plus non-2xx/3xx responses.
    pub errors: u64,
}

/// `wrk -t{1|2} -c{connections} -d{seconds}s --latency -H 'Host: host' http://addr/`.
pub fn run(addr: SocketAddr, host: &str, connections: u32, seconds: u64) -> anyhow::Result<Result> {
    let threads = connections.clamp(1, 2);
    let output = Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
        ])
        .args(["--latency", "-H", &format!("Host: {host}")])
        .arg(format!("http://{addr}/"))
        .output()
        .context("run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
}

fn parse(text: &str) -> anyhow::Result<Result> {
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .context("no Requests/sec")?
        .trim()
        .parse()?;
    let percentile = |p: &str| -> anyhow::Result<f64> {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(p))
            .with_context(|| format!("no {p} line"))?;
        duration_us(line.split_whitespace().nth(1).context("no value")?)
    };
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .context("no request count")?
        .0
        .trim()
        .parse()?;
    let mut errors = 0;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += rest.trim().parse::<u64>()?;
        }
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            for part in rest.split(',') {
                if let Some(n) = part.split_whitespace().nth(1) {
                    errors += n.parse::<u64>()?;
                }
            }
        }
    }
    Ok(Result {
        requests,
        requests_per_sec: rps,
        p50_us: percentile("50%")?,
        p99_us: percentile("99%")?,
        errors,
    })
}

fn duration_us(text: &str) -> anyhow::Result<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).context("no unit")?;
    let (value, unit) = text.split_at(split);
    let value: f64 = value.parse()?;
    Ok(match unit {
        "us" => value,
        "ms" => value * 1e3,
        "s" => value * 1e6,
        "m" => value * 60e6,
        other => anyhow::bail!("unknown unit {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let text = "Running 8s test @ http://127.0.0.1:1/\n  2 threads and 16 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   278.00us  1.2ms   20.00ms   95.00%\n  Latency Distribution\n     50%  278.00us\n     75%  400.00us\n     90%  700.00us\n     99%    1.86ms\n  388752 requests in 8.00s, 30.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 4\nRequests/sec:  48594.00\nTransfer/sec:      3.75MB\n";
        let r = parse(text).unwrap();
        assert_eq!(r.requests, 388752);
        assert_eq!(r.requests_per_sec, 48594.0);
        assert_eq!(r.p50_us, 278.0);
        assert_eq!(r.p99_us, 1860.0);
        assert_eq!(r.errors, 7);
    }
}
