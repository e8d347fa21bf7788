//! One file operation as the calling (unprivileged) user, for tests/perms.rs: prints `ok`
//! or `err ERRNO`, then the mode of PATH afterwards (`-` when it is gone).
//!
//! Usage: strata-perm-probe OP PATH [MODE UMASK]
//! OP: write-w, write-rw, write-a, pwritev2, fallocate, cfr (from PATH's sibling `src`),
//! truncate, ftruncate, otrunc, mmap (a shared writable mapping, msync), create, mkdir,
//! mknod (a fifo); the last three with MODE and UMASK (octal).

use nix::errno::Errno;
use std::path::Path;
use strata_tests::sys;

fn run(op: &str, path: &Path, mode: u32) -> sys::R<()> {
    let open = |flags: i32| sys::open(path, flags, 0);
    match op {
        "write-w" => sys::write_all(&open(libc::O_WRONLY)?, b"x").map(drop),
        "write-rw" => sys::write_all(&open(libc::O_RDWR)?, b"x").map(drop),
        "write-a" => sys::write_all(&open(libc::O_WRONLY | libc::O_APPEND)?, b"x").map(drop),
        "pwritev2" => sys::pwritev2(&open(libc::O_RDWR)?, b"y", 1, 0).map(drop),
        "fallocate" => sys::fallocate(&open(libc::O_RDWR)?, 0, 0, 8192),
        "cfr" => {
            let src = sys::open(&path.with_file_name("src"), libc::O_RDONLY, 0)?;
            sys::copy_file_range(&src, &open(libc::O_WRONLY)?, 3).map(drop)
        }
        "truncate" => sys::truncate(path, 2),
        "ftruncate" => sys::ftruncate(&open(libc::O_WRONLY)?, 3),
        "otrunc" => open(libc::O_WRONLY | libc::O_TRUNC).map(drop),
        "mmap" => sys::mmap_write(&open(libc::O_RDWR)?, b"m"),
        "create" => sys::open(path, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, mode).map(drop),
        "mkdir" => sys::mkdir(path, mode),
        "mknod" => sys::mknod(path, libc::S_IFIFO | mode, 0, 0),
        _ => Err(Errno::EINVAL),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: {} OP PATH [MODE UMASK]", args[0]);
        std::process::exit(2);
    }
    let path = Path::new(&args[2]);
    let oct = |i: usize| {
        args.get(i)
            .map_or(0, |s| u32::from_str_radix(s, 8).expect("octal"))
    };
    sys::umask(oct(4));
    let r = run(&args[1], path, oct(3));
    let mode = sys::lstat(path).map_or("-".to_string(), |st| format!("{:o}", st.st_mode & 0o7777));
    match r {
        Ok(()) => println!("ok {mode}"),
        Err(e) => println!("err {} {mode}", e as i32),
    }
}
