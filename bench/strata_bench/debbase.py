"""An offline Debian-ish base image for the build workload (issue 18), made from host files
only: busybox-static with its applet links, the host's dpkg binaries and the libraries
they load (ldd), an empty dpkg database, a small tree of files later steps delete and
rename, and /data/big.img (real data). Plus a cache of small .deb files (`apt-get
download` on the host, or tiny packages made with `dpkg-deb --build` when that fails or in
--quick mode) that `dpkg -i` installs inside the build."""
import glob
import os
import shutil

from . import trees
from .sysutil import CommandError, rmtree, say, sh

MiB = 1 << 20

# Small packages whose files unpack without maintainer scripts that need more than busybox.
# Installed with --force-depends (the base has no libc6 etc. in its dpkg database).
DEBS = ["hello", "tree", "pv", "xxd", "sl", "cmatrix", "fortunes-min", "sensible-utils",
        "cowsay", "libjs-jquery"]
# Applets not linked: the host's GNU tar, dash and dpkg take their place.
OWN = ("busybox", "tar", "sh", "dpkg", "dpkg-deb")
DPKG_BINS = ["dpkg", "dpkg-deb", "dpkg-split", "dpkg-query", "dpkg-trigger", "dpkg-divert",
             "dpkg-statoverride", "dpkg-maintscript-helper", "dpkg-realpath"]


def _libs(binary):
    """Absolute paths of the shared objects ldd lists for binary (the loader included)."""
    out = []
    p = sh(["ldd", binary], check=False, quiet=True)
    for line in p.stdout.splitlines():
        parts = line.split()
        for w in parts:
            if w.startswith("/") and os.path.exists(w):
                out.append(w)
                break
    return out


def _copy_into(fs, src):
    """Copy src (following links) to the same path under fs, creating the parents; the
    directory part is resolved so a usr-merged host's /lib/x/... lands in usr/lib/x/..."""
    d = os.path.realpath(os.path.dirname(src))
    dest = f"{fs}{d}/{os.path.basename(src)}"
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if not os.path.exists(dest):
        shutil.copy2(src, dest)


