"""Writing single-layer OCI image archives by hand, without a registry or a daemon.

The lab's images (pause, busybox) are one static binary or two: a layer tarball, a config
and a manifest are all an image is. Writing them here keeps the build free of podman's
image store and makes the archives reproducible (fixed mtimes, sorted entries), so the
same inputs give the same digests.

The archive carries both name annotations: `org.opencontainers.image.ref.name` (the OCI
standard) and `io.containerd.image.name` (what `ctr images import` uses to name it).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

# Fixed timestamp for every entry: the archives depend only on their contents.
_EPOCH = 0


@dataclass(frozen=True)
class File:
    """One entry of the image's filesystem."""

    path: str  # inside the image, without leading '/'
    data: bytes = b""
    mode: int = 0o755
    symlink: str | None = None  # target, when this entry is a symlink
    directory: bool = False


@dataclass(frozen=True)
class Image:
    ref: str  # e.g. registry.k8s.io/pause:3.4
    files: list[File]
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=lambda: [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])


def _tar_bytes(add) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar)
    return buf.getvalue()


def _layer(files: list[File]) -> bytes:
    def add(tar: tarfile.TarFile) -> None:
        for f in sorted(files, key=lambda f: f.path):
            info = tarfile.TarInfo(f.path)
            info.mtime = _EPOCH
            info.mode = f.mode
            if f.directory:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif f.symlink is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = f.symlink
                tar.addfile(info)
            else:
                info.size = len(f.data)
                tar.addfile(info, io.BytesIO(f.data))

    return _tar_bytes(add)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_archive(image: Image, dest: Path) -> str:
    """Write `image` as an OCI archive (tar of an OCI layout) to `dest`; return its digest.

    The returned digest is the manifest's, which is what containerd shows for the image.
    """
    layer = _layer(image.files)
    layer_gz = gzip.compress(layer, mtime=_EPOCH)
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": image.env, "Entrypoint": image.entrypoint or None,
                   "Cmd": image.cmd or None},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        "history": [{"created_by": "hakube.lab.oci"}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _digest(layer_gz), "size": len(layer_gz)}],
    }, sort_keys=True).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": _digest(manifest), "size": len(manifest),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": image.ref,
                            "io.containerd.image.name": image.ref},
        }],
    }, sort_keys=True).encode()

    blobs = {_digest(b): b for b in (layer_gz, config, manifest)}

    def add(tar: tarfile.TarFile) -> None:
        def put(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), _EPOCH, mode
            tar.addfile(info, io.BytesIO(data))

        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mtime, info.mode = tarfile.DIRTYPE, _EPOCH, 0o755
            tar.addfile(info)
        put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        put("index.json", index)
        for digest, data in sorted(blobs.items()):
            put(f"blobs/sha256/{digest.split(':', 1)[1]}", data)

    dest.write_bytes(_tar_bytes(add))
    return _digest(manifest)


def read_file(archive: Path, name: str) -> bytes:
    """The content of file `name` in the (single) layer of an archive written above."""
    with tarfile.open(archive) as outer:
        index = json.load(outer.extractfile("index.json"))  # type: ignore[arg-type]
        manifest_digest = index["manifests"][0]["digest"].split(":", 1)[1]
        manifest = json.load(outer.extractfile(f"blobs/sha256/{manifest_digest}"))  # type: ignore[arg-type]
        for layer in manifest["layers"]:
            blob = outer.extractfile(f"blobs/sha256/{layer['digest'].split(':', 1)[1]}").read()  # type: ignore[union-attr]
            data = gzip.decompress(blob) if layer["mediaType"].endswith("gzip") else blob
            with tarfile.open(fileobj=io.BytesIO(data)) as inner:
                for member in inner.getmembers():
                    if member.name.lstrip("./") == name:
                        return inner.extractfile(member).read()  # type: ignore[union-attr]
    raise KeyError(f"{name} is not in {archive}")
