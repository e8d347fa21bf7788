"""Container runtimes under test: strata's CLI (fuse and overlay drivers), runc alone on a
prepared bundle, and podman with fuse-overlayfs as mount_program. Each keeps its state in a
directory of its own under the bench work dir, never in the system stores."""
import hashlib
import json
import os
import shutil

from .mounts import cleanup_stale
from .sysutil import rmtree, sh

PODMAN_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def _help(argv):
    p = sh(argv + ["--help"], check=False, timeout=20)
    return p.stdout + p.stderr if p.returncode == 0 else None


def strata_runtime_missing(binary):
    """None if `strata run`, `import`, `commit`, `rm` answer --help like the documented CLI,
    else why not (e.g. STRATA_BIN is fuse-overlayfs, or the runtime has not landed)."""
    if not binary:
        return "strata not built"
    for sub, word in (("run", "--rm"), ("import", "Usage"), ("commit", "Usage"), ("rm", "Usage")):
        text = _help([binary, sub])
        if text is None or word not in text:
            return f"not available yet (`strata {sub} --help` does not work)"
    return None


def strata_trace_missing(binary):
    text = _help([binary, "mount"]) if binary else None
    if text is None or "--trace" not in text:
        return "not available yet (`strata mount --help` has no --trace)"
    return None


class StrataCli:
    """argv builder for `strata [--root R] SUB [--driver D] ARGS`, placing --root/--driver
    where the binary's --help says they go (global options or options of the subcommand)."""

    def __init__(self, binary, root, driver):
        self.binary, self.root, self.driver = binary, root, driver
        top = _help([binary]) or ""
        run = _help([binary, "run"]) or ""
        self.root_global = "--root" in top
        self.driver_global = "--driver" in top and "--driver" not in run
        self.name = f"strata ({driver})"

    def argv(self, sub, *args):
        pre, post = [self.binary], [sub]
        (pre if self.root_global else post).extend(["--root", self.root])
        if self.driver_global:
            pre.extend(["--driver", self.driver])
        elif sub == "run":
            post.extend(["--driver", self.driver])
        return pre + post + list(args)

    def setup(self, image_tar, image):
        rmtree(self.root)
        os.makedirs(self.root)
        sh(self.argv("import", image_tar, image), timeout=300)

    def run_rm(self, image, *cmd):
        return self.argv("run", "--rm", image, *cmd)

    def run_named(self, name, image, *cmd):
        return self.argv("run", "--name", name, image, *cmd)

    def commit(self, name, image):
        return self.argv("commit", name, image)

    def rm(self, name):
        return self.argv("rm", name)

    def disk_root(self):
        return self.root

    def build(self, context, tag):
        return self.argv("build", "--driver", self.driver, "-t", tag, "-f",
                         f"{context}/Dockerfile", context)

    def history(self, image):
        return self.argv("history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", image)

    def teardown(self):
        rmtree(self.root)


class Podman:
    """podman with its own graph root, overlay driver with fuse-overlayfs as mount_program
    (mount_program=None: the kernel's overlayfs)."""

    def __init__(self, root, mount_program="/usr/bin/fuse-overlayfs", name="podman"):
        self.root, self.mount_program, self.name = root, mount_program, name
        self.runroot = f"{root}/run"
        if len(self.runroot) > 50:  # podman refuses a longer runroot
            h = hashlib.sha1(root.encode()).hexdigest()[:12]
            self.runroot = f"/tmp/strata-bench-{h}"

    def argv(self, *args):
        opts = (["--storage-opt", f"overlay.mount_program={self.mount_program}"]
                if self.mount_program else [])
        return ["podman", "--root", f"{self.root}/graph", "--runroot", self.runroot,
                "--tmpdir", f"{self.root}/tmp", "--storage-driver", "overlay", *opts,
                "--cgroup-manager", "cgroupfs", "--events-backend", "file", *args]

    def setup(self, image_tar, image):
        self.teardown()
        os.makedirs(self.root)
        sh(self.argv("import", image_tar, image), timeout=300)

    def run_rm(self, image, *cmd):
        return self.argv("run", "--rm", "--network", "none", *PODMAN_ULIMITS, image, *cmd)

    def run_named(self, name, image, *cmd):
        return self.argv("run", "--name", name, "--network", "none", *PODMAN_ULIMITS, image, *cmd)

    def commit(self, name, image):
        return self.argv("commit", "-q", name, image)

    def rm(self, name):
        return self.argv("rm", "-f", name)

    def disk_root(self):
        return f"{self.root}/graph"

    def build(self, context, tag):
        return self.argv("build", "--pull=never", "--network", "none", *PODMAN_ULIMITS,
                         "-t", tag, "-f", f"{context}/Dockerfile", context)

    def history(self, image):
        return self.argv("history", "--no-trunc", "--format", "json", image)  # size in bytes

    def teardown(self):
        if os.path.exists(self.root):  # never `system reset`: it touches system-wide config
            sh(self.argv("rm", "-af"), check=False, timeout=300)
            sh(self.argv("rmi", "-af"), check=False, timeout=300)
            cleanup_stale(self.root)
            rmtree(self.root)
        if not self.runroot.startswith(self.root):
            cleanup_stale(self.runroot)
            rmtree(self.runroot)


class Runc:
    """runc alone: a prepared bundle (busybox rootfs + config from `runc spec`), no image
    store and no union mount: the floor a runtime's start can reach."""
    name = "runc"

    def __init__(self, root, rootfs):
        self.root, self.rootfs = root, rootfs
        self.n = 0

    def setup(self, _image_tar=None, _image=None):
        rootfs = self.rootfs
        rmtree(self.root)
        os.makedirs(self.root)
        shutil.copytree(rootfs, f"{self.root}/rootfs", symlinks=True)
        sh(["runc", "spec"], cwd=self.root)
        path = f"{self.root}/config.json"
        with open(path) as f:
            cfg = json.load(f)
        cfg["process"]["terminal"] = False
        cfg["root"]["path"] = f"{self.root}/rootfs"
        with open(path, "w") as f:
            json.dump(cfg, f)

    def run_rm(self, _image, *cmd):
        self.n += 1
        path = f"{self.root}/config.json"
        with open(path) as f:
            cfg = json.load(f)
        if cfg["process"]["args"] != list(cmd):
            cfg["process"]["args"] = list(cmd)
            with open(path, "w") as f:
                json.dump(cfg, f)
        return ["runc", "--root", f"{self.root}/state", "run", "--bundle", self.root,
                f"bench-{os.getpid()}-{self.n}"]

    def teardown(self):
        rmtree(self.root)
