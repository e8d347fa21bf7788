//! Tracing, `strata whence`, `strata fs stats` and `strata trace summary` on real mounts.
//!
//! Two lower branches with known contents, a scripted workload, then: the trace holds the
//! expected ops with the right branches (lower N before a write, upper or delta after),
//! copy-up events; whence names every kind of origin; stats counters move; the summary's
//! totals match the trace line by line. No timing assertions; waits poll with a deadline.

use serde_json::Value;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use strata_tests::mount::{pids_with_arg, reap_daemons, unmount_path};
use strata_tests::{is_mounted, run_strata, strata_bin, wait_until, TempDir};

struct TraceMount {
    dir: TempDir,
    l0: PathBuf,
    l1: PathBuf,
    mnt: PathBuf,
    trace: PathBuf,
    mounted: bool,
    daemons: Vec<i32>,
}

impl TraceMount {
    /// Branches: lower 0 over lower 1, plus an upper; nothing mounted yet.
    fn new(label: &str) -> TraceMount {
        let dir = TempDir::new(label);
        for d in ["l0", "l1", "upper", "work", "mnt"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        TraceMount {
            l0: dir.join("l0"),
            l1: dir.join("l1"),
            mnt: dir.join("mnt"),
            trace: dir.join("trace.jsonl"),
            dir,
            mounted: false,
            daemons: Vec::new(),
        }
    }

    /// Mount with `--trace` and the extra CLI arguments; passthrough off so reads of lower
    /// files reach the daemon (as root they would go to the kernel directly).
    fn mount(&mut self, extra: &[&str]) {
        let opts = format!(
            "lowerdir={}:{},upperdir={},workdir={},passthrough=0",
            self.l0.display(),
            self.l1.display(),
            self.dir.join("upper").display(),
            self.dir.join("work").display()
        );
        let trace = self.trace.to_string_lossy().to_string();
        let mnt = self.mnt.to_string_lossy().to_string();
        let mut args = vec!["mount", "--trace", &trace];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-o", &opts, &mnt]);
        let (ok, text) = run_strata(&args, &self.dir.join("strata.log"));
        assert!(ok, "strata {args:?} failed:\n{text}");
        assert!(is_mounted(&self.mnt), "not mounted:\n{text}");
        self.daemons = pids_with_arg(&mnt);
        self.mounted = true;
    }

    fn unmount(&mut self) {
        if !self.mounted {
            return;
        }
        unmount_path(&self.mnt).unwrap();
        self.mounted = false;
        reap_daemons(&std::mem::take(&mut self.daemons));
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// The trace lines written so far.
    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.trace)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for TraceMount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = unmount_path(&self.mnt);
            reap_daemons(&std::mem::take(&mut self.daemons));
        }
    }
}

fn strata(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(strata_bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn n(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn write_file(p: &Path, data: &[u8]) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(p, data).unwrap();
}

/// The branch tree every test starts from.
fn populate(m: &TraceMount) {
    write_file(&m.l1.join("a"), b"hello\n");
    write_file(&m.l0.join("b"), b"top\n");
    write_file(&m.l1.join("d/x"), b"x\n");
    write_file(&m.l0.join("d/y"), b"y\n");
    write_file(&m.l1.join("e/only"), b"e\n");
    write_file(&m.l1.join("g"), b"gone\n");
    write_file(&m.l0.join(".wh.g"), b"");
    // 2 MiB: over the default 1 MiB delta threshold, 512 blocks of 4 KiB.
    let big: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8).collect();
    write_file(&m.l1.join("big"), &big);
}

fn read_all(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(p).unwrap().read_to_end(&mut v).unwrap();
    v
}

fn stats(m: &TraceMount) -> Value {
    let mnt = m.mnt.to_string_lossy().to_string();
    let (ok, out, err) = strata(&["fs", "stats", "--json", &mnt]);
    assert!(ok, "strata fs stats failed: {err}");
    serde_json::from_str(out.trim()).unwrap()
}

/// Events of `op` on `path` (lines in the trace).
fn events<'a>(lines: &'a [Value], op: &str, path: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| s(l, "op") == op && s(l, "path") == path)
        .collect()
}

