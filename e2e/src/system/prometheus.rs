//! A real Prometheus (built from its Go module by `e2e/testbins/build.sh`) scraping Weft's components,
//! and PromQL through its HTTP API: what the metrics test, `weft-dev --observe` and the dashboard's
//! query check use.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use weft_testkit::{Supervised, free_port, testbin};

use crate::Error;

/// One scrape job: a name (the `job` label) and its `host:port` targets (path `/metrics`), fixed or read
/// from a file that is rewritten as they change (Prometheus' file discovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeJob {
    /// The `job` label.
    pub name: String,
    /// The fixed targets.
    pub targets: Vec<SocketAddr>,
    /// A targets file (see [`file_sd_targets`]) re-read every second.
    pub targets_file: Option<PathBuf>,
}

impl ScrapeJob {
    /// A job of `name` scraping `targets`.
    pub fn new(name: &str, targets: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            name: name.to_string(),
            targets: targets.into_iter().collect(),
            targets_file: None,
        }
    }

    /// A job of `name` scraping what `file` lists (write it with [`write_targets_file`]).
    pub fn from_file(name: &str, file: &Path) -> Self {
        Self {
            name: name.to_string(),
            targets: Vec::new(),
            targets_file: Some(file.to_path_buf()),
        }
    }
}

/// Pure: the content of a file-discovery targets file listing `targets`.
pub fn file_sd_targets(targets: &[SocketAddr]) -> String {
    let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
    serde_json::json!([{ "targets": targets }]).to_string()
}

/// Writes `targets` to `file` atomically, for a [`ScrapeJob::from_file`] job.
pub fn write_targets_file(file: &Path, targets: &[SocketAddr]) -> Result<(), Error> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, file_sd_targets(targets))
        .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, file).map_err(|e| Error::io(format!("rename {}", tmp.display()), e))
}

/// Pure: the configuration file for `jobs`, scraped every `interval`.
pub fn config(jobs: &[ScrapeJob], interval: Duration) -> String {
    let interval = format!("{}ms", interval.as_millis().max(100));
    let scrape_configs: Vec<Value> = jobs
        .iter()
        .map(|job| {
            let mut c = serde_json::json!({
                "job_name": job.name,
                "static_configs": [{
                    "targets": job.targets.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }],
            });
            if let Some(file) = &job.targets_file {
                c["file_sd_configs"] = serde_json::json!([{
                    "files": [file.display().to_string()],
                    "refresh_interval": "1s",
                }]);
            }
            c
        })
        .collect();
    let config = serde_json::json!({
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": scrape_configs,
    });
    serde_yaml::to_string(&config).expect("a JSON value always renders as YAML")
}

/// One element of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels (`__name__` included when the query kept it).
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// Pure: the samples of a `/api/v1/query` answer, or Prometheus' own error message.
pub fn parse_query_response(body: &str) -> Result<Vec<Sample>, String> {
    let answer: Value = serde_json::from_str(body).map_err(|e| format!("not JSON ({e}): {body}"))?;
    if answer["status"] != "success" {
        return Err(format!(
            "{}: {}",
            answer["errorType"].as_str().unwrap_or("error"),
            answer["error"].as_str().unwrap_or(body)
        ));
    }
    let data = &answer["data"];
    let value = |v: &Value| -> Option<f64> { v.get(1)?.as_str()?.parse().ok() };
    match data["resultType"].as_str() {
        Some("vector") => Ok(data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let labels = s["metric"]
                    .as_object()?
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                Some(Sample {
                    labels,
                    value: value(&s["value"])?,
                })
            })
            .collect()),
        Some("scalar") => Ok(value(&data["result"])
            .map(|value| Sample {
                labels: BTreeMap::new(),
                value,
            })
            .into_iter()
            .collect()),
        other => Err(format!("unexpected result type {other:?}: {body}")),
    }
}

/// Pure: `s` percent-encoded for a URL query value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A running Prometheus on a free loopback port, its data in a directory of its own.
pub struct Prometheus {
    /// The process.
    pub process: Supervised,
    /// Where its UI and HTTP API listen.
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("addr", &self.addr)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `jobs` every `interval`, its configuration, data and log in `dir`,
    /// and waits until it answers `/-/ready`.
    pub async fn start(dir: &Path, jobs: &[ScrapeJob], interval: Duration) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config(jobs, interval))
            .map_err(|e| Error::io(format!("write {}", config_path.display()), e))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(testbin("prometheus")?);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-lifecycle");
        let mut process = Supervised::spawn("prometheus", cmd, &dir.join("prometheus.log"))?;
        crate::controlplane::wait_ready("prometheus", &mut process, Duration::from_secs(60), || {
            crate::net::answers_200(addr, "/-/ready")
        })
        .await?;
        Ok(Self {
            process,
            addr,
            dir: dir.to_path_buf(),
        })
    }

    /// Its base URL, e.g. `http://127.0.0.1:9090`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Evaluates `promql` now; Prometheus' message when it refuses the query.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, Error> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let response = crate::testing::http_get(self.addr, &path, Some("application/json"))
            .await
            .map_err(|e| Error::io(format!("GET {}{path}", self.url()), e))?;
        parse_query_response(&response.body).map_err(|e| Error::Env(format!("PromQL {promql:?}: {e}")))
    }

    /// The `up` value of every target, by `job/instance`.
    pub async fn targets_up(&self) -> Result<BTreeMap<String, bool>, Error> {
        Ok(self
            .query("up")
            .await?
            .into_iter()
            .map(|s| {
                let job = s.labels.get("job").cloned().unwrap_or_default();
                let instance = s.labels.get("instance").cloned().unwrap_or_default();
                (format!("{job}/{instance}"), s.value == 1.0)
            })
            .collect())
    }
}

