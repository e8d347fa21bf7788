//! Writer process for the delta crash test (tests/delta_crash.rs): writes into files of a
//! strata mount until an error (the daemon is killed under it) and logs, to a file outside
//! the mount, every write before it is issued (`W FILE OFF LEN GEN`), when it returned
//! (`D GEN`) and every fsync that returned (`S FILE`). The data of generation GEN at file
//! offset O is `strata_tests::delta::pattern(GEN, O, LEN)`.
//!
//! Usage: strata-delta-writer LOG SEED GEN_BASE HOT FILE...
//! (HOT > 0: write only into the HOT bytes from a third of each file, so a delta stays
//! one; HOT = 0: anywhere.)

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use strata_tests::delta::pattern;
use strata_tests::Rng;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: {} LOG SEED GEN_BASE HOT FILE...", args[0]);
        std::process::exit(2);
    }
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args[1])
        .expect("open log");
    let mut rng = Rng::new(args[2].parse().expect("seed"));
    let mut gen: u64 = args[3].parse().expect("gen base");
    let hot: u64 = args[4].parse().expect("hot");
    let mut files = Vec::new();
    for p in &args[5..] {
        let f = OpenOptions::new().read(true).write(true).open(p);
        match f {
            Ok(f) => {
                let size = f.metadata().expect("fstat").len();
                let (start, span) = if hot > 0 && hot < size {
                    (size / 3 / 4096 * 4096, hot)
                } else {
                    (0, size)
                };
                files.push((f, start, span));
            }
            Err(e) => {
                let _ = writeln!(log, "E open {p}: {e}");
                std::process::exit(1);
            }
        }
    }
    let mut line = |s: String| {
        // One write(2) per line: the log survives the process being killed.
        log.write_all(s.as_bytes()).expect("write log");
    };
    loop {
        let i = rng.below(files.len() as u64) as usize;
        let (f, start, span) = &files[i];
        if rng.chance(12) {
            match f.sync_all() {
                Ok(()) => line(format!("S {i}\n")),
                Err(e) => {
                    line(format!("E fsync: {e}\n"));
                    std::process::exit(1);
                }
            }
            continue;
        }
        let (off, len) = if rng.chance(60) {
            // Whole blocks.
            let n = 1 + rng.below(4);
            let b = rng.below(span / 4096 - n);
            (start + b * 4096, n * 4096)
        } else {
            // Anywhere, crossing block boundaries or inside one block.
            let len = 1 + rng.below(9000);
            (start + rng.below(span - len), len)
        };
        gen += 1;
        let data = pattern(gen, off, len as usize);
        line(format!("W {i} {off} {len} {gen}\n"));
        match f.write_all_at(&data, off) {
            Ok(()) => line(format!("D {gen}\n")),
            Err(e) => {
                line(format!("E write: {e}\n"));
                std::process::exit(1);
            }
        }
    }
}
