//! `strata trace summary`, `strata whence` and `strata fs stats`: reading traces and asking a
//! running mount over its control socket (docs/tracing.md, docs/control.md).

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use strata_fs::observe::control::{self, MountEntry};
use strata_fs::observe::stats::errno_name;

/// `strata trace ...`.
#[derive(Args, Debug)]
pub struct TraceArgs {
    #[command(subcommand)]
    cmd: TraceCmd,
}

#[derive(Subcommand, Debug)]
enum TraceCmd {
    /// Per-op counts, errors, latency percentiles and bytes; hottest paths; copy-ups and
    /// delta writes. FILE may be `-` (stdin) or a trace still being written.
    Summary(SummaryArgs),
}

/// How `trace summary` groups requests.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum By {
    /// One row per op.
    Op,
    /// One row per branch that served the request (upper, lower N, delta).
    Layer,
}

#[derive(Args, Debug)]
struct SummaryArgs {
    /// The trace (JSON lines from `strata mount --trace`), or `-` for stdin.
    file: PathBuf,
    /// Group the main table by op or by layer.
    #[arg(long, value_enum, default_value = "op")]
    by: By,
    /// Rows in the hottest-paths table.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Print the summary as one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// `strata whence PATH...`.
#[derive(Args, Debug)]
pub struct WhenceArgs {
    /// Paths inside a mounted strata union (a deleted name is fine: whence says what hides it).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// One JSON object per path (the daemon's answer) instead of text.
    #[arg(long)]
    json: bool,
}

/// `strata fs stats MOUNTPOINT`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// The mountpoint (or any path inside the mount).
    mountpoint: PathBuf,
    /// Print the counters as JSON.
    #[arg(long)]
    json: bool,
}

/// Run `strata trace ...`.
pub fn run_trace(args: TraceArgs) -> Result<(), String> {
    match args.cmd {
        TraceCmd::Summary(a) => summary(a),
    }
}

#[derive(Default)]
struct Group {
    count: u64,
    errors: BTreeMap<i32, u64>,
    lat: Vec<u64>,
    bytes: u64,
}

impl Group {
    fn add(&mut self, errno: i32, lat: u64, bytes: u64) {
        self.count += 1;
        if errno != 0 {
            *self.errors.entry(errno).or_default() += 1;
        }
        self.lat.push(lat);
        self.bytes += bytes;
    }

    fn pct(&self, p: usize) -> u64 {
        if self.lat.is_empty() {
            return 0;
        }
        // Nearest rank (docs/tracing.md): the smallest value with at least p% of the
        // values at or below it, rank ceil(p/100 * n), 1-based.
        let n = self.lat.len();
        let rank = (n * p).div_ceil(100).clamp(1, n);
        self.lat[rank - 1]
    }

    fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "0".into();
        }
        self.errors
            .iter()
            .map(|(e, n)| format!("{} {n}", errno_name(*e)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn json(&self) -> Value {
        let errs: BTreeMap<String, u64> = self
            .errors
            .iter()
            .map(|(e, n)| (errno_name(*e), *n))
            .collect();
        json!({
            "count": self.count,
            "errors": errs,
            "p50_us": self.pct(50),
            "p99_us": self.pct(99),
            "max_us": self.lat.last().copied().unwrap_or(0),
            "bytes": self.bytes,
        })
    }
}

/// Bytes in a trace line count toward totals only for data ops (a readlink's size is not
/// I/O on file contents).
fn data_bytes(op: &str, size: u64) -> u64 {
    match op {
        "read" | "write" | "copy_file_range" => size,
        _ => 0,
    }
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Print rows as a table with aligned columns (first column left, others right).
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w.get(i).copied().unwrap_or(0);
            if i == 0 {
                s.push_str(&format!("{c:<pad$}"));
            } else if i + 1 == cells.len() && header.get(i).is_some_and(|h| h.starts_with("ERR")) {
                s.push_str(&format!("  {c:<pad$}"));
            } else {
                s.push_str(&format!("  {c:>pad$}"));
            }
        }
        outln!("{}", s.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn summary(a: SummaryArgs) -> Result<(), String> {
    let input: Box<dyn BufRead> = if a.file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(&a.file).map_err(|e| format!("{}: {e}", a.file.display()))?,
        ))
    };
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut total = Group::default();
    let mut paths: HashMap<String, (u64, u64, u64)> = HashMap::new();
    let mut copyups: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut copyup_list: Vec<(String, String, String, String)> = Vec::new();
    let mut delta_writes: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut end: Option<Value> = None;
    let (mut first_t, mut last_t) = (u64::MAX, 0u64);
    let mut bad = 0u64;
    for line in input.lines() {
        let line = line.map_err(|e| format!("reading the trace: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        // A live trace may end in half a line: skip what does not parse.
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            bad += 1;
            continue;
        };
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let op = s("op");
        if op == "trace_end" {
            end = Some(v);
            continue;
        }
        let t = n("t_us");
        first_t = first_t.min(t);
        last_t = last_t.max(t);
        let branch = v
            .get("branch")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string();
        if op == "copyup" {
            let kind = s("kind");
            let e = copyups.entry(kind.clone()).or_default();
            e.0 += 1;
            e.1 += n("size");
            copyup_list.push((kind, s("from"), branch, s("path")));
            continue;
        }
        let errno = v.get("errno").and_then(Value::as_i64).unwrap_or(0) as i32;
        let lat = n("lat_us");
        let bytes = data_bytes(&op, n("size"));
        let key = match a.by {
            By::Op => op.clone(),
            By::Layer => branch.clone(),
        };
        groups.entry(key).or_default().add(errno, lat, bytes);
        total.add(errno, lat, bytes);
        let p = paths.entry(s("path")).or_default();
        p.0 += 1;
        p.1 += bytes;
        p.2 += lat;
        if op == "write" && branch == "delta" && errno == 0 {
            let d = delta_writes.entry(s("path")).or_default();
            d.0 += 1;
            d.1 += bytes;
        }
    }
    for g in groups.values_mut() {
        g.lat.sort_unstable();
    }
    total.lat.sort_unstable();
    let mut hot: Vec<(String, (u64, u64, u64))> = paths.into_iter().collect();
    hot.sort_by(|x, y| y.1 .0.cmp(&x.1 .0).then_with(|| x.0.cmp(&y.0)));
    hot.truncate(a.top);
    let drops = end
        .as_ref()
        .and_then(|e| e.get("drops"))
        .and_then(Value::as_u64);
    if a.json {
        let out = json!({
            "events": total.count,
            "total": total.json(),
            "by": match a.by { By::Op => "op", By::Layer => "layer" },
            "groups": groups.iter().map(|(k, g)| (k.clone(), g.json())).collect::<serde_json::Map<_, _>>(),
            "hottest": hot.iter().map(|(p, (c, b, l))| json!({"path": p, "count": c, "bytes": b, "lat_us": l})).collect::<Vec<_>>(),
            "copyups": copyups.iter().map(|(k, (c, b))| (k.clone(), json!({"count": c, "bytes": b}))).collect::<serde_json::Map<_, _>>(),
            "delta_writes": delta_writes.iter().map(|(p, (c, b))| json!({"path": p, "count": c, "bytes": b})).collect::<Vec<_>>(),
            "complete": end.is_some(),
            "drops": drops,
            "unparsed_lines": bad,
        });
        outln!("{out}");
        return Ok(());
    }
    let span = last_t.saturating_sub(first_t);
    outln!(
        "{} requests over {:.3} s, {} failed; trace {}{}",
        total.count,
        span as f64 / 1e6,
        total.errors.values().sum::<u64>(),
        match (end.is_some(), drops) {
            (true, Some(0)) => "complete, nothing dropped".to_string(),
            (true, Some(d)) => format!("complete, {d} events DROPPED (writer fell behind)"),
            _ => "still being written (or the daemon died)".to_string(),
        },
        if bad > 0 {
            format!("; {bad} unreadable line(s) skipped")
        } else {
            String::new()
        }
    );
    outln!();
    let first = match a.by {
        By::Op => "OP",
        By::Layer => "LAYER",
    };
    let mut rows: Vec<(String, &Group)> = groups.iter().map(|(k, g)| (k.clone(), g)).collect();
    rows.sort_by(|x, y| y.1.count.cmp(&x.1.count).then_with(|| x.0.cmp(&y.0)));
    let mut cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(k, g)| {
            vec![
                k.clone(),
                g.count.to_string(),
                g.pct(50).to_string(),
                g.pct(99).to_string(),
                g.lat.last().copied().unwrap_or(0).to_string(),
                human(g.bytes),
                g.errors_text(),
            ]
        })
        .collect();
    cells.push(vec![
        "total".into(),
        total.count.to_string(),
        total.pct(50).to_string(),
        total.pct(99).to_string(),
        total.lat.last().copied().unwrap_or(0).to_string(),
        human(total.bytes),
        total.errors_text(),
    ]);
    table(
        &[
            first, "COUNT", "P50 µs", "P99 µs", "MAX µs", "BYTES", "ERRORS",
        ],
        &cells,
    );
    outln!();
    outln!("hottest paths");
    let cells: Vec<Vec<String>> = hot
        .iter()
        .map(|(p, (c, b, l))| vec![p.clone(), c.to_string(), human(*b), l.to_string()])
        .collect();
    table(&["PATH", "REQUESTS", "BYTES", "TOTAL µs"], &cells);
    outln!();
    if copyups.is_empty() {
        outln!("copy-ups: none");
    } else {
        let parts: Vec<String> = copyups
            .iter()
            .map(|(k, (c, b))| {
                if *b > 0 {
                    format!("{c} {k} ({} copied)", human(*b))
                } else {
                    format!("{c} {k}")
                }
            })
            .collect();
        outln!("copy-ups: {}", parts.join(", "));
        let cells: Vec<Vec<String>> = copyup_list
            .iter()
            .take(a.top.max(20))
            .map(|(k, f, t, p)| vec![p.clone(), k.clone(), format!("{f} -> {t}")])
            .collect();
        table(&["PATH", "KIND", "MOVE"], &cells);
    }
    outln!();
    if delta_writes.is_empty() {
        outln!("delta writes: none");
    } else {
        let (c, b) = delta_writes
            .values()
            .fold((0, 0), |acc, v| (acc.0 + v.0, acc.1 + v.1));
        outln!("delta writes: {c} ({})", human(b));
        let cells: Vec<Vec<String>> = delta_writes
            .iter()
            .map(|(p, (c, b))| vec![p.clone(), c.to_string(), human(*b)])
            .collect();
        table(&["PATH", "WRITES", "BYTES"], &cells);
    }
    Ok(())
}

