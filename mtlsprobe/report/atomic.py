"""Write a report or capture where the operator asked, the way the operator expects.

- A regular file (or a new one) is replaced atomically: readers see the old file or the
  whole new one, and nothing is left behind on failure. An existing file keeps its mode (and,
  as root with CAP_CHOWN, its owner); a new one gets the umask's mode, or `mode` when given
  (0600 for captures holding key logs).
- A symlink is followed: the file it points to is replaced, the link stays.
- A character device, FIFO or socket (``-o /dev/stdout``, a named pipe) is written straight
  into, never replaced by a regular file.
- A path that cannot be used (a missing folder, no permission, a directory) is bad input
  (InputError, exit 3); a write that fails on the way (disk full, I/O error, a read-only
  file system, a closed pipe) is the environment (EnvironmentProblem, exit 4).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from mtlsprobe.model.errors import EnvironmentProblem, InputError, MtlsprobeError

#: Temporary files being written (removed by an interrupted process before it exits).
_TEMPORARIES: set[str] = set()
_ENVIRONMENT = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EPIPE, errno.EFBIG}


def _error(path: Path, exc: OSError) -> MtlsprobeError:
    text = f"cannot write {path}: {exc.strerror or exc}"
    return EnvironmentProblem(text) if exc.errno in _ENVIRONMENT else InputError(text)


def _umask_mode() -> int:
    """0o666 less the umask (read from /proc where it can be, so no thread sees umask 0)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: Path | str, data: str | bytes, *, mode: int | None = None) -> None:
    """Write `data` to `path` (see the module docstring for what each kind of path gets).

    Raises InputError or EnvironmentProblem with one line; never leaves a temporary file.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        target = path.resolve() if path.is_symlink() else path
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:  # no search permission on a folder on the way, a loop, ...
        raise _error(path, exc) from None
    except RuntimeError:  # a symlink loop, before Python 3.13
        raise InputError(f"cannot write {path}: symbolic link loop") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise InputError(f"cannot write {path}: it is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        _write_through(path, target, payload)
        return
    _replace(path, target, payload, mode, st)


def _write_through(path: Path, target: Path, payload: bytes) -> None:
    """Write into a device or FIFO as a shell redirection would."""
    try:
        with open(target, "wb", buffering=0) as fh:
            view = memoryview(payload)
            while view:
                view = view[fh.write(view) or 0:]
    except OSError as exc:
        raise _error(path, exc) from None


def _replace(path: Path, target: Path, payload: bytes, mode: int | None,
             st: os.stat_result | None) -> None:
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    except OSError as exc:
        raise _error(path, exc) from None
    _TEMPORARIES.add(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        if st is not None:
            os.chmod(tmp, stat.S_IMODE(st.st_mode) if mode is None else mode)
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                with contextlib.suppress(PermissionError):  # root without CAP_CHOWN
                    os.chown(tmp, st.st_uid, st.st_gid)
        else:
            os.chmod(tmp, _umask_mode() if mode is None else mode)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _error(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _TEMPORARIES.discard(tmp)


def remove_temporaries() -> None:
    """Remove half-written temporary files (the targets themselves are untouched)."""
    for tmp in list(_TEMPORARIES):
        Path(tmp).unlink(missing_ok=True)
        _TEMPORARIES.discard(tmp)
