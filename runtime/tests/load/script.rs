//! The workload each container runs (a shell script) and the files it starts from.

use super::*;

/// 64 bytes: the unit of the big files (all lines alike, so any 64-byte aligned chunk that was
/// never written must read as this).
pub(crate) fn line() -> String {
    format!(
        "{:<63}\n",
        "strata load test: lower data no write may touch"
    )
}

pub(crate) const FILL: &str = "filler so that a lower file is more than one short line of text, \
                    and a copy-up copies something: 0123456789abcdefghijklmnopqrstuvwxyz";

pub(crate) fn lower_file(dir: usize, f: usize) -> String {
    format!("lower d{dir}/f{f:02}\n{FILL}\n")
}

/// The workload. `sh /load.sh SECS WORKERS`; run again in a container that already ran it,
/// it only verifies what the first run left (after a remount: a fresh daemon).
pub(crate) const SCRIPT: &str = r#"
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

pub(crate) fn script() -> String {
    SCRIPT
        .replace("@NF@", &FILES.to_string())
        .replace("@FILL@", FILL)
        .replace("@BIGSIZE@", &BIG.to_string())
        .replace("@DEEP@", &DEEP.to_string())
}
