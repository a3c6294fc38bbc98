"""Render every file every host receives, plus the cluster-level manifests.

Each component renders its own files; this module only asks each of them, in a fixed
order, and checks that no two components claim the same path on one host.

`publish` writes a render to a folder (`hakube render -o DIR`) all at once or not at all:
into a new folder beside DIR, moved into place by rename when complete.

Example:
    >>> rendered = render(derive(cluster), secrets)
    >>> [f.path for f in rendered.hosts["server-1"]][:2]
    ['/etc/etcd/etcd.conf.yml', '/etc/systemd/system/etcd.service']
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .components import COMPONENTS
from .components.base import File, RenderContext, UnsafeValue
from .errors import HakubeError
from .secrets import Secrets
from .topology import Topology

COMPONENTS_PACKAGE = "hakube.components"
CLUSTER_DIR = "_cluster"  # where cluster-level files go in `hakube render -o DIR`
# In every folder `publish` writes: the sign that a later render may replace the folder.
MARKER = ".hakube-render"
MARKER_TEXT = ("This folder was written by `hakube render`. A new render replaces it entirely:\n"
               "do not keep other files here.\n")


@dataclass(frozen=True)
class Rendered:
    hosts: dict[str, list[File]]  # host name -> files, sorted by path
    cluster: list[File]  # manifests and templates applied once per cluster
    # host name -> component module name -> its files (the deploy converges per component)
    by_component: dict[str, dict[str, list[File]]] = field(default_factory=dict, compare=False)

    def component_files(self, host: str, component: str) -> list[File]:
        """The files component `component` (its package name: "etcd") renders for `host`."""
        return self.by_component.get(host, {}).get(f"{COMPONENTS_PACKAGE}.{component}", [])

    def write(self, out: Path) -> list[Path]:
        """Write DIR/<host>/<absolute path> and DIR/_cluster/<path>; returns what was written.

        `out` should be a new or empty folder (`publish` gives it one): every file is
        created, never opened through an existing name, so no symbolic link is followed.
        """
        written = []
        items = [(h, f) for h, files in self.hosts.items() for f in files]
        items += [(CLUSTER_DIR, f) for f in self.cluster]
        for where, f in items:
            dest = out / _relative(where, f.path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, f.mode)
            with open(fd, "w") as fh:
                fh.write(f.content)
            os.chmod(dest, f.mode, follow_symlinks=False)
            written.append(dest)
        return written


def _relative(where: str, path: str) -> Path:
    """<host>/<path> inside the output folder; nothing that could point outside it."""
    parts = [where, *path.lstrip("/").split("/")]
    if any(p in ("", ".", "..") or "\0" in p or "/" in p for p in parts):
        raise HakubeError(f"cannot write {where}:{path} inside the output folder: "
                          "a host name and a file path must not hold '/', '.' or '..' as a part")
    return Path(*parts)


def render(topo: Topology, secrets: Secrets) -> Rendered:
    """Every file of every host and of the cluster: the one render path (`hakube render`,
    `hakube up` and its add-ons), with its check that no two components claim one path."""
    ctx = RenderContext(topo=topo, secrets=secrets)
    hosts: dict[str, list[File]] = {}
    by_component: dict[str, dict[str, list[File]]] = {}
    for h in topo.hosts:
        files: dict[str, File] = {}
        for comp in COMPONENTS:
            mine = _files(comp, f"host {h.name if h.name.isprintable() else repr(h.name)}", comp.host_files, ctx, h)
            by_component.setdefault(h.name, {})[comp.__name__] = mine
            for f in mine:
                if f.path in files:
                    raise RuntimeError(f"{comp.__name__} and another component both render {f.path} on {h.name}")
                files[f.path] = f
        hosts[h.name] = [files[p] for p in sorted(files)]
    cluster: dict[str, File] = {}
    for comp in COMPONENTS:
        for f in _files(comp, "the cluster", getattr(comp, "cluster_files", lambda _ctx: []), ctx):
            if f.path in cluster:
                raise RuntimeError(f"{comp.__name__} renders cluster file {f.path} twice")
            cluster[f.path] = f
    return Rendered(hosts=hosts, cluster=[cluster[p] for p in sorted(cluster)], by_component=by_component)


def _files(comp, whose: str, fn, *args) -> list[File]:
    try:
        return fn(*args)
    except UnsafeValue as e:
        name = comp.__name__.rsplit(".", 1)[-1].replace("_", "-")
        raise HakubeError(f"cannot render the {name} files of {whose}: {e} (fix: correct that value in "
                          "the cluster spec; `hakube validate` names its field)") from None


# ---- writing a render to a folder, all or nothing --------------------------------------------


def check_output(out: Path) -> Path:
    """Where `publish` may write: the absolute path of `out`, or HakubeError saying why not.

    `out` may be missing, an empty folder, or a folder an earlier `publish` wrote (it has
    MARKER): that one is replaced. Anything else is refused: a file, a symbolic link (to
    a folder or not: never followed), a folder with other files, a missing parent folder.
    """
    target = Path(os.path.abspath(out))
    if target.parent == target:
        raise HakubeError(f"cannot render into {out}: give a folder below it, such as {target / 'rendered'}")
    parent = target.parent
    cwd = Path(os.getcwd())
    if cwd == target or target in cwd.parents:
        raise HakubeError(f"cannot render into {out}: it is the current folder or holds it, and a render "
                          "replaces its whole folder (fix: give a folder beside or below it, such as -o rendered)")
    try:
        st = os.lstat(target)
    except (FileNotFoundError, NotADirectoryError):  # the parent check says which
        st = None
    except OSError as e:
        raise HakubeError(f"cannot render into {out}: {e.strerror}") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise HakubeError(f"{out} is a symbolic link; hakube render does not follow links "
                              f"(fix: give the folder it points to, or another path)")
        if not stat.S_ISDIR(st.st_mode):
            raise HakubeError(f"{out} exists and is not a folder (fix: give a folder path, or remove {out})")
        entries = os.listdir(target)
        if entries and not _is_render(target):
            raise HakubeError(f"{out} holds files that hakube render did not write ({_few(entries)}); "
                              f"a render replaces its whole folder, so it refuses this one "
                              f"(fix: give a new or empty folder, or remove {out})")
    if parent.exists() and not parent.is_dir():
        raise HakubeError(f"cannot render into {out}: {parent} is a file, not a folder "
                          "(fix: give another path)")
    if not parent.is_dir():
        raise HakubeError(f"cannot render into {out}: the folder {parent} does not exist "
                          f"(fix: create it first, `mkdir -p {parent}`, or give another path)")
    return target


def _is_render(folder: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(folder / MARKER).st_mode)
    except OSError:
        return False


def _few(names: list[str]) -> str:
    names = sorted(names)
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def publish(rendered: Rendered, out: Path) -> list[Path]:
    """Write `rendered` to the folder `out`, replacing an earlier render there entirely.

    The files go to a new folder beside `out`, which is renamed to `out` once complete:
    on any failure nothing is left behind and `out` is as it was. Returns the files
    written (under `out`). Raises HakubeError with what, where and a fix.
    """
    target = check_output(out)
    parent = target.parent
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".hakube-tmp", dir=parent))
    except OSError as e:
        raise HakubeError(f"cannot render into {out}: cannot create a folder in {parent}: {e.strerror} "
                          "(fix: give a folder you can write to)") from None
    old = None
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a render holds no secrets of its own
        written = rendered.write(tmp)
        (tmp / MARKER).write_text(MARKER_TEXT)
        if os.path.lexists(target):
            check_output(out)  # still empty or an earlier render (not swapped meanwhile)
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".hakube-old", dir=parent))
            os.rename(target, old / "render")
            try:
                os.rename(tmp, target)
            except OSError:
                os.rename(old / "render", target)  # put the earlier render back
                raise
        else:
            os.rename(tmp, target)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.lexists(old / "render"):  # the earlier render is back
            shutil.rmtree(old, ignore_errors=True)
        name = str(e.filename or "")
        where = f" ({target}{name[len(str(tmp)):]})" if name.startswith(str(tmp)) else f" ({name})" if name else ""
        kept = (f"; the earlier render is in {old / 'render'}"
                if old is not None and os.path.lexists(old / "render") else "")
        raise HakubeError(f"cannot render into {out}: {e.strerror}{where}; nothing was written{kept}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)  # the earlier render; never follows its links
    return [target / p.relative_to(tmp) for p in written]
