#!/bin/sh
# A shell script written for docker: it runs unchanged with DOCKER=strata.
# It prints "OK" at the end; any failed step exits non-zero with a message.
set -eu
DOCKER=${DOCKER:-docker}
IMAGE=${IMAGE:-busybox}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# A named, detached worker; find it by name.
$DOCKER run -d --name script-web "$IMAGE" sh -c 'echo first; echo last; sleep 30' >/dev/null
$DOCKER ps --format '{{.Names}}' | grep -qx script-web || fail "ps --format does not list script-web"

# Its last log line.
i=0
until [ "$($DOCKER logs --tail 1 script-web 2>/dev/null)" = last ]; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "logs --tail 1 never showed 'last'"; sleep 0.1
done

# Copy a file in, and one out.
echo "from the host" > "$work/in.txt"
$DOCKER cp "$work/in.txt" script-web:/tmp/in.txt
$DOCKER exec script-web cat /tmp/in.txt | grep -qx "from the host" || fail "cp into the container"
$DOCKER exec script-web sh -c 'echo made inside > /tmp/out.txt'
$DOCKER cp script-web:/tmp/out.txt "$work/out.txt"
grep -qx "made inside" "$work/out.txt" || fail "cp out of the container"

# A job whose exit status is read with wait and inspect.
$DOCKER run -d --name script-job "$IMAGE" sh -c 'sleep 0.5; exit 3' >/dev/null
[ "$($DOCKER wait script-job)" = 3 ] || fail "wait did not print 3"
[ "$($DOCKER inspect --format '{{.State.ExitCode}}' script-job)" = 3 ] || fail "inspect State.ExitCode"
[ "$($DOCKER inspect --format '{{.State.Status}}' script-job)" = exited ] || fail "inspect State.Status"

# A throw-away container, removed on exit.
out=$($DOCKER run --rm=true "$IMAGE" echo gone)
[ "$out" = gone ] || fail "run --rm=true printed '$out'"

$DOCKER rm -f script-web script-job >/dev/null
[ -z "$($DOCKER ps -a --format '{{.Names}}' | grep script- || true)" ] || fail "containers left behind"
echo OK
