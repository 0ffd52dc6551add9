//! A strict parser for the Prometheus text format (0.0.4) and OpenMetrics text, for tests, benchmarks and
//! tools that read a `/metrics` scrape. It rejects what a scraper would reject: bad names, label syntax or
//! values, samples outside a declared family, duplicate series, histograms whose buckets are not
//! cumulative or whose `+Inf` bucket differs from `_count`, and (OpenMetrics) a missing `# EOF`.

use std::collections::{BTreeMap, HashSet};

/// Which text format to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Series name (with any suffix such as `_bucket`).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A metric family: its metadata and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Family name as declared by `# TYPE`.
    pub name: String,
    /// `counter`, `gauge`, `histogram`, `summary`, `unknown`, …
    pub kind: String,
    /// Help text.
    pub help: Option<String>,
    /// Samples.
    pub samples: Vec<Sample>,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// Families in order of appearance.
    pub families: Vec<Family>,
}

/// A parse error with its line number (1-based).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// Line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl Scrape {
    /// The family named `name`.
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// Every sample of series `name`.
    pub fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.families
            .iter()
            .flat_map(|f| f.samples.iter())
            .filter(move |s| s.name == name)
    }

    /// The value of series `name` whose labels include all of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples(name)
            .find(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if s
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

/// Parses `{a="b",c="d"}` starting at `{`; returns the labels and the rest of the line.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("expected '{'")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = &rest[..eq];
        if !valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("invalid escape {other:?} in label {name}")),
                },
                Some((_, '\n')) | None => return Err(format!("unterminated value of label {name}")),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("duplicate label {name}"));
        }
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

/// The suffixes a sample may add to its family name, per type and format.
fn allowed_suffixes(kind: &str, format: Format) -> &'static [&'static str] {
    match (kind, format) {
        ("counter", Format::OpenMetrics) => &["_total", "_created"],
        ("counter", Format::Prometheus) => &[""],
        ("histogram", Format::OpenMetrics) => &["_bucket", "_sum", "_count", "_created"],
        ("histogram", Format::Prometheus) => &["_bucket", "_sum", "_count"],
        ("summary", _) => &["", "_sum", "_count", "_created"],
        _ => &[""],
    }
}