def _rootfs(fs, big_bytes, big_src):
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "usr/share",
              "etc/dpkg/dpkg.cfg.d", "tmp", "proc", "sys", "dev", "root", "run", "var/log",
              "var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers",
              "var/lib/dpkg/alternatives", "var/lib/dpkg/parts", "data", "base/keep",
              "base/gone", "base/moved"):
        os.makedirs(f"{fs}/{d}", exist_ok=True)
    os.chmod(f"{fs}/tmp", 0o1777)
    for link, target in (("lib", "usr/lib"), ("lib64", "usr/lib64")):
        os.symlink(target, f"{fs}/{link}")
    shutil.copy2("/bin/busybox", f"{fs}/bin/busybox")
    for a in sh(["/bin/busybox", "--list"], quiet=True).stdout.split():
        if a not in OWN and not os.path.lexists(f"{fs}/bin/{a}"):
            os.symlink("busybox", f"{fs}/bin/{a}")
    bins = [b for b in (f"/usr/bin/{n}" for n in DPKG_BINS) if os.path.exists(b)]
    bins.append(shutil.which("tar") or "/usr/bin/tar")  # dpkg-deb runs GNU tar options
    bins.append("/sbin/ldconfig")
    # /bin/sh is the host's dash: busybox's ash (standalone shell) would run its own dpkg
    # applet for `dpkg` once /proc is mounted, whatever PATH says
    shutil.copy2(os.path.realpath("/bin/dash"), f"{fs}/bin/dash")
    os.symlink("dash", f"{fs}/bin/sh")
    for lib in _libs("/bin/dash"):
        _copy_into(fs, lib)
    for b in bins:
        dest = f"{fs}/sbin/{os.path.basename(b)}" if "sbin/" in b else \
            f"{fs}/usr/bin/{os.path.basename(b)}"
        shutil.copy2(b, dest)
        for lib in _libs(b):
            _copy_into(fs, lib)
    if os.path.isdir("/usr/share/dpkg"):  # dpkg-maintscript-helper sources sh/*.sh
        shutil.copytree("/usr/share/dpkg", f"{fs}/usr/share/dpkg", symlinks=True)
    for f in ("status", "available", "diversions", "statoverride"):
        open(f"{fs}/var/lib/dpkg/{f}", "w").close()
    with open(f"{fs}/var/lib/dpkg/arch", "w") as f:
        f.write(sh(["dpkg", "--print-architecture"]).stdout)
    with open(f"{fs}/etc/passwd", "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(f"{fs}/etc/group", "w") as f:
        f.write("root:x:0:\n")
    with open(f"{fs}/etc/debian_version", "w") as f:
        f.write("12.0\n")
    for sub in ("keep", "gone", "moved"):  # lower-layer files the build deletes and renames
        for i in range(50):
            with open(f"{fs}/base/{sub}/f{i:03d}", "w") as f:
                f.write(f"{sub} {i}\n" * 20)
    if big_src and os.path.getsize(big_src) == big_bytes:
        os.link(big_src, f"{fs}/data/big.img")
    else:
        trees._write_file(f"{fs}/data/big.img", big_bytes, 18)


def base_tar(root, big_bytes, big_src=None):
    """root/debbase.tar: the base image (built once per big-file size and busybox/dpkg)."""
    params = ("debbase", 2, big_bytes, os.path.getmtime("/bin/busybox"),
              os.path.getmtime("/usr/bin/dpkg"))
    if not trees._cached(root, params):
        say(f"building the offline Debian-ish base image ({big_bytes // MiB} MiB file) in {root}")
        rmtree(root)
        fs = f"{root}/rootfs"
        os.makedirs(fs)
        _rootfs(fs, big_bytes, big_src)
        sh(["tar", "--numeric-owner", "-cf", f"{root}/debbase.tar", "-C", fs, "."],
           timeout=1800)
        rmtree(fs)
        os.sync()
        trees._mark(root, params)
    return f"{root}/debbase.tar"


def _fake_deb(out_dir, i):
    """A tiny .deb (no dependencies, no scripts) built with dpkg-deb --build."""
    name = f"bench-tiny{i}"
    src = f"{out_dir}/src-{name}"
    rmtree(src)
    os.makedirs(f"{src}/DEBIAN")
    os.makedirs(f"{src}/usr/share/{name}")
    with open(f"{src}/DEBIAN/control", "w") as f:
        f.write(f"Package: {name}\nVersion: 1.0\nArchitecture: all\n"
                "Maintainer: bench <bench@localhost>\nDescription: bench filler\n")
    for k in range(20):
        with open(f"{src}/usr/share/{name}/file{k:02d}", "w") as f:
            f.write(f"{name} {k}\n" * 100)
    sh(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", src,
        f"{out_dir}/{name}_1.0_all.deb"], quiet=True)
    rmtree(src)


def debs(root, quick):
    """A directory of .deb files: DEBS fetched with `apt-get download` (cached), or tiny
    made-up packages (--quick, or when the download fails). Returns (dir, how)."""
    if quick:
        d = f"{root}/tiny"
        if len(glob.glob(f"{d}/*.deb")) != 3:
            rmtree(d)
            os.makedirs(d)
            for i in range(3):
                _fake_deb(d, i)
        return d, "3 tiny packages made with dpkg-deb --build"
    d = f"{root}/apt"
    have = {os.path.basename(p).split("_")[0] for p in glob.glob(f"{d}/*.deb")}
    want = [p for p in DEBS if p not in have]
    if want:
        os.makedirs(d, exist_ok=True)
        say(f"apt-get download {' '.join(want)} into {d}")
        try:
            sh(["apt-get", "download", *want], cwd=d, timeout=600)
        except CommandError as e:
            say(f"apt-get download failed ({e}); using made-up packages")
            d = f"{root}/fallback"
            if len(glob.glob(f"{d}/*.deb")) != len(DEBS):
                rmtree(d)
                os.makedirs(d)
                for i in range(len(DEBS)):
                    _fake_deb(d, i)
            return d, f"{len(DEBS)} made-up packages (apt-get download failed)"
    n = len(glob.glob(f"{d}/*.deb"))
    return d, f"{n} Debian packages ({', '.join(DEBS)}) from `apt-get download`"
