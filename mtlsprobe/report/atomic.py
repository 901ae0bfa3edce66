"""Write a file so readers see the old one or the whole new one, never half (and nothing
is left behind on failure). The one place the tool writes reports and captures."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mtlsprobe.model.errors import InputError


def write_atomic(path: Path | str, data: str | bytes, *, mode: int | None = None) -> None:
    """Write `data` to `path` via a temporary file in the same folder and a rename.

    `mode` (e.g. 0o600 for captures holding key logs) is set before the file appears.
    Raises InputError with one line when the folder cannot be written.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
