"""Kubernetes binaries and images built offline from Debian's sources, cached by version.

Nothing here downloads a Kubernetes release: there is no route to one on the machines the
lab runs on. Instead Debian's `kubernetes` source package (which ships the whole tree with
vendor/) is compiled with Debian's Go, the pause container is compiled from the same tree,
and busybox comes from Debian's busybox-static. The result is a folder usable as
`spec.distribution.binaries` and `spec.distribution.images`:

    $HAKUBE_CACHE/kubernetes/1.20.2/
        bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy,kubectl}
        images/{pause.oci.tar,busybox.oci.tar,manifest.json}
        build.json       how it was built and how long each phase took

kubectl is built too because the host's /usr/bin/kubectl (1.32) is outside the supported
version skew of a 1.20 apiserver.

Example:
    >>> from hakube.lab import binaries
    >>> k8s = binaries.ensure()                 # builds once (~9 min), then instant
    >>> k8s.sandbox_image
    'registry.k8s.io/pause:3.4'
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hakube.components.containerd import pause_image
from hakube.hashing import file_sha256

from . import cache, debian, oci
from .errors import LabError
from .proc import run, stream
from .progress import Progress

KUBERNETES_VERSION = "1.20.2"
# Server binaries plus kubectl: the host's kubectl is too new to talk to a 1.20 apiserver.
COMMANDS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
            "kube-proxy", "kubectl"]
PAUSE_REGISTRY = "registry.k8s.io/pause"
BUSYBOX_REPOSITORY = "docker.io/library/busybox"
MANIFEST = "manifest.json"
BUILD_RECORD = "build.json"


@dataclass(frozen=True)
class Kubernetes:
    """A complete cached build: where its binaries and images are, and what they are called."""

    version: str
    root: Path

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def manifest(self) -> dict:
        return json.loads((self.images_dir / MANIFEST).read_text())

    @property
    def sandbox_image(self) -> str:
        """The pause image reference containerd must use as `sandbox_image`."""
        return self.manifest["sandboxImage"]

    @property
    def build_record(self) -> dict:
        return json.loads((self.root / BUILD_RECORD).read_text())


def location(version: str = KUBERNETES_VERSION) -> Path:
    return cache.root() / "kubernetes" / version


def cached(version: str = KUBERNETES_VERSION) -> Kubernetes | None:
    """The cached build of `version`, or None. A folder exists only once it is complete."""
    root = location(version)
    if (root / BUILD_RECORD).is_file():
        return Kubernetes(version, root)
    return None


def ensure(version: str = KUBERNETES_VERSION, progress: Progress | None = None) -> Kubernetes:
    """Return the cached build of `version`, building it first when missing.

    Builds run under a lock, so concurrent callers build once and all get the result.
    """
    progress = progress or Progress()
    if found := cached(version):
        if found.sandbox_image != sandbox_image(version):
            with cache.locked(found.root.parent / f".{version}.lock"):
                _retag_pause(found)
            progress.note(f"renamed the pause image to {sandbox_image(version)}")
        progress.note(f"Kubernetes {version} binaries cached in {found.root}")
        return found
    final = location(version)
    with cache.locked(final.parent / f".{version}.lock"):
        if found := cached(version):  # another process built it while we waited
            return found
        cache.remove_stale_partials(final.parent, version)
        # scratch folders of builds killed before their cleanup ran (we hold the lock)
        for stale in cache.root().glob(f"build-kubernetes-{version}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        _check_tools()
        with cache.atomic_dir(final) as out:
            _build(version, out, progress)
    return Kubernetes(version, final)


def _check_tools() -> None:
    missing = [t for t in ("go", "make", "rsync", "gcc", "apt-get", "dpkg-deb")
               if shutil.which(t) is None]
    if missing:
        raise LabError(f"building Kubernetes needs {', '.join(missing)} on this host; "
                       "run scripts/setup.sh")


def _build(version: str, out: Path, progress: Progress) -> None:
    started = time.monotonic()
    phases: dict[str, float] = {}
    # Scratch beside the cache (it needs ~3 GiB: source tree, Go build cache); deleted at
    # the end whatever happens. The log stays in the result for later reading.
    scratch = Path(tempfile.mkdtemp(prefix=f"build-kubernetes-{version}-",
                                    dir=cache.root()))
    log = out / "build.log"
    try:
        t = time.monotonic()
        with progress.step("Downloading Debian's kubernetes source package"):
            source_version = debian.download_source("kubernetes", scratch)
        phases["download"] = time.monotonic() - t

        t = time.monotonic()
        with progress.step("Unpacking the source tree"):
            tree = _unpack(scratch, version)
        phases["unpack"] = time.monotonic() - t

        t = time.monotonic()
        with progress.step(f"Compiling {', '.join(COMMANDS)} (about 10 minutes on 2 cores)") as s:
            _compile(tree, scratch, log, s.detail)
            (out / "bin").mkdir()
            built = tree / "_output" / "local" / "bin" / "linux" / "amd64"
            for cmd in COMMANDS:
                shutil.copy2(built / cmd, out / "bin" / cmd)
        phases["compile"] = time.monotonic() - t

        t = time.monotonic()
        with progress.step("Building the pause and busybox images"):
            (out / "images").mkdir()
            images = {
                "pause": _pause_image(tree, scratch, out / "images" / "pause.oci.tar"),
                "busybox": _busybox_image(scratch, out / "images" / "busybox.oci.tar"),
            }
            cache.write_json(out / "images" / MANIFEST, {
                "kubernetes": version,
                "sandboxImage": images["pause"]["ref"],
                "images": images,
            })
        phases["images"] = time.monotonic() - t

        cache.write_json(out / BUILD_RECORD, {
            "kubernetes": version,
            "sourcePackage": f"kubernetes {source_version}",
            "mirror": f"{debian.MIRROR} {debian.SUITE}",
            "go": run(["go", "version"]).stdout.strip(),
            "builtAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.monotonic() - started, 1),
            "phases": {k: round(v, 1) for k, v in phases.items()},
            "sha256": {f"bin/{c}": file_sha256(out / "bin" / c) for c in COMMANDS},
        })
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _unpack(scratch: Path, version: str) -> Path:
    origs = list(scratch.glob("kubernetes_*.orig.tar.*"))
    if len(origs) != 1:
        raise LabError(f"expected one kubernetes orig tarball in {scratch}, found {len(origs)}")
    with tarfile.open(origs[0]) as tar:
        tar.extractall(scratch, filter="tar")
    tree = scratch / f"kubernetes-{version}"
    if not tree.is_dir():
        found = [p.name for p in scratch.iterdir() if p.is_dir() and p.name.startswith("kubernetes-")]
        raise LabError(f"Debian's kubernetes source is {found or 'unknown'}, not {version}; "
                       f"ask for the version Debian ships")
    return tree


def _compile(tree: Path, scratch: Path, log: Path, on_line) -> None:
    # The same steps as Debian's debian/rules: a GOPATH whose k8s.io/kubernetes is the tree
    # (the build scripts insist on that import path), cgo off for static binaries.
    gopath = tree / ".go"
    (gopath / "src" / "k8s.io").mkdir(parents=True, exist_ok=True)
    link = gopath / "src" / "k8s.io" / "kubernetes"
    if not link.is_symlink():
        link.symlink_to("../../..")
    home = scratch / "home"
    home.mkdir(exist_ok=True)
    tmp = scratch / "tmp"  # Go's work folders too, so an interrupted build leaves nothing
    tmp.mkdir(exist_ok=True)
    stream(
        ["make", "WHAT=" + " ".join(f"cmd/{c}" for c in COMMANDS)],
        log=log, on_line=on_line, cwd=tree,
        env={"GOPATH": str(gopath), "CGO_ENABLED": "0", "HOME": str(home),
             "GOCACHE": str(scratch / "gocache"), "GOFLAGS": "", "TMPDIR": str(tmp)},
    )


def _pause_image(tree: Path, scratch: Path, dest: Path) -> dict:
    src = tree / "build" / "pause" / "linux" / "pause.c"
    makefile = (tree / "build" / "pause" / "Makefile").read_text()
    m = re.search(r"^TAG\s*\??=\s*(\S+)", makefile, re.M)
    tag = m[1] if m else "3.4"
    binary = scratch / "pause"
    # The flags of build/pause/Makefile; REV would come from git, which a tarball lacks.
    run(["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{tag}-hakube",
         "-o", binary, src])
    run(["strip", binary])
    ref = sandbox_image(version_of(tree))
    digest = oci.write_archive(
        oci.Image(ref=ref, entrypoint=["/pause"],
                  files=[oci.File("pause", binary.read_bytes())]), dest)
    return {"ref": ref, "archive": dest.name, "digest": digest, "source": "build/pause/linux/pause.c"}


def version_of(tree: Path) -> str:
    return tree.name.split("-", 1)[1] if "-" in tree.name else KUBERNETES_VERSION


def sandbox_image(version: str) -> str:
    """The pause image name containerd is configured with for this Kubernetes version: one
    function (components.containerd.pause_image) names it for the lab and for the deploy."""
    major, minor = version.lstrip("v").split(".")[:2]
    return pause_image((int(major), int(minor)))


def _retag_pause(k: Kubernetes) -> None:
    """Upgrade a cache made when the pause image carried the Makefile's tag: the same
    program, written again under the name containerd expects. Seconds, not a rebuild."""
    want = sandbox_image(k.version)
    manifest = k.manifest
    pause = manifest["images"]["pause"]
    archive = k.images_dir / pause["archive"]
    binary = oci.read_file(archive, "pause")
    tmp = archive.with_name(archive.name + ".tmp")
    digest = oci.write_archive(oci.Image(ref=want, entrypoint=["/pause"], files=[oci.File("pause", binary)]), tmp)
    tmp.replace(archive)
    pause.update(ref=want, digest=digest)
    manifest["sandboxImage"] = want
    cache.write_json(k.images_dir / MANIFEST, manifest)


def _busybox_image(scratch: Path, dest: Path) -> dict:
    deb = debian.download_binary("busybox-static", scratch / "debs")
    deb_version = run(["dpkg-deb", "-f", deb, "Version"]).stdout.strip()
    unpacked = scratch / "busybox-static"
    run(["dpkg-deb", "-x", deb, unpacked])
    busybox = unpacked / "bin" / "busybox"
    # The applet list comes from the binary itself (it is static, so it runs here).
    applets = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    files = [oci.File(d, directory=True) for d in
             ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc",
              "sys", "dev", "var")]
    files.append(oci.File("bin/busybox", busybox.read_bytes()))
    files += [oci.File(a, symlink="/bin/busybox") for a in applets if a != "bin/busybox"]
    files += [oci.File("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644),
              oci.File("etc/group", b"root:x:0:\n", 0o644)]
    ref = f"{BUSYBOX_REPOSITORY}:{debian.upstream_version(deb_version)}"
    digest = oci.write_archive(oci.Image(ref=ref, cmd=["sh"], files=files), dest)
    return {"ref": ref, "archive": dest.name, "digest": digest,
            "source": f"Debian busybox-static {deb_version}"}