/// The absolute path of `p` without resolving its last component (a symlink is asked
/// about itself, and a deleted name still has a place).
fn absolute(p: &Path) -> Result<PathBuf, String> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("current directory: {e}"))?
            .join(p)
    };
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|d| d.join(name))
            .map_err(|e| format!("{}: {e}", parent.display())),
        _ => std::fs::canonicalize(&abs).map_err(|e| format!("{}: {e}", abs.display())),
    }
}

/// Connections to mounts, one per mountpoint.
#[derive(Default)]
struct Daemons(HashMap<PathBuf, UnixStream>);

impl Daemons {
    fn ask(&mut self, m: &MountEntry, req: &Value) -> Result<Value, String> {
        if !self.0.contains_key(&m.mountpoint) {
            let c = control::connect(m).map_err(|e| e.to_string())?;
            self.0.insert(m.mountpoint.clone(), c);
        }
        let c = self
            .0
            .get_mut(&m.mountpoint)
            .ok_or_else(|| "lost the connection".to_string())?;
        let resp = control::request(c, req)
            .map_err(|e| format!("talking to the daemon of {}: {e}", m.mountpoint.display()))?;
        if resp.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(resp)
        } else {
            Err(resp
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("the daemon refused the request")
                .to_string())
        }
    }
}