#[test]
fn trace_whence_stats_summary() {
    let mut m = TraceMount::new("trace");
    populate(&m);
    m.mount(&[]);
    let before = stats(&m);
    assert_eq!(before.get("tracing"), Some(&Value::Bool(true)));

    // Reads of lower files.
    assert_eq!(read_all(&m.p("a")), b"hello\n");
    assert_eq!(read_all(&m.p("b")), b"top\n");
    // Append to a small lower file: a whole copy-up.
    {
        let mut f = OpenOptions::new().append(true).open(m.p("b")).unwrap();
        f.write_all(b"more\n").unwrap();
        f.sync_all().unwrap();
    }
    // One block into the big file: a delta.
    {
        let f = OpenOptions::new().write(true).open(m.p("big")).unwrap();
        f.write_all_at(&[7u8; 4096], 8192).unwrap();
        f.sync_all().unwrap();
    }
    // chmod: a metadata-only copy (and its directory copied up).
    std::fs::set_permissions(m.p("d/x"), std::fs::Permissions::from_mode(0o600)).unwrap();
    write_file(&m.p("n"), b"new\n");
    std::fs::remove_file(m.p("a")).unwrap();
    // Opening b again: now served by the upper.
    assert_eq!(read_all(&m.p("b")), b"top\nmore\n");

    // whence: every kind of origin.
    let mnt = m.mnt.to_string_lossy().to_string();
    let rels = ["b", "a", "d", "d/x", "d/y", "e", "big", "g", "n", "zz", ""];
    let paths: Vec<String> = rels
        .iter()
        .map(|r| {
            if r.is_empty() {
                mnt.clone()
            } else {
                format!("{mnt}/{r}")
            }
        })
        .collect();
    let mut args = vec!["whence", "--json"];
    args.extend(paths.iter().map(String::as_str));
    let (ok, out, err) = strata(&args);
    assert!(ok, "whence failed: {err}\n{out}");
    let ws: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ws.len(), rels.len(), "{out}");
    let w = |rel: &str| &ws[rels.iter().position(|r| *r == rel).unwrap()];
    let text = |rel: &str| s(w(rel), "text").to_string();
    assert_eq!(text("b"), "upper");
    assert_eq!(s(w("b"), "origin"), "upper");
    assert_eq!(text("a"), "whiteout hides lower 1");
    assert_eq!(s(w("a"), "origin"), "whiteout");
    assert_eq!(text("d"), "upper (dir, merged with lower 0, 1)");
    assert_eq!(text("d/x"), "metadata-only copy over lower 1");
    assert_eq!(s(w("d/x"), "origin"), "metacopy");
    assert_eq!(text("d/y"), "lower 0");
    assert_eq!(text("e"), "lower 1 (dir)");
    assert_eq!(text("big"), "delta over lower 1, 1 of 512 blocks");
    assert_eq!(n(w("big"), "blocks"), 1);
    assert_eq!(n(w("big"), "total_blocks"), 512);
    assert_eq!(text("g"), "whiteout in lower 0 hides lower 1");
    assert_eq!(text("n"), "upper");
    assert_eq!(text("zz"), "does not exist");
    assert_eq!(s(w(""), "origin"), "upper");
    assert!(w("").get("dir").and_then(Value::as_bool).unwrap());

    // The plain-text form prints one line per path.
    let (ok, out, _) = strata(&["whence", &paths[0], &paths[6]]);
    assert!(ok);
    assert_eq!(
        out,
        format!(
            "{}: upper\n{}: delta over lower 1, 1 of 512 blocks\n",
            paths[0], paths[6]
        )
    );

    // stats: counters moved; open handles go back to zero once released.
    let st = {
        let mut last = Value::Null;
        let ok = wait_until(Duration::from_secs(10), || {
            last = stats(&m);
            n(&last, "open_files") == 0
        });
        assert!(ok, "open files never went back to 0: {last}");
        last
    };
    assert_eq!(n(&st, "copyups"), 1, "{st}");
    assert_eq!(n(&st, "bytes_copied"), 4, "{st}");
    assert_eq!(n(&st, "deltas_created"), 1, "{st}");
    assert_eq!(n(&st, "meta_copyups"), 1, "{st}");
    assert!(n(&st, "delta_writes") >= 1, "{st}");
    assert!(n(&st, "delta_blocks_written") >= 1, "{st}");
    assert!(n(&st, "bytes_written") >= 4096 + 5 + 4, "{st}");
    assert!(n(&st, "bytes_read") >= 6 + 4 + 9, "{st}");
    assert!(n(&st, "bytes_read") > n(&before, "bytes_read"));
    assert!(n(&st, "nodes") >= 1);
    let ops = st.get("ops").unwrap();
    assert!(
        n(ops, "read") >= 3 && n(ops, "write") >= 2 && n(ops, "unlink") == 1,
        "{st}"
    );
    assert_eq!(n(&st, "trace_drops"), 0);

    m.unmount();
    // The daemon writes the final line at unmount.
    let lines = m.lines();
    let end = lines.last().unwrap();
    assert_eq!(s(end, "op"), "trace_end", "last line: {end}");
    assert_eq!(n(end, "drops"), 0);
    assert_eq!(n(end, "events") as usize, lines.len() - 1);

    // Reads: lower 1 for a, lower 0 for b before the write, upper after.
    let reads_a = events(&lines, "read", "/a");
    assert!(!reads_a.is_empty());
    assert!(
        reads_a.iter().all(|e| s(e, "branch") == "lower 1"),
        "{reads_a:?}"
    );
    assert_eq!(reads_a.iter().map(|e| n(e, "size")).sum::<u64>(), 6);
    let reads_b = events(&lines, "read", "/b");
    assert_eq!(s(reads_b[0], "branch"), "lower 0", "{reads_b:?}");
    assert_eq!(s(reads_b.last().unwrap(), "branch"), "upper", "{reads_b:?}");
    let opens_b: Vec<&str> = events(&lines, "open", "/b")
        .iter()
        .map(|e| s(e, "branch"))
        .collect();
    assert_eq!(opens_b, ["lower 0", "upper", "upper"]);
    // Writes: upper for the small file, delta for the big one.
    let wb = events(&lines, "write", "/b");
    assert!(
        !wb.is_empty() && wb.iter().all(|e| s(e, "branch") == "upper"),
        "{wb:?}"
    );
    let wbig = events(&lines, "write", "/big");
    assert!(!wbig.is_empty(), "no write to /big traced");
    assert!(wbig.iter().all(|e| s(e, "branch") == "delta"), "{wbig:?}");
    assert_eq!(wbig.iter().map(|e| n(e, "size")).sum::<u64>(), 4096);
    assert_eq!(n(wbig[0], "off"), 8192);
    // Copy-ups: one of each kind, from the right branch.
    let cu: Vec<(&str, &str, &str, &str)> = lines
        .iter()
        .filter(|l| s(l, "op") == "copyup")
        .map(|l| (s(l, "path"), s(l, "kind"), s(l, "from"), s(l, "branch")))
        .collect();
    assert_eq!(
        cu,
        [
            ("/b", "data", "lower 0", "upper"),
            ("/big", "delta", "lower 1", "delta"),
            ("/d/x", "meta", "lower 1", "upper"),
        ]
    );
    let created = events(&lines, "create", "/n");
    assert_eq!(created.len(), 1);
    assert_eq!(s(created[0], "branch"), "upper");
    assert_eq!(n(created[0], "errno"), 0);
    assert_eq!(events(&lines, "unlink", "/a").len(), 1);
    // Every line names an op and carries an errno and a latency.
    for l in &lines[..lines.len() - 1] {
        assert!(!s(l, "op").is_empty(), "{l}");
        assert!(l.get("errno").is_some() && l.get("lat_us").is_some(), "{l}");
    }

    // The summary's totals match the trace.
    let trace = m.trace.to_string_lossy().to_string();
    let (ok, out, err) = strata(&["trace", "summary", "--json", &trace]);
    assert!(ok, "summary failed: {err}");
    let sum: Value = serde_json::from_str(out.trim()).unwrap();
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|l| !matches!(s(l, "op"), "copyup" | "trace_end"))
        .collect();
    assert_eq!(n(&sum, "events") as usize, requests.len());
    assert_eq!(sum.get("complete"), Some(&Value::Bool(true)));
    let groups = sum.get("groups").and_then(Value::as_object).unwrap();
    let mut per_op: std::collections::BTreeMap<&str, u64> = Default::default();
    for l in &requests {
        *per_op.entry(s(l, "op")).or_default() += 1;
    }
    for (op, count) in &per_op {
        assert_eq!(n(&groups[*op], "count"), *count, "op {op}");
    }
    assert_eq!(groups.len(), per_op.len());
    let failed = requests.iter().filter(|l| n(l, "errno") != 0).count() as u64;
    let errs: u64 = sum["total"]["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(errs, failed);
    let data: u64 = requests
        .iter()
        .filter(|l| matches!(s(l, "op"), "read" | "write" | "copy_file_range"))
        .map(|l| n(l, "size"))
        .sum();
    assert_eq!(n(&sum["total"], "bytes"), data);
    assert_eq!(n(&sum["copyups"]["data"], "count"), 1);
    assert_eq!(n(&sum["copyups"]["delta"], "count"), 1);
    assert_eq!(n(&sum["copyups"]["meta"], "count"), 1);
    let dw = sum["delta_writes"].as_array().unwrap();
    assert_eq!(dw.len(), 1);
    assert_eq!(s(&dw[0], "path"), "/big");
    assert_eq!(n(&dw[0], "bytes"), 4096);

    // By layer: the group counts add up to the same total.
    let (ok, out, _) = strata(&["trace", "summary", "--by", "layer", "--json", &trace]);
    assert!(ok);
    let by: Value = serde_json::from_str(out.trim()).unwrap();
    let g = by["groups"].as_object().unwrap();
    assert_eq!(
        g.values().map(|v| n(v, "count")).sum::<u64>() as usize,
        requests.len()
    );
    assert!(g.contains_key("lower 0") && g.contains_key("lower 1") && g.contains_key("delta"));

    // The tables print, from a file and from stdin.
    let (ok, out, _) = strata(&["trace", "summary", &trace]);
    assert!(ok);
    assert!(
        out.contains("hottest paths") && out.contains("copy-ups: 1 data"),
        "{out}"
    );
    let piped = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} trace summary - < {}",
            strata_bin().display(),
            trace
        ))
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert_eq!(String::from_utf8_lossy(&piped.stdout), out);
}

