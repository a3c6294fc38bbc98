"""Files hakube writes on this machine for the user (`hakube init`): whole or not at all.

A file is written to a temporary name in the same folder and then linked (new file) or
renamed (`--force`) into place, so a failure never leaves a half-written file, and a
file that appeared meanwhile is not overwritten by accident. Every refusal is a
HakubeError that says what is wrong, where, and how to fix it.

Example:
    >>> check_new_file(Path("cluster.yaml"), overwrite=False)   # raises if it exists
    >>> write_new_file(Path("cluster.yaml"), text, overwrite=False)
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from .errors import HakubeError

_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def _exists(output: Path) -> HakubeError:
    return HakubeError(f"{output} already exists; pass --force to overwrite it or -o to pick another path")


def check_new_file(output: Path, overwrite: bool) -> None:
    """Refuse a path that `write_new_file` must not write; returns when it may."""
    try:
        st = os.lstat(output)
    except (FileNotFoundError, NotADirectoryError):  # the parent check says which
        st = None
    except OSError as e:
        raise HakubeError(f"cannot write {output}: {e.strerror}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise HakubeError(f"{output} is a folder (fix: give a file path, such as -o {output / 'cluster.yaml'})")
        if not overwrite:
            raise _exists(output)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise HakubeError(f"{output} exists and is not a regular file (fix: pick another path with -o)")
    parent = Path(os.path.abspath(output)).parent
    if parent.exists() and not parent.is_dir():
        raise HakubeError(f"cannot write {output}: {parent} is a file, not a folder "
                          "(fix: pick another path with -o)")
    if not parent.is_dir():
        raise HakubeError(f"cannot write {output}: the folder {parent} does not exist "
                          f"(fix: create it first, `mkdir -p {parent}`, or pick another path with -o)")


def write_new_file(output: Path, text: str, overwrite: bool) -> None:
    """Write `output` whole or not at all (mode 0666 minus the umask, as any new file).

    Without `overwrite` an existing file is kept (the link fails even if it appeared after
    the check); with it, an existing file or symbolic link is replaced (a link itself, its
    target is never written).
    """
    check_new_file(output, overwrite)
    parent = Path(os.path.abspath(output)).parent
    umask = os.umask(0)
    os.umask(umask)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".hakube-tmp", dir=parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~umask)
        if overwrite:
            os.replace(tmp, output)
        else:
            try:
                os.link(tmp, output)
                os.unlink(tmp)
            except FileExistsError:
                raise _exists(output) from None
            except OSError as e:
                if e.errno not in _NO_HARD_LINKS or os.path.lexists(output):
                    raise
                os.rename(tmp, output)  # a file system without hard links
        tmp = None
    except OSError as e:
        raise HakubeError(f"cannot write {output}: {e.strerror} "
                          "(fix: pick a folder you can write to with -o)") from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
