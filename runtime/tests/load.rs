//! Load (issue 8): 20 containers on one image, each on its own FUSE daemon (`--driver fuse`),
//! writing, renaming and deleting in parallel for `STRATA_LOAD_SECS` seconds (default 120;
//! soak with e.g. `STRATA_LOAD_SECS=600`). Rootful. Everything runs under an fd limit of 1024.
//!
//! Every container runs `/load.sh` (below): three workers on disjoint names plus a reader, so
//! every check inside is exact and any corruption, unexpected errno or lost write prints
//! `LOADFAIL`. The reader walks 1,640 directories, more than the daemon's dirfd cache holds.
//! From the host, every 5 s: each daemon's RSS and open fds, `strata fs stats` (nodes, errnos:
//! only ENOENT, ENODATA, EEXIST allowed), and each worker's progress line in the container
//! log. A worker that stops advancing for two minutes is reported as a deadlock with the
//! kernel stacks of the daemon's threads and the container's processes. At the end:
//! `strata whence` on the big files (deltas, one compacted), clean stops with status 0,
//! `strata diff`, a verification pass after a remount (a fresh daemon), `strata rm`, and no
//! mount, daemon or cgroup left.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{install_busybox, strata_bin};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Containers (STRATA_LOAD_CONTAINERS overrides it, to debug the workload on one).
const CONTAINERS: usize = 20;
/// Writers per container (each owns 4 lower directories and a big lower file); one reader more.
const WORKERS: usize = 3;
/// Files per lower directory.
const FILES: usize = 40;
/// /deep holds DEEP x DEEP directories (a file in each): more than the daemon's dirfd cache
/// holds under an fd limit of 1024, so the reader's walks make it evict.
const DEEP: usize = 40;
/// The containers (and so their daemons) run under this fd limit, soft and hard: a common
/// default, and low enough that a cache sized past it would show (EMFILE).
const NOFILE: u64 = 1024;
/// Size of each worker's big lower file: over the 1 MiB delta threshold, so its small writes
/// become block-level deltas.
const BIG: usize = 2 << 20;
/// The only errors the daemons may answer: names that are not there (the reader races the
/// workers; lookups of new names), xattrs that are not set, names that already exist.
const EXPECTED_ERRNOS: [&str; 3] = ["ENOENT", "ENODATA", "EEXIST"];
const SAMPLE: Duration = Duration::from_secs(5);
/// A worker whose progress counter has not moved for this long is stuck: every iteration is
/// a few dozen short commands, so even a starved one on 2 shared cores advances within it.
const STALL: Duration = Duration::from_secs(120);
/// Slack on the fd count over its warm-up maximum: the container's own open files come and
/// go (four shells, a command each, a few fds each).
const FD_SLACK: usize = 32;
/// Hard cap on a daemon's RSS. What it keeps is bounded: the dirfd LRU (4096 O_PATH fds and
/// their paths, < 1 MiB), the node table (only inodes the kernel still references: here the
/// ~600 live files of a container), fuser's per-thread request buffers (a few MiB), the code
/// of a debug build (~15 MiB resident).
const RSS_CAP_KIB: u64 = 64 << 10;
/// Growth allowed after the warm-up: malloc arenas of the request threads settle late.
const RSS_SLACK_KIB: u64 = 16 << 10;

/// 64 bytes: the unit of the big files (all lines alike, so any 64-byte aligned chunk that was
/// never written must read as this).
fn line() -> String {
    format!(
        "{:<63}\n",
        "strata load test: lower data no write may touch"
    )
}

const FILL: &str = "filler so that a lower file is more than one short line of text, \
                    and a copy-up copies something: 0123456789abcdefghijklmnopqrstuvwxyz";

fn lower_file(dir: usize, f: usize) -> String {
    format!("lower d{dir}/f{f:02}\n{FILL}\n")
}

/// The workload. `sh /load.sh SECS WORKERS`; run again in a container that already ran it,
/// it only verifies what the first run left (after a remount: a fresh daemon).
const SCRIPT: &str = r#"
SECS=$1
NW=$2
NF=@NF@
FILL='@FILL@'
END=$(( $(date +%s) + 2 * SECS + 300 ))
STOP=0
w=main
i=start

