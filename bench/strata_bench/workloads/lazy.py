"""Issue 20: lazy pulling. Debian's docker-registry runs in a network namespace the bench
creates, reached over a veth pair shaped with tc (tbf, 100 Mbit/s each way) and 20 ms RTT
(this kernel has no netem, so a relay on the host adds 10 ms each way: `_DelayProxy`); and
unshaped (the relay and tbf off). An image of busybox plus SIZE of incompressible data in
8 files, pushed once as eStargz (`strata push --format estargz`); its entrypoint reads one
small file. Per system, from a fresh store each time: seconds from the command to the
container's first output, blob bytes the registry sent by then (its access log), and seconds
to full completion (strata lazy: until the layer is complete in the store, by the daemon's
background download). Systems: strata full pull + run (`pull` then `run`), strata lazy
(`pull --lazy` then `run`, what `run` alone does for a registry with TLS), podman pull + run
(the same eStargz image, as plain gzip). stargz-snapshotter: not in Debian 12, so absent."""
import glob
import os
import queue
import re
import socket
import subprocess
import threading
import time

from .. import trees
from ..runtimes import PODMAN_ULIMITS, Podman, strata_runtime_missing
from ..sysutil import CommandError, have, rmtree, sh

TITLE = "lazy pulling (eStargz)"
NS = "sbench-lazy"
HOST_IF, NS_IF = "sbl0", "sbl1"
HOST_IP, NS_IP = "10.231.0.1", "10.231.0.2"
PORT = 5000
MB = 1000 * 1000