/// One query of a dashboard panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelQuery {
    /// The panel's title.
    pub title: String,
    /// The PromQL, Grafana's interval variables replaced.
    pub expr: String,
    /// The labels its legend names (`{{label}}` in `legendFormat`): every series must carry them.
    pub legend_labels: Vec<String>,
}

/// The queries of a Grafana dashboard (every panel's `targets[]`, nested rows included), with
/// Grafana's `$__rate_interval`/`$__interval` replaced by `range`: what the dashboard test runs.
pub fn dashboard_queries(dashboard: &Value, range: &str) -> Vec<PanelQuery> {
    fn panels<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        for p in v["panels"].as_array().into_iter().flatten() {
            out.push(p);
            panels(p, out);
        }
    }
    let mut all = Vec::new();
    panels(dashboard, &mut all);
    all.into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| {
                    let expr = t["expr"].as_str()?;
                    let legend = t["legendFormat"].as_str().unwrap_or_default();
                    let legend_labels = legend
                        .split("{{")
                        .skip(1)
                        .filter_map(|rest| Some(rest.split_once("}}")?.0.trim().to_string()))
                        .collect();
                    Some(PanelQuery {
                        title: title.clone(),
                        expr: expr
                            .replace("$__rate_interval", range)
                            .replace("$__interval", range),
                        legend_labels,
                    })
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_every_job_and_target() {
        let jobs = [
            ScrapeJob::new("weft-operator", ["127.0.0.1:8080".parse().unwrap()]),
            ScrapeJob::new(
                "weft-host",
                [
                    "127.0.0.2:9192".parse().unwrap(),
                    "127.0.0.3:9192".parse().unwrap(),
                ],
            ),
        ];
        let parsed: Value = serde_yaml::from_str(&config(&jobs, Duration::from_secs(1))).unwrap();
        assert_eq!(parsed["global"]["scrape_interval"], "1000ms");
        assert_eq!(parsed["scrape_configs"][1]["job_name"], "weft-host");
        assert_eq!(
            parsed["scrape_configs"][1]["static_configs"][0]["targets"],
            serde_json::json!(["127.0.0.2:9192", "127.0.0.3:9192"])
        );
        let from_file = config(
            &[ScrapeJob::from_file("weft-host", Path::new("/run/hosts.json"))],
            Duration::from_secs(1),
        );
        let parsed: Value = serde_yaml::from_str(&from_file).unwrap();
        assert_eq!(
            parsed["scrape_configs"][0]["file_sd_configs"][0]["files"],
            serde_json::json!(["/run/hosts.json"])
        );
        let listed: Value =
            serde_json::from_str(&file_sd_targets(&["127.0.0.4:9192".parse().unwrap()])).unwrap();
        assert_eq!(listed, serde_json::json!([{"targets": ["127.0.0.4:9192"]}]));
    }

    #[test]
    fn query_answers_become_samples_and_errors_keep_prometheus_message() {
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"weft-host"},"value":[1.5,"1"]}]}}"#;
        let samples = parse_query_response(vector).unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].labels["job"], "weft-host");
        assert_eq!(samples[0].value, 1.0);
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"42"]}}"#;
        assert_eq!(parse_query_response(scalar).unwrap()[0].value, 42.0);
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(parse_query_response(empty).unwrap().is_empty());
        let error = r#"{"status":"error","errorType":"bad_data","error":"parse error: unexpected"}"#;
        assert_eq!(
            parse_query_response(error).unwrap_err(),
            "bad_data: parse error: unexpected"
        );
    }

    #[test]
    fn queries_are_percent_encoded_and_dashboard_targets_found_in_rows() {
        assert_eq!(
            url_encode("sum(rate(x{a=\"b\"}[1m]))"),
            "sum%28rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%29"
        );
        let dashboard = serde_json::json!({"panels": [
            {"title": "A", "targets": [{"expr": "rate(a[$__rate_interval])"}]},
            {"title": "Row", "type": "row", "panels": [{"title": "B", "targets": [{"expr": "b"}, {"expr": "c"}]}]},
        ]});
        let queries = dashboard_queries(&dashboard, "30s");
        let plain: Vec<(&str, &str)> = queries
            .iter()
            .map(|q| (q.title.as_str(), q.expr.as_str()))
            .collect();
        assert_eq!(plain, vec![("A", "rate(a[30s])"), ("B", "b"), ("B", "c")]);
        let legend = serde_json::json!({"panels": [{"title": "L", "targets": [
            {"expr": "x", "legendFormat": "{{policy}} {{ result }}"}]}]});
        assert_eq!(
            dashboard_queries(&legend, "1m")[0].legend_labels,
            vec!["policy", "result"]
        );
    }
}