fail() { echo "LOADFAIL w=$w i=$i: $*"; exit 1; }
chk() { "$@" || fail "$* failed"; }
two() { printf %02d "$1"; }
gen_lower() { printf 'lower d%s/f%s\n%s\n' "$1" "$2" "$FILL"; }
gen_sub() { printf 'sub d%s/s%s\n' "$1" "$2"; }
gen_u() { echo "w=$w i=$1 k=$2"; seq "$1" $(( $1 + 40 )); }
is_lower() {
  gen_lower "$2" "$3" | cmp -s - "$1" || fail "$1 does not hold lower d$2/f$3: $(head -n 1 "$1" 2>&1)"
}
chunk() { dd if="$1" bs=64 skip="$2" count=1 2>/dev/null; }
chunk_is() {
  chunk "$1" "$2" | cmp -s - "$3" || fail "$1: the 64 bytes at $(( $2 * 64 )) are not $3's: '$(chunk "$1" "$2" | head -c 63)'"
}
# Entries of lower directory $1: the files, sub/, and the hard-link pair in a worker's first.
entries() {
  local n=$(( NF + 1 ))
  [ "$1" = $(( 4 * w )) ] && n=$(( n + 2 ))
  echo $n
}
make_dir() {
  local d=$1 j=0
  chk mkdir -p /data/d$d/sub
  while [ $j -lt $NF ]; do
    gen_lower $d $(two $j) > /data/d$d/f$(two $j) || fail "cannot recreate /data/d$d/f$(two $j)"
    j=$(( j + 1 ))
  done
  j=0
  while [ $j -lt 5 ]; do
    gen_sub $d $j > /data/d$d/sub/s$j || fail "cannot recreate /data/d$d/sub/s$j"
    j=$(( j + 1 ))
  done
}
# Upper slot $1 holds exactly what gen_u wrote for the iteration named in its first line.
check_u() {
  local f=$W/u$1 hdr oi
  [ -e "$f" ] || return 0
  read -r hdr < "$f" || fail "$f: cannot read"
  oi=${hdr#*i=}
  oi=${oi%% *}
  gen_u "$oi" "$1" | cmp -s - "$f" || fail "$f: corrupt (first line '$hdr')"
}
# Append-only slot $1: iteration numbers k, k+8, k+16, ...
check_app() {
  local f=$W/app$1
  [ -e "$f" ] || return 0
  awk -v k=$1 'NR > 1 && $1 != p + 8 { exit 1 } { p = $1 } END { exit (p % 8 != k) }' "$f" ||
    fail "$f: lines out of sequence: $(tr '\n' ' ' < "$f")"
}
check_big() {
  local B=/data/big$w pj ps
  [ "$(stat -c %s $B)" = @BIGSIZE@ ] || fail "$B: size $(stat -c %s $B 2>&1), want @BIGSIZE@"
  if [ -e $W/bigj ]; then
    read -r pj < $W/bigj || fail "cannot read $W/bigj"
    chunk_is $B $(( pj * 64 + 2 )) $W/bigm
  fi
  if [ -e $W/bulks ]; then
    read -r ps < $W/bulks || fail "cannot read $W/bulks"
    dd if=$B bs=4096 skip=$ps count=64 2>/dev/null | cmp -s - $W/bulk ||
      fail "$B: the 256 KiB written at block $ps are not there"
  fi
}
# Everything worker $w owns, at rest.
check_worker() {
  local k=0 a
  W=/work/w$w
  sha256sum -c -s /data/MANIFEST.w$w ||
    fail "lower files of worker $w changed: $(sha256sum -c /data/MANIFEST.w$w 2>&1 | grep -v ': OK$' | head -n 3 | tr '\n' ' ')"
  while [ $k -lt 8 ]; do
    check_u $k
    check_app $k
    k=$(( k + 1 ))
  done
  check_big
  for a in $(seq $(( 4 * w )) $(( 4 * w + 3 ))); do
    [ -e /data/d$a.mv ] && fail "/data/d$a.mv left over"
    [ "$(ls -A /data/d$a | wc -l)" = "$(entries $a)" ] || fail "/data/d$a lists: $(ls -A /data/d$a | tr '\n' ' ')"
  done
}

step() {
  local k=$(( i % 8 )) a=$(( 4 * w + i % 4 )) a2=$(( 4 * w + (i + 1) % 4 )) b c j q x n
  b=$(two $(( (i * 7) % NF )))
  c=$(two $(( (i * 11 + 5) % NF )))
  # Upper files: the slot's previous content, new content, appends, truncation.
  check_u $k
  gen_u $i $k > $W/u$k || fail "cannot write $W/u$k"
  gen_u $i $k | cmp -s - $W/u$k || fail "$W/u$k: not what was just written"
  check_app $k
  if [ -e $W/app$k ] && [ "$(wc -l < $W/app$k)" -ge 16 ]; then chk rm $W/app$k; fi
  echo $i >> $W/app$k || fail "cannot append to $W/app$k"
  check_app $k
  gen_u $i $k > $W/t$k || fail "cannot write $W/t$k"
  chk truncate -s 20 $W/t$k
  gen_u $i $k | head -c 20 | cmp -s - $W/t$k || fail "$W/t$k: wrong after truncating to 20 bytes"
  # Lower files: renamed within and across directories (copy-up), and back.
  chk mv /data/d$a/f$b /data/d$a/r$b
  [ -e /data/d$a/f$b ] && fail "/data/d$a/f$b still there after its rename"
  is_lower /data/d$a/r$b $a $b
  chk mv /data/d$a/r$b /data/d$a2/x$a$b
  is_lower /data/d$a2/x$a$b $a $b
  chk mv /data/d$a2/x$a$b /data/d$a/f$b
  is_lower /data/d$a/f$b $a $b
  # A lower (or earlier recreated) file deleted (whiteout) and recreated.
  chk rm /data/d$a/f$c
  [ -e /data/d$a/f$c ] && fail "/data/d$a/f$c still there after rm"
  ls /data/d$a | grep -qx f$c && fail "/data/d$a/f$c still listed after rm"
  gen_lower $a $c > /data/d$a/f$c || fail "cannot recreate /data/d$a/f$c"
  is_lower /data/d$a/f$c $a $c
  # Hard links and symlinks to lower files.
  chk ln /data/d$a/f$b $W/hl$k
  is_lower $W/hl$k $a $b
  n=$(stat -c %h /data/d$a/f$b)
  [ "$n" = 2 ] || fail "/data/d$a/f$b has $n links, want 2"
  chk rm $W/hl$k
  n=$(stat -c %h /data/d$a/f$b)
  [ "$n" = 1 ] || fail "/data/d$a/f$b has $n links after the rm of the other, want 1"
  chk ln -s f$b /data/d$a/sl$k
  [ "$(readlink /data/d$a/sl$k)" = f$b ] || fail "/data/d$a/sl$k reads '$(readlink /data/d$a/sl$k)'"
  is_lower /data/d$a/sl$k $a $b
  chk rm /data/d$a/sl$k
  chk ln -sf /data/d$a/f$c $W/s$k
  is_lower $W/s$k $a $c
  # Upper hard links.
  gen_u $i $k > $W/l$k || fail "cannot write $W/l$k"
  chk ln $W/l$k $W/l$k.h
  echo more >> $W/l$k.h || fail "cannot append to $W/l$k.h"
  chk cmp -s $W/l$k $W/l$k.h
  chk rm $W/l$k.h
  n=$(stat -c %h $W/l$k)
  [ "$n" = 1 ] || fail "$W/l$k has $n links after the rm of the other, want 1"
  # A lower hard-link pair: a write through one name shows through the other.
  if [ $(( i % 4 )) = 1 ]; then
    x=/data/d$(( 4 * w ))
    echo "w=$w i=$i" > $x/link1 || fail "cannot write $x/link1"
    echo "w=$w i=$i" | cmp -s - $x/link2 || fail "$x/link2 does not show the write to its hard link link1: $(cat $x/link2)"
    printf 'link w%s\n' $w > $x/link2 || fail "cannot write $x/link2"
    printf 'link w%s\n' $w | cmp -s - $x/link1 || fail "$x/link1 does not show the write to its hard link link2"
  fi
  # Directories: a lower one renamed (redirect) and back, mkdir/rmdir in it, an upper tree.
  chk mv /data/d$a /data/d$a.mv
  [ -e /data/d$a ] && fail "/data/d$a still there after its rename"
  is_lower /data/d$a.mv/f$b $a $b
  gen_sub $a 2 | cmp -s - /data/d$a.mv/sub/s2 || fail "/data/d$a.mv/sub/s2 wrong after the rename"
  n=$(ls -A /data/d$a.mv | wc -l)
  [ "$n" = "$(entries $a)" ] || fail "/data/d$a.mv lists $n entries, want $(entries $a): $(ls -A /data/d$a.mv | tr '\n' ' ')"
  chk mv /data/d$a.mv /data/d$a
  chk mkdir /data/d$a/nd$k
  chk touch /data/d$a/nd$k/x
  chk rm /data/d$a/nd$k/x
  chk rmdir /data/d$a/nd$k
  chk mkdir -p $W/t$k.d/x/y
  gen_u $i $k > $W/t$k.d/x/y/f || fail "cannot write $W/t$k.d/x/y/f"
  chk mv $W/t$k.d $W/tt$k.d
  gen_u $i $k | cmp -s - $W/tt$k.d/x/y/f || fail "$W/tt$k.d/x/y/f wrong after its directory's rename"
  chk rm -r $W/tt$k.d
  # A whole lower directory deleted (whiteouts, then an opaque directory) and recreated.
  if [ $(( i % 16 )) = 15 ]; then
    x=$(( 4 * w + 3 ))
    chk rm -r /data/d$x
    [ -e /data/d$x ] && fail "/data/d$x still there after rm -r"
    ls /data | grep -qx d$x && fail "/data/d$x still listed after rm -r"
    make_dir $x
  fi
  # Small writes into the big lower file (a delta): the last one is kept, this one reads
  # back, bytes never written keep their lower data.
  check_big
  j=$(( (i * 37) % 200 ))
  printf '%-63s\n' "w=$w i=$i j=$j" > $W/bigm.new || fail "cannot write $W/bigm.new"
  dd if=$W/bigm.new of=/data/big$w bs=64 seek=$(( j * 64 + 2 )) count=1 conv=notrunc 2>/dev/null ||
    fail "dd into /data/big$w failed"
  chunk_is /data/big$w $(( j * 64 + 2 )) $W/bigm.new
  chk mv $W/bigm.new $W/bigm
  echo $j > $W/bigj || fail "cannot write $W/bigj"
  q=$(( (i * 13) % 200 ))
  chunk_is /data/big$w $(( q * 64 )) /data/LINE
  # Worker 0 also writes 256 KiB runs past block 200: over half the file soon, so its delta
  # is compacted into a whole file early; the others' deltas stay deltas.
  if [ $w = 0 ]; then
    x=$(( (i % 5) * 62 + 200 ))
    yes "w=$w i=$i bulk at block $x" | head -c 262144 > $W/bulk.new || fail "cannot write $W/bulk.new"
    dd if=$W/bulk.new of=/data/big$w bs=4096 seek=$x count=64 conv=notrunc 2>/dev/null ||
      fail "dd of 256 KiB into /data/big$w failed"
    dd if=/data/big$w bs=4096 skip=$x count=64 2>/dev/null | cmp -s - $W/bulk.new ||
      fail "/data/big$w: the 256 KiB just written at block $x do not read back"
    chk mv $W/bulk.new $W/bulk
    echo $x > $W/bulks || fail "cannot write $W/bulks"
  fi
  if [ $(( i % 4 )) = 2 ]; then
    chk mv /data/big$w /data/big$w.r
    chunk_is /data/big$w.r $(( j * 64 + 2 )) $W/bigm
    chk mv /data/big$w.r /data/big$w
  fi
  if [ $(( i % 8 )) = 3 ]; then
    chk ln /data/big$w $W/bighl
    chunk_is $W/bighl $(( j * 64 + 2 )) $W/bigm
    chk rm $W/bighl
  fi
}

worker() {
  W=/work/w$w
  chk mkdir -p $W
  i=0
  while [ $STOP = 0 ] && [ $(date +%s) -lt $END ]; do
    step
    [ $(( i % 8 )) = 7 ] && check_worker
    echo "P $w $i"
    i=$(( i + 1 ))
  done
  i=final
  check_worker
  echo "DONE $w"
}

# Lists and reads everything while the workers change it: names vanish (ENOENT), nothing
# else may fail.
reader() {
  local sum x
  w=r
  i=0
  sum=$(sha256sum < /bin/busybox)
  while [ $STOP = 0 ] && [ $(date +%s) -lt $END ]; do
    ls -lR /data /work /etc > /dev/null 2> /tmp/reader.err
    if grep -v 'No such file or directory' /tmp/reader.err | grep -q .; then
      fail "ls -lR: $(grep -v 'No such file or directory' /tmp/reader.err | head -n 3 | tr '\n' ' ')"
    fi
    [ "$(sha256sum < /bin/busybox)" = "$sum" ] || fail "/bin/busybox reads differently"
    for x in /data/big*; do tail -c 8192 $x > /dev/null 2>&1; done
    # More directories than the daemon's dirfd cache holds under the fd limit.
    ls -R /deep > /tmp/reader.out 2> /tmp/reader.err || fail "ls -R /deep: $(head -n 3 /tmp/reader.err | tr '\n' ' ')"
    [ "$(grep -cx f /tmp/reader.out)" = $(( @DEEP@ * @DEEP@ )) ] ||
      fail "ls -R /deep lists $(grep -cx f /tmp/reader.out) files, want $(( @DEEP@ * @DEEP@ ))"
    x=/deep/a$(( i % @DEEP@ ))/b$(( (i * 7) % @DEEP@ ))
    [ "$(cat $x/f)" = "deep $x" ] || fail "$x/f reads '$(cat $x/f)'"
    echo "P r $i"
    i=$(( i + 1 ))
  done
  echo "DONE r"
}

if [ "$(cat /work/ran 2>/dev/null)" = yes ]; then
  w=0
  while [ $w -lt $NW ]; do
    i=remount
    check_worker
    w=$(( w + 1 ))
  done
  echo VERIFYDONE
  exit 0
fi
mkdir -p /work && echo yes > /work/ran || fail "cannot write /work/ran"
pids=
trap 'STOP=1; kill -TERM $pids 2>/dev/null' TERM
w=0
while [ $w -lt $NW ]; do
  ( trap 'STOP=1' TERM; worker ) &
  pids="$pids $!"
  w=$(( w + 1 ))
done
( trap 'STOP=1' TERM; reader ) &
pids="$pids $!"
w=main
rc=0
for p in $pids; do
  # A trapped TERM interrupts wait: wait again while the worker lives.
  while :; do
    wait $p
    r=$?
    [ $r -gt 128 ] && kill -0 $p 2>/dev/null && continue
    break
  done
  [ $r = 0 ] || rc=1
done
[ $rc = 0 ] || fail "a worker failed (LOADFAIL above)"
i=final
w=0
while [ $w -lt $NW ]; do
  check_worker
  w=$(( w + 1 ))
done
echo LOADDONE
"#;

fn script() -> String {
    SCRIPT
        .replace("@NF@", &FILES.to_string())
        .replace("@FILL@", FILL)
        .replace("@BIGSIZE@", &BIG.to_string())
        .replace("@DEEP@", &DEEP.to_string())
}

fn sha256_hex(data: &[u8]) -> String {
    let mut s = String::new();
    for b in Sha256::digest(data) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The image's root: busybox, a lower tree per worker (4 directories of FILES files and a
/// sub/ each, a hard-link pair, a big file, a manifest of it all) and the workload.
fn make_rootfs(rootfs: &Path) {
    for d in ["bin", "etc", "tmp", "root", "work", "data"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    install_busybox(&rootfs.join("bin"));
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(rootfs.join("load.sh"), script()).unwrap();
    let data = rootfs.join("data");
    std::fs::write(data.join("LINE"), line()).unwrap();
    let big = line().repeat(BIG / 64);
    for w in 0..WORKERS {
        let mut manifest = String::new();
        let mut add = |rel: String, body: &[u8]| {
            let p = data.join(&rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, body).unwrap();
            let _ = writeln!(manifest, "{}  /data/{rel}", sha256_hex(body));
        };
        for d in 4 * w..4 * w + 4 {
            for f in 0..FILES {
                add(format!("d{d}/f{f:02}"), lower_file(d, f).as_bytes());
            }
            for s in 0..5 {
                add(
                    format!("d{d}/sub/s{s}"),
                    format!("sub d{d}/s{s}\n").as_bytes(),
                );
            }
        }
        add(
            format!("d{}/link1", 4 * w),
            format!("link w{w}\n").as_bytes(),
        );
        let manifest_with_link = {
            let d = data.join(format!("d{}", 4 * w));
            std::fs::hard_link(d.join("link1"), d.join("link2")).unwrap();
            let body = format!("link w{w}\n");
            format!(
                "{manifest}{}  /data/d{}/link2\n",
                sha256_hex(body.as_bytes()),
                4 * w
            )
        };
        std::fs::write(data.join(format!("big{w}")), &big).unwrap();
        std::fs::write(data.join(format!("MANIFEST.w{w}")), manifest_with_link).unwrap();
    }
    for a in 0..DEEP {
        for b in 0..DEEP {
            let d = rootfs.join(format!("deep/a{a}/b{b}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("f"), format!("deep /deep/a{a}/b{b}\n")).unwrap();
        }
    }
    let mut perm = std::fs::metadata(rootfs.join("tmp")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o1777);
    std::fs::set_permissions(rootfs.join("tmp"), perm).unwrap();
}

/// One measurement of a container's daemon.
#[derive(Debug, Clone, Default)]
struct Sample {
    t: u64,
    rss_kib: u64,
    /// Peak RSS so far (VmHWM).
    hwm_kib: u64,
    fds: usize,
    threads: u64,
    nodes: Option<u64>,
}

/// One container of the load and what was measured of it.
struct Ctr {
    name: String,
    id: String,
    daemon: i32,
    samples: Vec<Sample>,
    /// Worker ("0", "1", "2", "r") → (last iteration seen, when it last moved).
    progress: BTreeMap<String, (u64, Instant)>,
    stats: Option<serde_json::Value>,
}

/// A private store with the load image, and the containers started on it.
struct Load {
    dir: PathBuf,
    boxes: Vec<Ctr>,
}

impl Load {
    fn new() -> Load {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the load test runs containers and needs root"
        );
        let dir = std::env::temp_dir().join(format!("strata-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        make_rootfs(&rootfs);
        let tar = dir.join("load.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success(), "tar of the load image failed");
        let l = Load { dir, boxes: vec![] };
        l.ok(&["import", tar.to_str().unwrap(), "load"], 120);
        l
    }

    fn root(&self) -> PathBuf {
        self.dir.join("store")
    }

    fn cdir(&self, id: &str) -> PathBuf {
        self.root().join("containers").join(id)
    }

    /// strata under the fd limit NOFILE (inherited by supervisors, daemons and containers).
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(strata_bin());
        c.arg("--root").arg(self.root()).args(args);
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, || {
                nix::sys::resource::setrlimit(
                    nix::sys::resource::Resource::RLIMIT_NOFILE,
                    NOFILE,
                    NOFILE,
                )
                .map_err(std::io::Error::from)
            });
        }
        c
    }

    /// Run strata with a time limit: a hung command (a deadlocked daemon under it) fails
    /// the test with the daemons' stacks instead of hanging it.
    fn strata(&self, args: &[&str], limit_secs: u64) -> Output {
        timed(self.cmd(args), Duration::from_secs(limit_secs)).unwrap_or_else(|| {
            self.dump_all();
            panic!(
                "strata {args:?} did not finish within {limit_secs} s: stuck on a daemon? \
                 (its threads' kernel stacks are printed above)"
            )
        })
    }

    fn ok(&self, args: &[&str], limit_secs: u64) -> String {
        let out = self.strata(args, limit_secs);
        assert!(
            out.status.success(),
            "strata {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log(&self, b: &Ctr) -> String {
        std::fs::read_to_string(self.cdir(&b.id).join("container.log")).unwrap_or_default()
    }

    fn daemon_log(&self, b: &Ctr) -> String {
        std::fs::read_to_string(self.cdir(&b.id).join("work/strata.log")).unwrap_or_default()
    }

    /// Everything that tells where a container is stuck: its daemon's threads and its own
    /// processes, each with state, wait channel and kernel stack.
    fn dump(&self, b: &Ctr) -> String {
        let mut s = format!("==== {} ({}), daemon pid {} ====\n", b.name, b.id, b.daemon);
        s += &describe_threads(b.daemon);
        for pid in pids_in_cgroup(&b.id) {
            s += &describe_threads(pid);
        }
        let log = self.log(b);
        let tail: Vec<&str> = log.lines().rev().take(8).collect();
        let _ = writeln!(s, "-- container log (last lines, newest first):");
        for l in tail {
            let _ = writeln!(s, "   {l}");
        }
        let dlog = self.daemon_log(b);
        let tail: Vec<&str> = dlog.lines().rev().take(8).collect();
        let _ = writeln!(
            s,
            "-- daemon log work/strata.log (last lines, newest first):"
        );
        for l in tail {
            let _ = writeln!(s, "   {l}");
        }
        s
    }

    fn dump_all(&self) {
        for b in &self.boxes {
            eprintln!("{}", self.dump(b));
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // Kill what is still running, with time limits: a daemon may be stuck.
        let names: Vec<String> = self.boxes.iter().map(|b| b.name.clone()).collect();
        if !names.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(names.iter().map(String::as_str));
            let _ = timed(self.cmd(&args), Duration::from_secs(120));
        }
        for pid in pids_mentioning(&self.root()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for m in mounts_under(&self.root()) {
            let _ = nix::mount::umount2(Path::new(&m), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run `cmd` to completion within `limit` (None: killed when it took longer).
fn timed(mut cmd: Command, limit: Duration) -> Option<Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => Some(r.unwrap()),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            None
        }
    }
}

fn proc_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The FUSE daemon serving `merged`: `strata -o OPTIONS MERGED`, forked by the driver.
fn daemon_of(merged: &Path) -> Option<i32> {
    let want = merged.to_string_lossy();
    proc_pids().into_iter().find(|&pid| {
        let a = cmdline(pid);
        a.len() >= 3 && a.iter().any(|x| x == "-o") && a.last().is_some_and(|m| *m == *want)
    })
}

/// Processes whose command line names a path under `root` (daemons and supervisors of this
/// test's store).
fn pids_mentioning(root: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let r = root.to_string_lossy();
    proc_pids()
        .into_iter()
        .filter(|&p| p != me && cmdline(p).iter().any(|a| a.contains(&*r)))
        .collect()
}

fn mounts_under(root: &Path) -> Vec<String> {
    let r = root.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&r))
        .map(str::to_string)
        .collect()
}

fn pids_in_cgroup(id: &str) -> Vec<i32> {
    proc_pids()
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cgroup"))
                .is_ok_and(|c| c.contains(&format!("strata/{id}")))
        })
        .collect()
}

fn describe_threads(pid: i32) -> String {
    let mut s = format!("-- pid {pid}: {}\n", cmdline(pid).join(" "));
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return s + "   (gone)\n";
    };
    for t in tasks.flatten() {
        let d = t.path();
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
        let state = read("status")
            .lines()
            .find(|l| l.starts_with("State:"))
            .unwrap_or_default()
            .to_string();
        let _ = writeln!(
            s,
            "   task {} {} {} wchan={}",
            t.file_name().to_string_lossy(),
            read("comm").trim(),
            state,
            read("wchan")
        );
        for l in read("stack").lines() {
            let _ = writeln!(s, "      {l}");
        }
    }
    s
}

fn status_field(pid: i32, key: &str) -> Option<u64> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = st.lines().find(|l| l.starts_with(key))?;
    l[key.len()..].split_whitespace().next()?.parse().ok()
}

fn fd_count(pid: i32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    ["memory", "pids", "cpu", "devices"]
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c).join("strata").join(id))
        .chain([Path::new("/sys/fs/cgroup/strata").join(id)])
        .collect()
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

