//! Medians and quantiles from Prometheus histogram scrapes.

/// The median of some values (0 when empty).
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Cumulative bucket counts of one histogram: `(upper bound, count)`, ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram(Vec<(f64, f64)>);

impl Histogram {
    /// Parses `<name>_bucket{le="…"} <count>` lines of a text exposition.
    pub fn parse(text: &str, name: &str) -> anyhow::Result<Self> {
        let prefix = format!("{name}_bucket{{");
        let mut buckets = Vec::new();
        for line in text.lines().filter(|l| l.starts_with(&prefix)) {
            let le = line
                .split("le=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("");
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse()? };
            let count: f64 = line.rsplit(' ').next().unwrap_or("0").parse()?;
            buckets.push((bound, count));
        }
        anyhow::ensure!(!buckets.is_empty(), "no histogram {name} in the scrape");
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(Self(buckets))
    }

    /// The observations between two scrapes.
    pub fn delta(before: &str, after: &str, name: &str) -> anyhow::Result<Self> {
        let before = Self::parse(before, name)?;
        let after = Self::parse(after, name)?;
        anyhow::ensure!(before.0.len() == after.0.len(), "bucket layout changed");
        Ok(Self(
            after
                .0
                .iter()
                .zip(&before.0)
                .map(|(a, b)| (a.0, a.1 - b.1))
                .collect(),
        ))
    }

    /// The `q` quantile, linearly interpolated within its bucket (as Prometheus' `histogram_quantile`).
    pub fn quantile(&self, q: f64) -> f64 {
        let total = self.0.last().map_or(0.0, |b| b.1);
        if total <= 0.0 {
            return f64::NAN;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(bound, count) in &self.0 {
            if count >= rank {
                if bound.is_infinite() {
                    return lower.0;
                }
                let in_bucket = count - lower.1;
                let fraction = if in_bucket > 0.0 {
                    (rank - lower.1) / in_bucket
                } else {
                    0.0
                };
                return lower.0 + (bound - lower.0) * fraction;
            }
            lower = (bound, count);
        }
        lower.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let text =
            "x_bucket{le=\"1\"} 0\nx_bucket{le=\"2\"} 10\nx_bucket{le=\"4\"} 20\nx_bucket{le=\"+Inf\"} 20\n";
        let h = Histogram::parse(text, "x").unwrap();
        assert_eq!(h.quantile(0.5), 2.0);
        assert_eq!(h.quantile(0.25), 1.5);
        assert_eq!(h.quantile(0.75), 3.0);
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn deltas_subtract_scrapes() {
        let a = "x_bucket{le=\"1\"} 5\nx_bucket{le=\"+Inf\"} 5\n";
        let b = "x_bucket{le=\"1\"} 5\nx_bucket{le=\"+Inf\"} 9\n";
        let d = Histogram::delta(a, b, "x").unwrap();
        assert_eq!(d, Histogram(vec![(1.0, 0.0), (f64::INFINITY, 4.0)]));
    }
}
