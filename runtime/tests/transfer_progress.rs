//! Progress bars of `push` and `save` on a real terminal (a pty from util-linux `script`):
//! the compress phase moves, no duplicate line is left behind, units are decimal (MB) as
//! in the summaries. Real registry on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::registry::Registry;
use common::{install_busybox, strata_bin};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Run `strata --root STORE ARGS` on a 250-column pty; everything it drew.
fn on_terminal(store: &Path, args: &[&str]) -> String {
    let cmd = format!(
        "stty cols 250 rows 50; {} --root {} {}",
        strata_bin().display(),
        store.display(),
        args.join(" ")
    );
    let out = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{cmd}: {text}");
    text
}

/// A store with a one-layer image `big` of 8 MB of random bytes (slow to gzip).
fn big_image(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    install_busybox(&rootfs.join("bin"));
    let mut data = vec![0u8; 8 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(rootfs.join("big.bin"), data).unwrap();
    let tar = dir.join("big.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let store = dir.join("store");
    let out = Command::new(strata_bin())
        .arg("--root")
        .arg(&store)
        .arg("import")
        .arg(&tar)
        .arg("big")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    store
}

/// The frames drawn, one per redraw of a line.
fn frames(text: &str) -> Vec<String> {
    text.split(['\r', '\n'])
        .flat_map(|s| s.split("\x1b[2K"))
        .map(|s| {
            s.replace("\x1b[1A", "")
                .replace("\x1b[1B", "")
                .trim()
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

fn check_bars(what: &str, text: &str) {
    assert!(
        !text.contains("MiB") && !text.contains("KiB"),
        "{what}: binary units where the summaries say MB: {text}"
    );
    // One layer, one line: a duplicate line (a bar's first frame drawn outside the set)
    // makes the set move the cursor up to redraw.
    assert!(
        !text.contains("\x1b[1A"),
        "{what}: more than one line for one layer: {text:?}"
    );
}

#[test]
fn push_and_save_bars_move_once_each_in_decimal_units() {
    let dir = std::env::temp_dir().join(format!("strata-bars-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = big_image(&dir);
    let reg = Registry::start(&dir.join("registry"));
    let target = format!("{}/big:1", reg.host());
    let text = on_terminal(&store, &["push", "big", &target]);
    check_bars("push", &text);
    let compressing: Vec<String> = frames(&text)
        .into_iter()
        .filter(|f| f.contains("compressing"))
        .collect();
    assert!(!compressing.is_empty(), "no compress phase drawn: {text:?}");
    // The compress phase counts the tar read into gzip: some frame shows bytes done.
    assert!(
        compressing
            .iter()
            .any(|f| f.contains('[') && !f.contains(" 0 B/")),
        "the compress phase never moved: {compressing:?}"
    );
    let out = dir.join("big-save.tar");
    let text = on_terminal(&store, &["save", "big", "-o", out.to_str().unwrap()]);
    check_bars("save", &text);
    let _ = std::fs::remove_dir_all(&dir);
}
