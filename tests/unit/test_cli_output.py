"""`hakube render -o` and `hakube init -o`: written whole or refused clearly, never half.

Every refusal is exit code 1 with a message that says what, where and how to fix it, and
leaves the file system as it was (no partial output, no temporary files beside it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hakube.components.base import File
from hakube.errors import HakubeError
from hakube.render import MARKER, Rendered, publish

from .conftest import FIXTURES

SPEC = str(FIXTURES / "specs" / "ha3.yaml")


def hakube(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, in tmp_path, with its state directory there too."""
    env = {**os.environ, "HAKUBE_HOME": str(tmp_path / ".home")}
    env.pop("HAKUBE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "hakube.cli", *args], capture_output=True, text=True,
                          cwd=tmp_path, env=env)


def refused(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 1, r.stdout + r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def listing(folder: Path) -> list[str]:
    """Everything in `folder` (recursively, symbolic links not followed), the state dir aside."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".home" not in p.parts)


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create anything in (root may write anywhere but /sys)."""
    if os.geteuid() == 0:
        if not Path("/sys").is_dir():
            pytest.skip("needs /sys to find a folder root cannot write to")
        return Path("/sys")
    ro = tmp_path / "read-only"
    ro.mkdir(mode=0o555)
    return ro


# ---- hakube render -o -----------------------------------------------------------------------------


def test_render_writes_a_new_folder_with_its_marker(tmp_path: Path) -> None:
    r = hakube(tmp_path, "render", SPEC, "-o", "out")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    assert (out / MARKER).is_file()
    assert (out / "server-1/etc/haproxy/haproxy.cfg").is_file()
    assert [p for p in listing(tmp_path) if "hakube-tmp" in p or "hakube-old" in p] == []


def test_render_replaces_an_earlier_render_entirely(tmp_path: Path) -> None:
    assert hakube(tmp_path, "render", SPEC, "-o", "out").returncode == 0
    out = tmp_path / "out"
    first = tree(out)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    (out / "server-1/stale.conf").write_text("from an older render\n")
    (out / "server-1/etc/haproxy/haproxy.cfg").unlink()
    (out / "server-1/etc/haproxy/haproxy.cfg").symlink_to(outside)  # a link where a file goes
    (out / "agent-9").mkdir()
    r = hakube(tmp_path, "render", SPEC, "-o", "out")
    assert r.returncode == 0, r.stderr
    assert tree(out) == first  # stale files gone, the link replaced by the real file
    assert not (out / "server-1/etc/haproxy/haproxy.cfg").is_symlink()
    assert outside.read_text() == "keep me\n"  # never written through the link
    assert sorted(os.listdir(tmp_path)) == [".home", "out", "precious.txt"]


def test_render_accepts_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert hakube(tmp_path, "render", SPEC, "-o", "out").returncode == 0
    assert (tmp_path / "out" / MARKER).is_file()


def test_render_refuses_a_folder_hakube_did_not_write(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    refused(hakube(tmp_path, "render", SPEC, "-o", "mine"), "mine holds files that hakube render did not write",
            "notes.txt", "fix:")
    assert listing(tmp_path) == ["mine", "mine/notes.txt"]


def test_render_refuses_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file\n")
    refused(hakube(tmp_path, "render", SPEC, "-o", "out"), "out exists and is not a folder", "fix:")
    assert listing(tmp_path) == ["out"] and (tmp_path / "out").read_text() == "a file\n"


def test_render_refuses_a_path_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file\n")
    refused(hakube(tmp_path, "render", SPEC, "-o", "file/out"), "is a file, not a folder", "fix:")
    assert listing(tmp_path) == ["file"]


def test_render_refuses_a_missing_parent_folder(tmp_path: Path) -> None:
    refused(hakube(tmp_path, "render", SPEC, "-o", "missing/dir/out"),
            f"the folder {tmp_path}/missing/dir does not exist", "mkdir -p")
    assert listing(tmp_path) == []


def test_render_refuses_a_symbolic_link_and_never_follows_it(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    refused(hakube(tmp_path, "render", SPEC, "-o", "link"), "link is a symbolic link", "does not follow links")
    assert listing(tmp_path) == ["link", "real"]


def test_render_refuses_an_unwritable_place(tmp_path: Path) -> None:
    where = unwritable(tmp_path)
    before = sorted(os.listdir(where))
    refused(hakube(tmp_path, "render", SPEC, "-o", str(where / "out")), f"cannot render into {where}/out",
            "fix:")
    assert sorted(os.listdir(where)) == before


def test_render_of_a_value_the_templates_refuse_writes_nothing(tmp_path: Path) -> None:
    # A space in the VIP interface: refused by the spec's validation or, failing that, by
    # keepalived.conf's template. Either way: one clear error and no files.
    text = Path(SPEC).read_text()
    assert "  controlPlane:\n" in text
    (tmp_path / "cluster.yaml").write_text(
        text.replace("  controlPlane:\n", '  controlPlane:\n    vip:\n      interface: "eth0 }"\n', 1))
    r = hakube(tmp_path, "render", "cluster.yaml", "-o", "out")
    refused(r, "eth0 }")
    assert listing(tmp_path) == ["cluster.yaml"]


def rendered_with(files: list[File]) -> Rendered:
    return Rendered(hosts={"server-1": files}, cluster=[File("manifests/a.yaml", "a: 1\n")])


def test_a_failure_while_writing_leaves_nothing_behind(tmp_path: Path) -> None:
    good = [File(f"/etc/hakube/f{i}.conf", f"{i}\n") for i in range(23)]
    bad = rendered_with(good + [File("/etc/" + "x" * 300, "a name longer than a file system allows\n")])
    with pytest.raises(HakubeError, match="cannot render into .*nothing was written"):
        publish(bad, tmp_path / "out")
    assert os.listdir(tmp_path) == []

    # Over an earlier render, the earlier render stays as it was.
    publish(rendered_with(good), tmp_path / "out")
    before = tree(tmp_path / "out")
    with pytest.raises(HakubeError, match="nothing was written"):
        publish(bad, tmp_path / "out")
    assert tree(tmp_path / "out") == before
    assert os.listdir(tmp_path) == ["out"]


def test_a_host_name_cannot_write_outside_the_folder(tmp_path: Path) -> None:
    evil = Rendered(hosts={"../escaped": [File("/etc/x.conf", "x\n")]}, cluster=[])
    with pytest.raises(HakubeError, match="must not hold"):
        publish(evil, tmp_path / "out")
    assert os.listdir(tmp_path) == []


# ---- hakube init -o -------------------------------------------------------------------------------


def test_init_writes_a_new_file_with_ordinary_permissions(tmp_path: Path) -> None:
    r = hakube(tmp_path, "init", "-o", "cluster.yaml")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cluster.yaml").stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert listing(tmp_path) == ["cluster.yaml"]  # no temporary file beside it
    assert hakube(tmp_path, "validate", "cluster.yaml").returncode == 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_init_refuses_a_missing_folder(tmp_path: Path) -> None:
    refused(hakube(tmp_path, "init", "-o", "missing/dir/cluster.yaml"),
            f"the folder {tmp_path}/missing/dir does not exist", "mkdir -p")
    assert listing(tmp_path) == []


def test_init_refuses_an_existing_file_unless_forced(tmp_path: Path) -> None:
    target = tmp_path / "cluster.yaml"
    target.write_text("mine\n")
    refused(hakube(tmp_path, "init", "-o", "cluster.yaml"), "cluster.yaml already exists", "--force")
    assert target.read_text() == "mine\n"
    r = hakube(tmp_path, "init", "-o", "cluster.yaml", "--force")
    assert r.returncode == 0, r.stderr
    assert "apiVersion: hakube.dev/v1alpha1" in target.read_text()
    assert listing(tmp_path) == ["cluster.yaml"]


def test_init_refuses_a_folder_and_a_path_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    refused(hakube(tmp_path, "init", "-o", "dir", "--force"), "dir is a folder", "dir/cluster.yaml")
    (tmp_path / "file").write_text("x\n")
    refused(hakube(tmp_path, "init", "-o", "file/cluster.yaml"), "is a file, not a folder")
    assert listing(tmp_path) == ["dir", "file"] and (tmp_path / "file").read_text() == "x\n"


def test_init_never_writes_through_a_symbolic_link(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.yaml"
    target.write_text("keep me\n")
    (tmp_path / "cluster.yaml").symlink_to(target.name)
    refused(hakube(tmp_path, "init", "-o", "cluster.yaml"), "already exists")
    assert hakube(tmp_path, "init", "-o", "cluster.yaml", "--force").returncode == 0
    assert not (tmp_path / "cluster.yaml").is_symlink()  # the link is replaced, not followed
    assert target.read_text() == "keep me\n"
    # A dangling link is an existing name too: not written through either.
    (tmp_path / "dangling.yaml").symlink_to("nowhere.yaml")
    refused(hakube(tmp_path, "init", "-o", "dangling.yaml"), "already exists")
    assert not (tmp_path / "nowhere.yaml").exists()


def test_init_refuses_an_unwritable_place(tmp_path: Path) -> None:
    where = unwritable(tmp_path)
    before = sorted(os.listdir(where))
    refused(hakube(tmp_path, "init", "-o", str(where / "cluster.yaml")), f"cannot write {where}/cluster.yaml",
            "fix:")
    assert sorted(os.listdir(where)) == before


def test_render_refuses_to_replace_the_current_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert hakube(tmp_path, "render", SPEC, "-o", "out").returncode == 0
    r = subprocess.run([sys.executable, "-m", "hakube.cli", "render", SPEC, "-o", "."], capture_output=True,
                       text=True, cwd=tmp_path / "out", env={**os.environ, "HAKUBE_HOME": str(tmp_path / ".home")})
    refused(r, "it is the current folder")
    assert (tmp_path / "out" / MARKER).is_file()


def test_certs_renew_refuses_a_window_it_cannot_read_and_options_without_renew(tmp_path: Path) -> None:
    for bad in ("ninety", "0d", "900d"):
        refused(hakube(tmp_path, "certs", SPEC, "--renew", "--within", bad), f"--within '{bad}'",
                "give a number of days from 1 to 825")
    refused(hakube(tmp_path, "certs", SPEC, "--within", "90d"), "go with --renew")
    assert not (tmp_path / ".home").exists() or not any((tmp_path / ".home").rglob("*.crt"))