/// Parses a scrape strictly.
pub fn parse(text: &str, format: Format) -> Result<Scrape, ParseError> {
    let mut scrape = Scrape::default();
    let mut series = HashSet::new();
    let mut eof = false;
    let err = |line: usize, message: String| ParseError { line, message };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if eof {
            return Err(err(n, "content after # EOF".into()));
        }
        if line.is_empty() {
            if format == Format::OpenMetrics {
                return Err(err(n, "empty line".into()));
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if comment == " EOF" {
                eof = true;
                continue;
            }
            let mut parts = comment.trim_start().splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
                if format == Format::OpenMetrics {
                    return Err(err(n, format!("unknown comment {line:?}")));
                }
                continue;
            }
            let name = parts.next().unwrap_or("");
            let arg = parts.next().unwrap_or("");
            if !valid_metric_name(name) {
                return Err(err(n, format!("invalid metric name {name:?}")));
            }
            let idx = match scrape.families.iter().position(|f| f.name == name) {
                Some(idx) => idx,
                None => {
                    scrape.families.push(Family {
                        name: name.to_string(),
                        kind: String::new(),
                        help: None,
                        samples: Vec::new(),
                    });
                    scrape.families.len() - 1
                }
            };
            let family = &mut scrape.families[idx];
            if !family.samples.is_empty() {
                return Err(err(n, format!("metadata for {name} after its samples")));
            }
            match keyword {
                "HELP" if family.help.is_some() => return Err(err(n, format!("second HELP for {name}"))),
                "HELP" => family.help = Some(arg.to_string()),
                "TYPE" if !family.kind.is_empty() => return Err(err(n, format!("second TYPE for {name}"))),
                "TYPE" => {
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "untyped",
                        "unknown",
                        "info",
                        "stateset",
                        "gaugehistogram",
                    ];
                    if !known.contains(&arg) {
                        return Err(err(n, format!("unknown type {arg:?}")));
                    }
                    family.kind = arg.to_string();
                }
                _ => {
                    if format == Format::Prometheus {
                        return Err(err(n, "UNIT is not part of the Prometheus text format".into()));
                    }
                    if !name.ends_with(&format!("_{arg}")) {
                        return Err(err(n, format!("{name} does not end with its unit {arg}")));
                    }
                }
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err(n, "sample without value".into()))?;
        let name = &line[..name_end];
        if !valid_metric_name(name) {
            return Err(err(n, format!("invalid metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(|m| err(n, m))?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| err(n, "expected a space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value_text = fields.next().unwrap_or("");
        let value = parse_value(value_text).ok_or_else(|| err(n, format!("invalid value {value_text:?}")))?;
        if let Some(ts) = fields.next()
            && ts.parse::<f64>().is_err()
        {
            return Err(err(n, format!("invalid timestamp {ts:?}")));
        }
        if fields.next().is_some() {
            return Err(err(n, "trailing fields".into()));
        }
        let family = scrape
            .families
            .iter_mut()
            .rev()
            .find(|f| {
                name.strip_prefix(f.name.as_str())
                    .is_some_and(|suffix| allowed_suffixes(&f.kind, format).contains(&suffix))
            })
            .ok_or_else(|| err(n, format!("sample {name} outside any declared family")))?;
        if family.kind.is_empty() {
            return Err(err(n, format!("sample {name} before the TYPE of its family")));
        }
        let key = format!("{name}{labels:?}");
        if !series.insert(key) {
            return Err(err(n, format!("duplicate series {name}{labels:?}")));
        }
        family.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    if format == Format::OpenMetrics && !eof {
        return Err(err(text.lines().count() + 1, "missing # EOF".into()));
    }
    for family in scrape.families.iter().filter(|f| f.kind == "histogram") {
        check_histogram(family).map_err(|m| err(0, m))?;
    }
    Ok(scrape)
}

/// Buckets must be cumulative and the `+Inf` bucket must equal `_count`, per label set.
fn check_histogram(family: &Family) -> Result<(), String> {
    let bucket = format!("{}_bucket", family.name);
    let count = format!("{}_count", family.name);
    let mut groups: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
    for s in family.samples.iter().filter(|s| s.name == bucket) {
        let mut labels = s.labels.clone();
        let le = labels
            .remove("le")
            .ok_or_else(|| format!("{bucket} without le"))?;
        let le = parse_value(&le).ok_or_else(|| format!("{bucket} with invalid le {le:?}"))?;
        groups.entry(labels).or_default().push((le, s.value));
    }
    for (labels, mut buckets) in groups {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
            return Err(format!("{bucket}{labels:?} is not cumulative"));
        }
        let inf = buckets
            .last()
            .filter(|b| b.0.is_infinite())
            .ok_or_else(|| format!("{bucket}{labels:?} has no +Inf"))?;
        let total = family
            .samples
            .iter()
            .find(|s| s.name == count && s.labels == labels)
            .ok_or_else(|| format!("{count}{labels:?} missing"))?;
        if total.value != inf.1 {
            return Err(format!(
                "{count}{labels:?} is {} but the +Inf bucket is {}",
                total.value, inf.1
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_text() {
        let text = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\n\"} 3\n\
                    # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
        let s = parse(text, Format::Prometheus).expect("valid");
        assert_eq!(s.value("a_total", &[("x", "1")]), Some(3.0));
        assert_eq!(s.samples("a_total").next().unwrap().labels["y"], "q\"\n");
        assert_eq!(s.family("h").unwrap().samples.len(), 4);
    }

    #[test]
    fn openmetrics_needs_eof_and_suffixes() {
        let ok = "# TYPE a counter\n# UNIT b_seconds seconds\n# TYPE b_seconds gauge\na_total 1\nb_seconds 2\n# EOF\n";
        assert!(parse(ok, Format::OpenMetrics).is_ok());
        assert!(parse("# TYPE a counter\na_total 1\n", Format::OpenMetrics).is_err());
        assert!(parse("# TYPE a counter\na 1\n# EOF\n", Format::OpenMetrics).is_err());
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            "a 1\n",
            "# TYPE a gauge\na{x=1} 1\n",
            "# TYPE a gauge\na{x=\"1\"}1\n",
            "# TYPE a gauge\na abc\n",
            "# TYPE a gauge\na 1\na 2\n",
            "# TYPE a gauge\n# TYPE a gauge\n",
            "# TYPE 1a gauge\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 0\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\nh_sum 0\n",
        ] {
            assert!(parse(bad, Format::Prometheus).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn the_frameworks_own_output_parses_in_both_formats() {
        let m = crate::metrics::Metrics::new();
        let c = m.controller("c", 1);
        c.reconcile_time(std::time::Duration::from_millis(30));
        m.queue("c");
        parse(&m.encode_prometheus(), Format::Prometheus).expect("prometheus text");
        let om = parse(&m.encode_openmetrics(), Format::OpenMetrics).expect("openmetrics");
        assert_eq!(
            om.value(
                "controller_runtime_reconcile_time_seconds_count",
                &[("controller", "c")]
            ),
            Some(1.0)
        );
    }
}
