"""The node image: Debian 12 with systemd, sshd and every node package, built once.

The recipe is the files in `node/` plus the debootstrap settings below; its hash is the
image tag (`localhost/hakube-node:<hash>`), so the image is rebuilt exactly when the
recipe changes and reused otherwise. Built with debootstrap from the Debian mirror (the
only network access of the lab), then imported into podman's image store as one layer.

Example:
    >>> from hakube.lab import image
    >>> image.ensure()                         # doctest: +SKIP
    'localhost/hakube-node:3f9c2a1b7d4e'
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path

from . import cache, debian
from .errors import LabError
from .proc import run, stream
from .progress import Progress

REPOSITORY = "localhost/hakube-node"
VARIANT = "minbase"
# podman import settings: hakube-init (node/init.sh) gives the machine its own cgroups, then
# execs systemd as PID 1, which stops cleanly on SIGRTMIN+3.
INIT = "/usr/local/sbin/hakube-init"
IMPORT_CHANGES = [f'CMD ["{INIT}"]', "STOPSIGNAL SIGRTMIN+3"]
RECIPE_FILES = ("packages-base.txt", "packages.txt", "setup.sh", "init.sh")


def _recipe_dir():
    return resources.files("hakube.lab") / "node"


def _packages(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def recipe_hash(files: dict[str, bytes], settings: dict[str, object]) -> str:
    """A short, stable hash of everything that decides the image's contents.

    `files` are the recipe files by name, `settings` the build's constants (mirror,
    suite, variant, import changes). Order of the dict does not matter.
    """
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:12]


def recipe() -> tuple[dict[str, bytes], dict[str, object]]:
    """The current recipe: its files and settings."""
    files = {name: (_recipe_dir() / name).read_bytes() for name in RECIPE_FILES}
    settings = {"mirror": debian.MIRROR, "suite": debian.SUITE, "variant": VARIANT,
                "import": IMPORT_CHANGES}
    return files, settings


def name() -> str:
    """The image reference the current recipe builds."""
    return f"{REPOSITORY}:{recipe_hash(*recipe())}"


def exists(ref: str) -> bool:
    return run(["podman", "image", "exists", ref], check=False).returncode == 0


def record_path(ref: str) -> Path:
    """Where the build of `ref` wrote its timing record."""
    return cache.root() / "node-image" / f"{ref.rsplit(':', 1)[1]}.json"


def ensure(progress: Progress | None = None) -> str:
    """Return the node image reference, building the image first when it does not exist."""
    progress = progress or Progress()
    ref = name()
    if exists(ref):
        progress.note(f"node image {ref} up to date")
        return ref
    work = cache.root() / "node-image"
    with cache.locked(work / ".lock"):
        if exists(ref):
            return ref
        # scratch of builds killed before their cleanup ran (we hold the lock): unmount
        # what they mounted, and delete them only if that worked
        for stale in work.glob("rootfs-*"):
            if _force_unmount(stale / "rootfs"):
                shutil.rmtree(stale, ignore_errors=True)
        for tool in ("debootstrap", "podman", "chroot"):
            if shutil.which(tool) is None:
                raise LabError(f"building the node image needs {tool}; run scripts/setup.sh")
        _build(ref, work, progress)
        _remove_superseded(ref, progress)
    return ref


def _remove_superseded(ref: str, progress: Progress) -> None:
    """Delete node images of older recipes (about 1 GB each), by exact reference.

    One still used by a lab's machines stays: podman refuses, and that lab keeps working.
    """
    listed = run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}",
                  "--filter", f"reference={REPOSITORY}"], check=False).stdout.split()
    for old in sorted(set(listed) - {ref}):
        if old.startswith(f"{REPOSITORY}:") and run(["podman", "rmi", old], check=False).returncode == 0:
            progress.note(f"removed the superseded node image {old}")


def _build(ref: str, work: Path, progress: Progress) -> None:
    files, _ = recipe()
    started = time.monotonic()
    phases: dict[str, float] = {}
    scratch = Path(tempfile.mkdtemp(prefix="rootfs-", dir=work))
    rootfs = scratch / "rootfs"
    log = work / f"{ref.rsplit(':', 1)[1]}.log"
    log.unlink(missing_ok=True)
    try:
        t = time.monotonic()
        base = _packages(files["packages-base.txt"].decode())
        with progress.step(f"Bootstrapping Debian {debian.SUITE} ({VARIANT})") as s:
            stream(["debootstrap", f"--variant={VARIANT}", f"--include={','.join(base)}",
                    debian.SUITE, rootfs, debian.MIRROR], log=log, on_line=s.detail,
                   fix=f"see {log}; check that {debian.MIRROR} is reachable")
        phases["debootstrap"] = time.monotonic() - t

        t = time.monotonic()
        with progress.step("Installing node packages, disabling their services") as s:
            recipe_in = rootfs / "tmp" / "hakube-recipe"
            recipe_in.mkdir(parents=True)
            for fname, data in files.items():
                (recipe_in / fname).write_bytes(data)
            with _chroot_mounts(rootfs):
                stream(["chroot", rootfs, "/bin/sh", "/tmp/hakube-recipe/setup.sh"],
                       log=log, on_line=s.detail, fix=f"see {log}")
            shutil.rmtree(recipe_in)
            disabled = (rootfs / "etc" / "hakube-disabled-units").read_text().split()
            versions = run(["chroot", rootfs, "dpkg-query", "-W", "-f",
                            "${Package} ${Version}\\n"]).stdout.splitlines()
            (rootfs / "etc" / "hakube-node-image").write_text(
                f"# generated by hakube: the lab node image\nimage={ref}\n")
        phases["packages"] = time.monotonic() - t

        t = time.monotonic()
        with progress.step(f"Importing {ref} into podman"):
            tarball = scratch / "rootfs.tar"
            # numeric owners: the image's users (etcd, prometheus...) are not this host's.
            run(["tar", "--numeric-owner", "--xattrs", "-C", rootfs, "-cf", tarball, "."],
                timeout=900)
            changes = [a for c in IMPORT_CHANGES for a in ("--change", c)]
            # The tag appears only once the whole tarball is imported: no half image.
            run(["podman", "import", *changes, tarball, ref], timeout=900)
        phases["import"] = time.monotonic() - t

        cache.write_json(record_path(ref), {
            "image": ref,
            "builtAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.monotonic() - started, 1),
            "phases": {k: round(v, 1) for k, v in phases.items()},
            "disabledUnits": disabled,
            "packages": versions,
        })
    finally:
        if _force_unmount(rootfs):
            shutil.rmtree(scratch, ignore_errors=True)


class _chroot_mounts:
    """/proc and /dev inside the rootfs while package scripts run; always unmounted."""

    def __init__(self, rootfs: Path) -> None:
        self.rootfs = rootfs

    def __enter__(self) -> None:
        run(["mount", "-t", "proc", "proc", self.rootfs / "proc"])
        run(["mount", "--bind", "/dev", self.rootfs / "dev"])

    def __exit__(self, *exc) -> None:
        _force_unmount(self.rootfs)


def _force_unmount(rootfs: Path) -> bool:
    """Unmount what the build mounted in `rootfs`; True when nothing is mounted there.

    The scratch folder is deleted only then: deleting through a bind mount of /dev would
    delete the host's /dev.
    """
    clean = True
    for sub in ("dev/pts", "dev", "proc", "sys"):
        p = rootfs / sub
        if _mounted(p):
            run(["umount", "-l", p], check=False)
            clean = clean and not _mounted(p)
    return clean


def _mounted(p: Path) -> bool:
    return p.is_dir() and run(["mountpoint", "-q", p], check=False).returncode == 0