/// Run `strata whence`.
pub fn run_whence(args: WhenceArgs) -> Result<(), String> {
    let mut daemons = Daemons::default();
    let mut failed = 0;
    for p in &args.paths {
        let r = absolute(p).and_then(|abs| {
            let m = control::find_mount(&abs).map_err(|e| e.to_string())?;
            let rel = abs.strip_prefix(&m.mountpoint).unwrap_or(Path::new(""));
            let req = json!({"op": "whence", "path": format!("/{}", rel.display())});
            daemons.ask(&m, &req)
        });
        match r {
            Ok(resp) => {
                let w = resp.get("whence").cloned().unwrap_or(Value::Null);
                if args.json {
                    outln!("{w}");
                } else {
                    let text = w.get("text").and_then(Value::as_str).unwrap_or("?");
                    outln!("{}: {text}", p.display());
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("strata: whence {}: {e}", p.display());
            }
        }
    }
    if failed > 0 {
        Err(format!("{failed} path(s) could not be answered"))
    } else {
        Ok(())
    }
}

/// Run `strata fs stats`.
pub fn run_stats(args: StatsArgs) -> Result<(), String> {
    let abs = std::fs::canonicalize(&args.mountpoint)
        .map_err(|e| format!("{}: {e}", args.mountpoint.display()))?;
    let m = control::find_mount(&abs).map_err(|e| e.to_string())?;
    let resp = Daemons::default().ask(&m, &json!({"op": "stats"}))?;
    let s = resp.get("stats").cloned().unwrap_or(Value::Null);
    if args.json {
        outln!("{s}");
        return Ok(());
    }
    let n = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
    let map = |k: &str| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = s
            .get(k)
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    };
    let errnos = map("errnos");
    let err_total: u64 = errnos.iter().map(|e| e.1).sum();
    let rows = vec![
        vec!["mount".to_string(), m.mountpoint.display().to_string()],
        vec!["nodes".into(), n("nodes").to_string()],
        vec!["open files".into(), n("open_files").to_string()],
        vec!["open dirs".into(), n("open_dirs").to_string()],
        vec!["bytes read".into(), human(n("bytes_read"))],
        vec!["bytes written".into(), human(n("bytes_written"))],
        vec![
            "copy-ups".into(),
            format!("{} ({} copied)", n("copyups"), human(n("bytes_copied"))),
        ],
        vec!["metadata-only copies".into(), n("meta_copyups").to_string()],
        vec!["directory copy-ups".into(), n("dir_copyups").to_string()],
        vec![
            "deltas".into(),
            format!(
                "{} created, {} made whole",
                n("deltas_created"),
                n("deltas_made_whole")
            ),
        ],
        vec!["compactions".into(), {
            let c = |k: &str| {
                s.get("compactions")
                    .and_then(|c| c.get(k))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            };
            format!(
                "{} queued, {} done, {} failed, {} pending",
                c("queued"),
                c("done"),
                c("failed"),
                c("pending")
            )
        }],
        vec![
            "delta writes".into(),
            format!(
                "{} ({} blocks)",
                n("delta_writes"),
                n("delta_blocks_written")
            ),
        ],
        vec![
            "errors".into(),
            if errnos.is_empty() {
                "0".into()
            } else {
                format!(
                    "{err_total} ({})",
                    errnos
                        .iter()
                        .map(|(e, c)| format!("{e} {c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        ],
        vec![
            "tracing".into(),
            if s.get("tracing").and_then(Value::as_bool) == Some(true) {
                format!(
                    "on, {} events, {} dropped",
                    n("trace_events"),
                    n("trace_drops")
                )
            } else {
                "off".into()
            },
        ],
    ];
    let w = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    for r in &rows {
        outln!("{:<w$}  {}", r[0], r[1]);
    }
    outln!();
    let ops = map("ops");
    let errs: HashMap<String, u64> = map("errors").into_iter().collect();
    let cells: Vec<Vec<String>> = ops
        .iter()
        .map(|(op, c)| {
            vec![
                op.clone(),
                c.to_string(),
                errs.get(op).copied().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    table(&["OP", "REQUESTS", "ERRORS"], &cells);
    Ok(())
}