def _netns_up():
    _netns_down()
    sh(["ip", "netns", "add", NS])
    sh(["ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF])
    sh(["ip", "link", "set", NS_IF, "netns", NS])
    sh(["ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_IF])
    sh(["ip", "link", "set", HOST_IF, "up"])
    sh(["ip", "netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/30", "dev", NS_IF])
    sh(["ip", "netns", "exec", NS, "ip", "link", "set", NS_IF, "up"])
    sh(["ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up"])


def _netns_down():
    sh(["ip", "link", "del", HOST_IF], check=False)
    sh(["ip", "netns", "del", NS], check=False)


def _shape(on):
    for pre, dev in (([], HOST_IF), (["ip", "netns", "exec", NS], NS_IF)):
        sh(pre + ["tc", "qdisc", "del", "dev", dev, "root"], check=False)
        if on:
            sh(pre + ["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "100mbit",
                      "burst", "64kb", "latency", "50ms"])


class _DelayProxy:
    """127.0.0.1-side relay to the registry that holds every chunk `delay` seconds in each
    direction (what netem's delay would do), in arrival order."""

    def __init__(self, target, delay):
        self.target, self.delay = target, delay
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((HOST_IP, 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target, timeout=10)
            except OSError:
                c.close()
                continue
            for a, b in ((c, u), (u, c)):
                q = queue.Queue()
                threading.Thread(target=self._read, args=(a, q), daemon=True).start()
                threading.Thread(target=self._write, args=(b, q), daemon=True).start()

    def _read(self, src, q):
        while True:
            try:
                d = src.recv(1 << 16)
            except OSError:
                d = b""
            q.put((time.monotonic() + self.delay, d))
            if not d:
                return

    def _write(self, dst, q):
        while True:
            due, d = q.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if not d:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(d)
            except OSError:
                return

    def close(self):
        self.ls.close()


class _Registry:
    def __init__(self, base):
        rmtree(base)
        os.makedirs(f"{base}/data")
        self.cfg, self.log = f"{base}/config.yml", f"{base}/registry.log"
        with open(self.cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {base}/data\nhttp:\n  addr: {NS_IP}:{PORT}\n")
        out = open(self.log, "ab")
        self.p = subprocess.Popen(["ip", "netns", "exec", NS, "docker-registry", "serve",
                                   self.cfg], stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while sh(["curl", "-s", "-o", "/dev/null", f"http://{NS_IP}:{PORT}/v2/"],
                 check=False, quiet=True).returncode != 0:
            if time.monotonic() > deadline:
                raise CommandError("the registry in the namespace did not answer")
            time.sleep(0.2)

    def mark(self):
        return os.path.getsize(self.log)

    def blob_bytes(self, since):
        with open(self.log, "rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", "replace")
        n = 0
        for m in re.finditer(r'"GET /v2/[^"]*/blobs/sha256:[^"]*" (\d+) (\d+)', text):
            n += int(m.group(2))
        return n

    def stop(self):
        self.p.kill()
        self.p.wait()


def _image(root, size):
    """busybox + /data/small.txt + size bytes of random data in 8 files: the tar."""
    bb = trees.busybox_rootfs(os.path.join(os.path.dirname(root), "busybox"))
    rmtree(root)
    os.makedirs(root)
    sh(["cp", "-a", bb["rootfs"], f"{root}/rootfs"])
    os.makedirs(f"{root}/rootfs/data")
    with open(f"{root}/rootfs/data/small.txt", "w") as f:
        f.write("hello-lazy\n")
    for i in range(8):
        with open(f"{root}/rootfs/data/blob{i}.bin", "wb") as f:
            left = size // 8
            while left > 0:
                n = min(left, 4 << 20)
                f.write(os.urandom(n))
                left -= n
    sh(["tar", "--numeric-owner", "-cf", f"{root}/image.tar", "-C", f"{root}/rootfs", "."])
    rmtree(f"{root}/rootfs")
    return f"{root}/image.tar"


def _first_output(argv, env=None, timeout=900):
    """Run argv; seconds until its first stdout byte, and until it exits."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, env=env)
    first = None
    try:
        b = p.stdout.read(1)
        first = time.perf_counter() - t0 if b else None
        rest = p.stdout.read()
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        p.kill()
        raise CommandError(f"timed out: {' '.join(argv)}") from e
    if p.returncode != 0 or first is None or not (b + rest).startswith(b"hello-lazy"):
        raise CommandError(f"{' '.join(argv[:4])}... exited {p.returncode}: {err[-300:]!r}")
    return first, time.perf_counter() - t0


def run(ctx):
    if strata_runtime_missing(ctx.strata_bin) or not have("docker-registry") or not have("tc"):
        return []
    sizes = [8 * MB] if ctx.quick else [200 * MB] + (
        [1000 * MB] if os.environ.get("STRATA_BENCH_LAZY_1GB") == "1" else [])
    base = ctx.scratch("lazy")
    cols = ["strata lazy", "strata full pull + run", "podman pull + run"]
    metrics = []
    _netns_up()
    reg = None
    try:
        reg = _Registry(f"{base}/registry")
        for size in sizes:
            label = f"{size // MB} MB"
            src = f"{base}/src"
            rmtree(src)
            tar = _image(f"{base}/image", size)
            sh([ctx.strata_bin, "--root", src, "import", tar, "bench-lazy"], timeout=900)
            ref = f"{NS_IP}:{PORT}/bench/lazy{size // MB}:1"
            _shape(False)
            sh([ctx.strata_bin, "--root", src, "push", "-q", "--insecure", "--format", "estargz",
                "bench-lazy", ref], timeout=1800)
            rmtree(src)
            for shaped in (True, False):
                _shape(shaped)
                net = "100 Mbit/s, 20 ms RTT" if shaped else "unshaped"
                if shaped:
                    proxy = _DelayProxy((NS_IP, PORT), 0.010)
                    ref_now = f"{HOST_IP}:{proxy.port}/bench/lazy{size // MB}:1"
                else:
                    proxy, ref_now = None, ref
                first = ctx.metric("lazy", f"{label}, {net}: command to first output", "s",
                                   columns=cols)
                fetched = ctx.metric("lazy", f"{label}, {net}: blob MB fetched by first output",
                                     "MB", columns=cols)
                whole = ctx.metric("lazy", f"{label}, {net}: to full completion", "s",
                                   columns=cols)
                metrics += [first, fetched, whole]
                for _ in range(ctx.runs):
                    for col in cols:
                        ctx.measure(col, [first, fetched, whole],
                                    lambda c=col, r=ref_now: _one(ctx, reg, base, c, r,
                                                                  first, fetched, whole),
                                    "lazy")
                if proxy:
                    proxy.close()
    finally:
        if reg:
            reg.stop()
        _netns_down()
        rmtree(base)
    return metrics


def _one(ctx, reg, base, col, ref, first, fetched, whole):
    root = f"{base}/dst"
    rmtree(root)
    mark = reg.mark()
    cmd = ["cat", "/data/small.txt"]
    try:
        if col == "podman pull + run":
            pod = Podman(f"{base}/podman")
            pod.teardown()
            os.makedirs(pod.root)
            script = (" ".join(pod.argv("pull", "-q", "--tls-verify=false", ref)) + " >/dev/null && "
                      + " ".join(pod.argv("run", "--rm", "--network", "none", *PODMAN_ULIMITS,
                                          ref, *cmd)))
            t1, t_end = _first_output(["sh", "-c", script])
            pod.teardown()
            return {first: t1, fetched: reg.blob_bytes(mark) / MB, whole: t_end}
        lazy = col == "strata lazy"
        s = ctx.strata_bin
        pull = [s, "--root", root, "pull", "-q", "--insecure"] + (["--lazy"] if lazy else [])
        script = (" ".join(pull + [ref]) + " >/dev/null && "
                  + " ".join([s, "--root", root, "run", "--rm", ref, *cmd]))
        t0 = time.perf_counter()
        t1, t_end = _first_output(["sh", "-c", script])
        got = reg.blob_bytes(mark) / MB
        if lazy:
            # The daemon exits with the container: complete the layer as a user would.
            deadline = time.monotonic() + 1800
            sh([s, "--root", root, "pull", "-q", "--insecure", ref], timeout=1800)
            while glob.glob(f"{root}/layers/*.lazy.json"):
                if time.monotonic() > deadline:
                    raise CommandError("the lazy layer never completed")
                time.sleep(0.2)
            t_end = time.perf_counter() - t0
        return {first: t1, fetched: got, whole: t_end}
    finally:
        rmtree(root)
