"""Building the branch trees once per size. Every peer mounts the same lower directories
read-only (identical content by construction); each mount gets its own fresh upper/work."""
import os
import random
import shutil

from .sysutil import rmtree, say, sh

MiB = 1 << 20


def _cached(root, params):
    stamp = os.path.join(root, ".built")
    try:
        with open(stamp) as f:
            return f.read() == repr(params)
    except OSError:
        return False


def _mark(root, params):
    with open(os.path.join(root, ".built"), "w") as f:
        f.write(repr(params))


def _write_file(path, size, seed):
    """size bytes of incompressible, non-sparse data (a random MiB with a counter per MiB)."""
    rnd = random.Random(seed)
    block = bytearray(rnd.randbytes(MiB))
    with open(path, "wb") as f:
        left, i = size, 0
        while left > 0:
            block[0:8] = i.to_bytes(8, "little")
            n = min(left, MiB)
            f.write(block[:n] if n < MiB else block)
            left -= n
            i += 1


def big_files(root, size):
    """root/lower/{big.img,delta.img} and root/seed/upper.img, each `size` bytes."""
    params = ("big", size)
    if not _cached(root, params):
        say(f"building big-file branches ({size // MiB} MiB x3) in {root}")
        rmtree(root)
        os.makedirs(f"{root}/lower")
        os.makedirs(f"{root}/seed")
        _write_file(f"{root}/lower/big.img", size, 1)
        _write_file(f"{root}/lower/delta.img", size, 2)
        _write_file(f"{root}/seed/upper.img", size, 3)
        os.sync()
        _mark(root, params)
    return {"lower": f"{root}/lower", "upper_seed": f"{root}/seed/upper.img"}


def small_files(root, count):
    """root/lower/tree/dNNNN/fNNNNNN: `count` files of 0-4 KiB, 1000 per directory, and
    root/files.tar holding the same tree (untarred into the mount under a new name)."""
    params = ("small", count)
    if not _cached(root, params):
        say(f"building a {count}-file branch in {root}")
        rmtree(root)
        rnd = random.Random(7)
        pool = rnd.randbytes(8192)
        tree = f"{root}/lower/tree"
        per_dir = 1000
        for i in range(count):
            d = f"{tree}/d{i // per_dir:04d}"
            if i % per_dir == 0:
                os.makedirs(d)
            n = rnd.randrange(0, 4096)
            off = rnd.randrange(0, 4096)
            with open(f"{d}/f{i:06d}", "wb") as f:
                f.write(pool[off:off + n])
        sh(["tar", "-cf", f"{root}/files.tar", "-C", f"{root}/lower", "tree"], timeout=1800)
        os.sync()
        _mark(root, params)
    return {"lower": f"{root}/lower", "tar": f"{root}/files.tar", "count": count}


def busybox_rootfs(root):
    """root/rootfs (busybox-static with its applet links) and root/busybox.tar of it."""
    params = ("busybox", os.path.getmtime("/bin/busybox"))
    if not _cached(root, params):
        rmtree(root)
        fs = f"{root}/rootfs"
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "run"):
            os.makedirs(f"{fs}/{d}")
        shutil.copy2("/bin/busybox", f"{fs}/bin/busybox")
        applets = sh(["/bin/busybox", "--list"]).stdout.split()
        for a in applets:
            if a != "busybox" and not os.path.lexists(f"{fs}/bin/{a}"):
                os.symlink("busybox", f"{fs}/bin/{a}")
        with open(f"{fs}/etc/passwd", "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\n")
        with open(f"{fs}/etc/group", "w") as f:
            f.write("root:x:0:\n")
        sh(["tar", "--numeric-owner", "-cf", f"{root}/busybox.tar", "-C", fs, "."])
        _mark(root, params)
    return {"rootfs": f"{root}/rootfs", "tar": f"{root}/busybox.tar"}