#[test]
fn trace_filters() {
    let mut m = TraceMount::new("filter");
    populate(&m);
    m.mount(&["--trace-ops", "read,open", "--trace-path", "/d/**"]);
    assert_eq!(read_all(&m.p("d/x")), b"x\n");
    assert_eq!(read_all(&m.p("d/y")), b"y\n");
    assert_eq!(read_all(&m.p("b")), b"top\n");
    m.unmount();
    let lines = m.lines();
    let (end, evs) = lines.split_last().unwrap();
    assert_eq!(s(end, "op"), "trace_end");
    assert!(!evs.is_empty());
    for l in evs {
        assert!(matches!(s(l, "op"), "read" | "open"), "{l}");
        assert!(s(l, "path").starts_with("/d/"), "{l}");
    }
    let rx: Vec<&str> = events(evs, "read", "/d/x")
        .iter()
        .map(|e| s(e, "branch"))
        .collect();
    assert!(
        !rx.is_empty() && rx.iter().all(|b| *b == "lower 1"),
        "{rx:?}"
    );
    let ry = events(evs, "read", "/d/y");
    assert!(!ry.is_empty() && ry.iter().all(|e| s(e, "branch") == "lower 0"));
}

#[test]
fn whence_outside_a_mount_fails_clearly() {
    let (ok, _, err) = strata(&["whence", "/"]);
    assert!(!ok);
    assert!(err.contains("not inside a mounted strata union"), "{err}");
}
