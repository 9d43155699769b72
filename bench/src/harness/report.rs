//! What every scenario shares: where results go, the machine and date stamp, latency summaries,
//! the human table, the progress line and the JSON file (`docs/benchmarks.md`, design
//! "Benchmark conventions").
//!
//! A scenario builds its figures as `serde_json` values in plain units (`transfers_per_second`,
//! `ns_per_transfer`, `p99_ms`, `heap_bytes_per_transfer`, ...), prints a `Table`, and calls
//! `write_json(scenario, params, results)`, which wraps them in the common envelope:
//! `{scenario, date, machine, params, ...results}` at `target/bench/SCENARIO.json`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// `$CARGO_TARGET_DIR/bench` if set, else the workspace root's `target/bench`.
pub(crate) fn out_dir() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("bench/ sits in the workspace root")
            .join("target"),
    };
    target.join("bench")
}

/// Writes `{scenario, date, machine, params, ...results}` to `out_dir()/SCENARIO.json` and returns
/// its path. `results` must be a JSON object.
pub(crate) fn write_json(
    scenario: &str,
    started: &Stamp,
    params: Value,
    results: Value,
) -> PathBuf {
    let mut object = Map::new();
    object.insert("scenario".into(), json!(scenario));
    object.insert("date".into(), json!(started.date));
    object.insert("machine".into(), started.machine.clone());
    object.insert("params".into(), params);
    let Value::Object(results) = results else {
        panic!("scenario results must be a JSON object");
    };
    object.extend(results);
    // The load at the end tells whether other work ran alongside (2 cores, shared machine).
    if let Some(Value::Object(machine)) = object.get_mut("machine") {
        machine.insert("loadavg_end".into(), json!(loadavg()));
    }
    let dir = out_dir();
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let path = dir.join(format!("{scenario}.json"));
    let text = serde_json::to_string_pretty(&Value::Object(object)).expect("JSON encodes");
    std::fs::write(&path, text + "\n").unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// The date and machine, taken when a scenario starts.
pub(crate) struct Stamp {
    /// UTC, ISO-8601, seconds.
    pub date: String,
    /// `machine()` at the start.
    pub machine: Value,
}

impl Stamp {
    /// The stamp of now.
    pub(crate) fn now() -> Self {
        Self {
            date: utc_now_iso8601(),
            machine: machine(),
        }
    }
}

/// Cores, kernel, CPU model, memory and the load average at the start.
pub(crate) fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = proc_field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into());
    let meminfo = read("/proc/meminfo");
    let mem_total_bytes = proc_field(&meminfo, "MemTotal")
        .and_then(|v| v.trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024);
    json!({
        "cores": cores,
        "kernel": kernel,
        "cpu_model": cpu_model,
        "mem_total_bytes": mem_total_bytes,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "loadavg_start": loadavg(),
    })
}

/// `key : value` lines as in /proc/cpuinfo and /proc/meminfo; the first match.
fn proc_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn loadavg() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// Resident set size of this process (VmRSS), in bytes.
pub(crate) fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = proc_field(&status, "VmRSS")?;
    kb.trim_end_matches(" kB")
        .trim()
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

/// Now, as UTC ISO-8601 with seconds (`2025-01-31T12:34:56Z`), from `SystemTime` alone.
pub(crate) fn utc_now_iso8601() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    iso8601(seconds)
}

fn iso8601(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let second_of_day = unix_seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// A latency histogram in nanoseconds, 3 significant figures, 1 ns to 1 hour.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Records one latency in a `latency_histogram` (at least 1 ns; beyond an hour, an hour).
pub(crate) fn record_latency(histogram: &mut Histogram<u64>, elapsed: Duration) {
    histogram.saturating_record(elapsed.as_nanos().max(1) as u64);
}

/// The usual quantiles of a nanosecond histogram, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Maximum.
    pub p100_ms: f64,
}

impl LatencySummary {
    /// The summary of a `latency_histogram`.
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |ns: u64| ns as f64 / 1e6;
        Self {
            count: histogram.len(),
            mean_ms: histogram.mean() / 1e6,
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            p100_ms: ms(histogram.max()),
        }
    }

    /// Adds `p50_ms`, `p99_ms`, `p999_ms`, `p100_ms`, `mean_ms` (and the sample count under
    /// `count_key`) to a JSON object.
    pub(crate) fn insert_into(&self, object: &mut Map<String, Value>, count_key: &str) {
        object.insert(count_key.into(), json!(self.count));
        object.insert("mean_ms".into(), json!(round(self.mean_ms, 4)));
        object.insert("p50_ms".into(), json!(round(self.p50_ms, 4)));
        object.insert("p99_ms".into(), json!(round(self.p99_ms, 4)));
        object.insert("p999_ms".into(), json!(round(self.p999_ms, 4)));
        object.insert("p100_ms".into(), json!(round(self.p100_ms, 4)));
    }
}

/// The median of `values` (sorted in place); 0 for none.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// Rounds to `digits` decimals, for JSON that reads well.
pub(crate) fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// `12345678` → `12,345,678`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A plain text table: a header row, a rule, right-aligned cells (the first column left-aligned).
pub(crate) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers and no rows.
    pub(crate) fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row: one cell per column.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push(cells);
    }

    /// The table as text, one line per row.
    pub(crate) fn render(&self) -> String {
        let columns = self.headers.len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|row| row[c].chars().count())
                    .chain([self.headers[c].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (c, cell) in cells.iter().enumerate() {
                if c > 0 {
                    out.push_str("  ");
                }
                let pad = widths[c] - cell.chars().count();
                if c == 0 {
                    out.push_str(cell);
                    out.extend(std::iter::repeat_n(' ', pad));
                } else {
                    out.extend(std::iter::repeat_n(' ', pad));
                    out.push_str(cell);
                }
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = line(&self.headers);
        let rule: usize = widths.iter().sum::<usize>() + 2 * (columns - 1);
        out.push_str(&"-".repeat(rule));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// A progress line on stderr: rewritten in place on a terminal (at most 5 times a second), a
/// fresh line every 5 s otherwise (CI logs).
pub(crate) struct Progress {
    label: String,
    last: Instant,
    terminal: bool,
    shown: bool,
}

impl Progress {
    /// A progress line labelled `[label]`; nothing shows until the first `update`.
    pub(crate) fn new(label: impl Into<String>) -> Self {
        let terminal = std::io::stderr().is_terminal();
        Self {
            label: label.into(),
            last: Instant::now(),
            terminal,
            shown: false,
        }
    }

    /// Shows `done` of `total` and a free-form note if enough time has passed. Cheap otherwise.
    pub(crate) fn update(&mut self, done: u64, total: u64, note: impl FnOnce() -> String) {
        let every = if self.terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let percent = if total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / total as f64
        };
        let text = format!(
            "[{}] {} / {} ({percent:.0}%) {}",
            self.label,
            thousands(done),
            thousands(total),
            note()
        );
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(stderr, "\r\x1b[2K{text}");
        } else {
            let _ = writeln!(stderr, "{text}");
        }
        let _ = stderr.flush();
        self.shown = true;
    }

    /// Ends the line with a closing note.
    pub(crate) fn finish(&mut self, note: &str) {
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = writeln!(stderr, "\r\x1b[2K[{}] {note}", self.label);
        } else {
            let _ = writeln!(stderr, "[{}] {note}", self.label);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(iso8601(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn table_and_numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        let mut table = Table::new(&["name", "value"]);
        table.row(vec!["a".into(), "1,000".into()]);
        assert_eq!(table.render(), "name  value\n-----------\na     1,000\n");
    }
}