#[test]
fn twenty_containers_write_rename_and_delete_for_minutes() {
    let secs: u64 = std::env::var("STRATA_LOAD_SECS")
        .ok()
        .map(|s| s.parse().expect("STRATA_LOAD_SECS: a number of seconds"))
        .unwrap_or(120);
    // The fd and RSS baselines are what the daemons reach once every path of the workload
    // was visited (each slot of a worker is used every 8 iterations).
    let warm = (secs / 4).clamp(20, 60);
    let containers: usize = std::env::var("STRATA_LOAD_CONTAINERS")
        .ok()
        .map(|s| s.parse().expect("STRATA_LOAD_CONTAINERS: a number"))
        .unwrap_or(CONTAINERS);
    let mut l = Load::new();
    let secs_s = secs.to_string();
    let workers_s = WORKERS.to_string();
    for n in 0..containers {
        let name = format!("load{n}");
        let id = l.ok(
            &[
                "run", "-d", "--name", &name, "--driver", "fuse", "load", "sh", "/load.sh",
                &secs_s, &workers_s,
            ],
            120,
        );
        let id = id.trim().to_string();
        let merged = l.cdir(&id).join("merged");
        let daemon = daemon_of(&merged)
            .unwrap_or_else(|| panic!("no FUSE daemon serves {} for {name}", merged.display()));
        l.boxes.push(Ctr {
            name,
            id,
            daemon,
            samples: vec![],
            progress: BTreeMap::new(),
            stats: None,
        });
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut next = start;
    loop {
        next += SAMPLE;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        let t = now.duration_since(start).as_secs();
        for i in 0..l.boxes.len() {
            let log = l.log(&l.boxes[i]);
            let failed = progress(&mut l.boxes[i], &log, now);
            let b = &l.boxes[i];
            let alive = std::fs::metadata(format!("/proc/{}", b.daemon)).is_ok();
            if let Some(f) = failed {
                panic!(
                    "{} reported a failure after {t} s: {f}\n{}",
                    b.name,
                    l.dump(b)
                );
            }
            if !alive {
                panic!(
                    "the FUSE daemon of {} (pid {}) is gone after {t} s: it crashed? its log \
                     (work/strata.log):\n{}",
                    b.name,
                    b.daemon,
                    l.daemon_log(b)
                );
            }
            let mut sample = Sample {
                t,
                rss_kib: status_field(b.daemon, "VmRSS:").unwrap_or(0),
                hwm_kib: status_field(b.daemon, "VmHWM:").unwrap_or(0),
                fds: fd_count(b.daemon).unwrap_or(0),
                threads: status_field(b.daemon, "Threads:").unwrap_or(0),
                nodes: None,
            };
            let merged = l.cdir(&b.id).join("merged");
            let stats = timed(
                l.cmd(&["fs", "stats", "--json", merged.to_str().unwrap()]),
                Duration::from_secs(60),
            );
            let Some(stats) = stats else {
                l.dump_all();
                panic!(
                    "strata fs stats of {} got no answer in 60 s: its daemon's control thread is \
                     stuck (stacks above)",
                    b.name
                );
            };
            let stuck: Vec<String> = b
                .progress
                .iter()
                .filter(|(_, (_, at))| now.duration_since(*at) > STALL)
                .map(|(w, (i, _))| format!("worker {w} at iteration {i}"))
                .collect();
            if !stuck.is_empty() || (b.progress.len() < WORKERS + 1 && t > STALL.as_secs()) {
                l.dump_all();
                panic!(
                    "deadlock? {}: {} made no progress for {} s ({} of {} workers reported at \
                     all); the stacks of every daemon and container are printed above",
                    b.name,
                    stuck.join(", "),
                    STALL.as_secs(),
                    b.progress.len(),
                    WORKERS + 1
                );
            }
            let b = &mut l.boxes[i];
            if stats.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
                sample.nodes = v["nodes"].as_u64();
                let bad: Vec<String> = v["errnos"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(e, _)| !EXPECTED_ERRNOS.contains(&e.as_str()))
                    .map(|(e, n)| format!("{e} x{n}"))
                    .collect();
                if !bad.is_empty() {
                    let b = &l.boxes[i];
                    panic!(
                        "the daemon of {} answered {} after {t} s (expected only {:?}): run the \
                         workload with --log-level debug to see which requests\n{}",
                        b.name,
                        bad.join(", "),
                        EXPECTED_ERRNOS,
                        l.dump(b)
                    );
                }
                b.stats = Some(v);
            } else {
                eprintln!(
                    "warning: strata fs stats of {} failed: {}",
                    b.name,
                    String::from_utf8_lossy(&stats.stderr)
                );
            }
            b.samples.push(sample);
        }
        if Instant::now() >= end {
            break;
        }
    }

    // The big files really went through deltas: worker 0's was compacted into a whole upper
    // file by its 256 KiB runs, the others' are still deltas.
    let mut whence = Vec::new();
    for b in &l.boxes {
        let mut seen = Vec::new();
        for w in 0..WORKERS {
            let p = l.cdir(&b.id).join(format!("merged/data/big{w}"));
            let want = if w == 0 { "upper" } else { "delta" };
            let iters = b.progress.get(&w.to_string()).map_or(0, |p| p.0);
            // The worker renames it away and back now and then (a whiteout or nothing in
            // between): ask again, for a minute, as on 2 shared cores a worker may sit
            // between the two renames for seconds.
            let mut v = serde_json::Value::Null;
            for _ in 0..300 {
                v = serde_json::from_str(&l.ok(&["whence", "--json", p.to_str().unwrap()], 60))
                    .unwrap();
                if v["origin"] == want || iters < 5 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            assert!(
                v["origin"] == want || iters < 5,
                "{}: /data/big{w} after {iters} iterations of worker {w} is {v}, want {want}",
                b.name
            );
            seen.push(v["text"].as_str().unwrap_or_default().to_string());
        }
        whence.push(seen.join("; "));
    }

    // Stop all at once: each finishes its iteration, verifies everything and exits 0.
    eprintln!("load: {} s: stopping", start.elapsed().as_secs());
    let stops: Vec<_> = l
        .boxes
        .iter()
        .map(|b| {
            let cmd = l.cmd(&["stop", "-t", "300", &b.name]);
            let name = b.name.clone();
            std::thread::spawn(move || (name, timed(cmd, Duration::from_secs(400))))
        })
        .collect();
    for s in stops {
        let (name, out) = s.join().unwrap();
        match out {
            Some(o) => assert!(
                o.status.success(),
                "strata stop {name} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            None => {
                l.dump_all();
                panic!("strata stop {name} did not return in 400 s (stacks above)");
            }
        }
    }
    let ps = l.ok(&["ps", "-a"], 60);
    let (mut total, mut walks) = (0u64, 0u64);
    let mut per_box = Vec::new();
    for b in &l.boxes {
        let logs = l.ok(&["logs", &b.name], 60);
        assert!(
            !logs.contains("LOADFAIL") && logs.contains("LOADDONE"),
            "{}: the workload failed or did not finish its final verification; its log:\n{logs}",
            b.name
        );
        for w in 0..WORKERS {
            assert!(
                logs.lines().any(|x| x == format!("DONE {w}")),
                "{}: worker {w} did not finish; log:\n{logs}",
                b.name
            );
        }
        let line = ps.lines().find(|x| x.contains(&b.name)).unwrap_or_default();
        assert!(
            line.contains("Exited (0)"),
            "{} did not exit 0 after its stop: {line}",
            b.name
        );
        let iters: u64 = (0..WORKERS)
            .map(|w| b.progress.get(&w.to_string()).map_or(0, |p| p.0 + 1))
            .sum();
        assert!(
            iters >= WORKERS as u64,
            "{}: only {iters} iterations",
            b.name
        );
        total += iters;
        walks += b.progress.get("r").map_or(0, |p| p.0 + 1);
        per_box.push(iters);
    }

    // The upper as `diff` reads it, then every view again after a remount.
    eprintln!(
        "load: {} s: diff and verification after a remount",
        start.elapsed().as_secs()
    );
    for b in &l.boxes {
        let diff = l.ok(&["diff", &b.name], 120);
        for want in ["A /work/w0/u0", "C /data"] {
            assert!(
                diff.lines().any(|x| x == want),
                "{}: strata diff lacks {want:?}:\n{diff}",
                b.name
            );
        }
    }
    let verifies: Vec<_> = l
        .boxes
        .iter()
        .map(|b| {
            let cmd = l.cmd(&["start", "-a", &b.name]);
            let name = b.name.clone();
            std::thread::spawn(move || (name, timed(cmd, Duration::from_secs(400))))
        })
        .collect();
    for v in verifies {
        let (name, out) = v.join().unwrap();
        let Some(o) = out else {
            l.dump_all();
            panic!("the verification run of {name} did not end in 400 s (stacks above)");
        };
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && stdout.contains("VERIFYDONE"),
            "{name}: verification after a remount failed ({}): {stdout}{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // Daemon logs: no errors, no panics. fuser logs a reply the kernel no longer waits for
    // as an error (ENOENT): a release still being answered when the unmount at the stop
    // ended the connection, which the protocol allows.
    for b in &l.boxes {
        let dlog = l.daemon_log(b);
        let bad: Vec<&str> = dlog
            .lines()
            .filter(|x| x.contains("ERROR") || x.contains("panicked"))
            .filter(|x| {
                !x.contains("Failed to send FUSE reply: No such file or directory (os error 2)")
            })
            .collect();
        assert!(
            bad.is_empty(),
            "{}: its daemon logged errors (work/strata.log):\n{}",
            b.name,
            bad.join("\n")
        );
    }

    // Summary, then the bounds.
    let mut report = String::new();
    let (mut peak_rss, mut peak_fds, mut peak_nodes) = (0u64, 0usize, 0u64);
    for ((b, iters), whence) in l.boxes.iter().zip(&per_box).zip(&whence) {
        let last = b.samples.last().cloned().unwrap_or_default();
        let rss_peak = b.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let fds_peak = b.samples.iter().map(|s| s.fds).max().unwrap_or(0);
        let nodes_peak = b.samples.iter().filter_map(|s| s.nodes).max().unwrap_or(0);
        peak_rss = peak_rss.max(rss_peak);
        peak_fds = peak_fds.max(fds_peak);
        peak_nodes = peak_nodes.max(nodes_peak);
        let st = b.stats.clone().unwrap_or_default();
        let ops: u64 = st["ops"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
        let _ = writeln!(
            report,
            "  {:7} iters {:5}  rss final/peak {:>5}/{:>5} MiB (hwm {})  fds final/peak {:>4}/{:>4}  \
             nodes final/peak {:>5}/{:>5}  threads {}  ops {} errnos {}\n          big files: \
             {whence}",
            b.name,
            iters,
            mib(last.rss_kib),
            mib(rss_peak),
            mib(last.hwm_kib),
            last.fds,
            fds_peak,
            last.nodes.unwrap_or(0),
            nodes_peak,
            last.threads,
            ops,
            st["errnos"],
        );
    }
    println!(
        "load: {containers} containers x {WORKERS} workers + reader, {secs} s, {total} iterations \
         (min {} max {} per container), {walks} reader passes; daemon peak RSS {} MiB, peak fds {peak_fds}, peak nodes \
         {peak_nodes}\n{report}",
        per_box.iter().min().unwrap_or(&0),
        per_box.iter().max().unwrap_or(&0),
        mib(peak_rss)
    );

    for b in &l.boxes {
        let early: Vec<&Sample> = b.samples.iter().filter(|s| s.t <= warm).collect();
        let late: Vec<&Sample> = b.samples.iter().filter(|s| s.t > warm).collect();
        let Some(last) = b.samples.last() else {
            continue;
        };
        let fd_base = early.iter().map(|s| s.fds).max().unwrap_or(0);
        let late_fds: Vec<usize> = late.iter().map(|s| s.fds).collect();
        assert!(
            late_fds.iter().all(|f| *f <= fd_base + FD_SLACK),
            "{}: the daemon's open fds grew after the warm-up ({warm} s: at most {fd_base}) to \
             {late_fds:?}: an fd leak (look at /proc/PID/fd: dirfd cache, delta files, backing \
             ids)",
            b.name
        );
        let rss_base = early.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        assert!(
            last.rss_kib <= RSS_CAP_KIB,
            "{}: the daemon's RSS is {} MiB at the end, over the {} MiB cap",
            b.name,
            mib(last.rss_kib),
            mib(RSS_CAP_KIB)
        );
        assert!(
            last.rss_kib <= rss_base + RSS_SLACK_KIB,
            "{}: the daemon's RSS grew from {} MiB after the warm-up to {} MiB: an unbounded \
             cache or a leak (samples: {:?})",
            b.name,
            mib(rss_base),
            mib(last.rss_kib),
            b.samples
                .iter()
                .map(|s| s.rss_kib / 1024)
                .collect::<Vec<_>>()
        );
        let node_base = early.iter().filter_map(|s| s.nodes).max().unwrap_or(0);
        let node_last = last.nodes.unwrap_or(0);
        assert!(
            node_last <= node_base * 2 + 256,
            "{}: the daemon's node table grew from {node_base} to {node_last}: nodes the kernel \
             forgot are kept (fs/src/inode.rs)",
            b.name
        );
    }

    // Remove: nothing may be left.
    eprintln!("load: {} s: removing", start.elapsed().as_secs());
    let ids: Vec<String> = l.boxes.iter().map(|b| b.id.clone()).collect();
    let mut args = vec!["rm"];
    args.extend(l.boxes.iter().map(|b| b.name.as_str()));
    l.ok(&args, 300);
    assert_eq!(
        l.ok(&["ps", "-a", "-q"], 60),
        "",
        "containers left after rm"
    );
    let mounts = mounts_under(&l.root());
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
    let left: Vec<String> = pids_mentioning(&l.root())
        .into_iter()
        .map(|p| format!("{p}: {}", cmdline(p).join(" ")))
        .collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    for id in &ids {
        for d in cgroup_dirs(id) {
            assert!(!d.exists(), "cgroup {} left behind", d.display());
        }
        assert!(!l.cdir(id).exists(), "container directory {id} left behind");
    }
    l.boxes.clear();
}

/// Read the progress lines `P WORKER ITERATION` of a container's log into `b`; the first
/// `LOADFAIL` line if there is one.
fn progress(b: &mut Ctr, log: &str, now: Instant) -> Option<String> {
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for l in log.lines() {
        if l.contains("LOADFAIL") {
            return Some(l.to_string());
        }
        let mut f = l.split(' ');
        if let (Some("P"), Some(w), Some(i)) = (f.next(), f.next(), f.next()) {
            if let Ok(i) = i.parse::<u64>() {
                last.insert(w.to_string(), i);
            }
        }
    }
    for (w, i) in last {
        let e = b.progress.entry(w).or_insert((i, now));
        if e.0 != i {
            *e = (i, now);
        }
    }
    None
}
