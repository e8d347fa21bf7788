//! `strata trace` regressions of issue 16: a directory copy-up is labelled with the
//! directory's path (not the new file's that caused it), and `trace summary` percentiles
//! follow the nearest-rank rule docs/tracing.md states.

use serde_json::Value;
use std::process::Command;
use strata_tests::mount::{pids_with_arg, reap_daemons, unmount_path};
use strata_tests::{is_mounted, run_strata, strata_bin, TempDir};

#[test]
fn a_directory_copyup_is_labelled_with_the_directory() {
    let dir = TempDir::new("dircopyup");
    for d in ["lower/d", "upper", "work", "mnt"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("lower/d/old"), "x").unwrap();
    let trace = dir.join("trace.jsonl");
    let mnt = dir.join("mnt");
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        dir.join("lower").display(),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    let (t, m) = (trace.to_string_lossy(), mnt.to_string_lossy());
    let args = ["mount", "--trace", &t, "-o", &opts, &m];
    let (ok, text) = run_strata(&args, &dir.join("strata.log"));
    assert!(ok && is_mounted(&mnt), "strata {args:?} failed:\n{text}");
    let daemons = pids_with_arg(&m);
    // A new file in a lower-only directory: the directory is copied up.
    std::fs::write(mnt.join("d/new"), "y").unwrap();
    unmount_path(&mnt).unwrap();
    reap_daemons(&daemons);
    let lines: Vec<Value> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dirs: Vec<&Value> = lines
        .iter()
        .filter(|l| l["op"] == "copyup" && l["kind"] == "dir")
        .collect();
    assert_eq!(dirs.len(), 1, "{lines:?}");
    assert_eq!(dirs[0]["path"], "/d", "{:?}", dirs[0]);
}

#[test]
fn summary_percentiles_are_nearest_rank() {
    let dir = TempDir::new("nearestrank");
    let trace = dir.join("t.jsonl");
    // 40 lookups taking 1..=40 µs: nearest rank gives P50 = the 20th value, P99 = the
    // 40th (ceil(0.99 * 40) = 40).
    let text: String = (1..=40)
        .map(|i| {
            format!("{{\"t_us\":{i},\"op\":\"lookup\",\"path\":\"/a\",\"branch\":\"upper\",\"errno\":0,\"lat_us\":{i}}}\n")
        })
        .collect();
    std::fs::write(&trace, text).unwrap();
    let out = Command::new(strata_bin())
        .args(["trace", "summary", "--json"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = &v["total"];
    assert_eq!(total["p50_us"], 20, "{v}");
    assert_eq!(total["p99_us"], 40, "{v}");
    assert_eq!(total["max_us"], 40, "{v}");
}
