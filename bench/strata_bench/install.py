"""Installing the peers from Debian and building strata."""
import os

from .sysutil import CommandError, say, sh

# Debian package -> why the bench needs it.
PEERS = {
    "fuse-overlayfs": "FUSE peer",
    "fio": "random-read workload",
    "runc": "container-start peer",
    "podman": "container peer",
    "busybox-static": "container image",
}


def missing_packages(names):
    return [n for n in names if sh(["dpkg", "-s", n], check=False).returncode != 0]


def ensure_packages(names=tuple(PEERS)):
    """apt-get install what is missing (apt-get update once first). Returns error text or None."""
    missing = missing_packages(names)
    if not missing:
        return None
    say(f"installing from Debian: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    try:
        sh(["apt-get", *lock, "update", "-qq"], env=env, timeout=900)
        sh(["apt-get", *lock, "install", "-y", "-qq", *missing], env=env, timeout=1800)
    except CommandError as e:
        still = missing_packages(missing)
        if still:
            return f"could not install {' '.join(still)}: {e}"
    return None


def strata_binary(repo, build=True):
    """(path, note). STRATA_BIN overrides and skips the build; otherwise cargo build --release."""
    override = os.environ.get("STRATA_BIN")
    if override:
        return override, f"STRATA_BIN={override} (stand-in, no build)"
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(repo, "target")
    path = os.path.join(os.path.join(repo, target), "release", "strata")
    if build:
        say("building strata: cargo build --release -p strata-cli")
        try:
            sh(["cargo", "build", "--release", "-p", "strata-cli"], cwd=repo, timeout=3600)
        except CommandError as e:
            if os.path.exists(path):
                return path, f"cargo build failed, using the previous binary: {e}"
            return None, f"cargo build failed: {e}"
    if not os.path.exists(path):
        return None, f"{path} does not exist"
    return path, os.path.relpath(path, repo) if path.startswith(repo) else path
