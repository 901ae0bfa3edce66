"""Read an operator-named file with a bound: never more than a sane size, never forever.

Every file option (certificates, keys, passwords, --ca, --targets, --baseline, key logs,
secrets, site maps) goes through :func:`read_limited`. A regular file larger than the
limit is refused before it is read; anything else (a pipe from ``<(...)``, a device) is
read until the limit, and a source that stays silent for ``IDLE_TIMEOUT`` seconds is
given up on. ``/dev/zero`` is "larger than N", not a killed process.
"""

from __future__ import annotations

import errno
import os
import select
import stat
from pathlib import Path

from mtlsprobe.model.errors import InputError

KiB, MiB = 1024, 1024 * 1024
#: Sane maxima per kind of input (bytes).
LIMITS = {
    "certificate": 4 * MiB,  # a PEM bundle of a few hundred CAs
    "key": 1 * MiB,
    "password": 64 * KiB,
    "secret": 64 * KiB,
    "targets": 16 * MiB,
    "baseline": 256 * MiB,
    "key log": 256 * MiB,  # ~10x the key log of 22,000 handshakes
    "site map": 64 * MiB,
    "configuration": 16 * MiB,
}
IDLE_TIMEOUT = 10.0
_CHUNK = 1 * MiB


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB and n % MiB == 0 else f"{n // KiB} KiB"


def read_limited(path: Path | str, what: str, limit: int | None = None) -> bytes:
    """The bytes of `path` (at most LIMITS[what]); one InputError line for any problem."""
    limit = LIMITS[what] if limit is None else limit
    too_big = InputError(f"{path}: not a {what} file (larger than {_size(limit)})")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InputError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"cannot read {what} file {path}: it is a directory")
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            raise too_big
        data = bytearray()
        while len(data) <= limit:
            if not stat.S_ISREG(st.st_mode) and hasattr(select, "select"):
                ready, _, _ = select.select([fd], [], [], IDLE_TIMEOUT)
                if not ready:
                    raise InputError(f"cannot read {what} file {path}: nothing arrived in "
                                     f"{IDLE_TIMEOUT:g} s")
            try:
                chunk = os.read(fd, min(_CHUNK, limit + 1 - len(data)))
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise InputError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
            if not chunk:
                return bytes(data)
            data += chunk
        raise too_big
    finally:
        os.close(fd)


def decode_text(data: bytes, what: str, path: Path | str) -> str:
    """Text of a file written anywhere: a UTF-8 or UTF-16 byte-order mark (Windows editors,
    PowerShell's Out-File) is honoured; without one, UTF-8. CRLF is left to splitlines."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{what} file {path} is not UTF-8 or UTF-16 text") from None


def read_text_limited(path: Path | str, what: str, limit: int | None = None) -> str:
    """:func:`read_limited`, decoded by :func:`decode_text`."""
    return decode_text(read_limited(path, what, limit), what, path)
