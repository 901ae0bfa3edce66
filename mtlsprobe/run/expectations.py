"""Load what 'the real server' looks like from operator input: --ca, --pin, --baseline.

The edge between files and the pure Expectations value: every failure is one InputError line.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from pathlib import Path

from mtlsprobe.live.files import read_limited
from mtlsprobe.model import BaselinePort, CertInfo, Expectations
from mtlsprobe.model.certs import CertError, cert_info, load_certificates, to_der
from mtlsprobe.model.errors import InputError

_PIN = re.compile(r"^sha256/([A-Za-z0-9+/]{43}=)$")


def read_bytes(path: Path, what: str) -> bytes:
    return read_limited(path, "baseline" if what == "baseline" else "certificate")


def load_roots(paths: Iterable[Path]) -> tuple[CertInfo, ...]:
    """Certificates from PEM bundles or DER files given with --ca."""
    roots: list[CertInfo] = []
    for path in paths:
        try:
            certs = load_certificates(read_bytes(path, "CA file"))
        except CertError as exc:
            raise InputError(f"--ca {path}: {exc}") from None
        roots.extend(cert_info(to_der(c)) for c in certs)
    return tuple(roots)


def check_pins(pins: Iterable[str]) -> tuple[str, ...]:
    """Pins as ``sha256/BASE64``; curl's ``sha256//BASE64`` form and its ``;``-separated
    lists are accepted too (``--pin`` may repeat)."""
    out = []
    for given in pins:
        for part in given.split(";"):
            pin = part.strip()
            # curl's form has one slash more; a base64 value may itself start with "/"
            if pin.startswith("sha256//") and len(pin) == len("sha256//") + 44:
                pin = "sha256/" + pin[len("sha256//"):]
            out.append(_check_pin(pin, given))
    return tuple(out)


def _check_pin(pin: str, given: str) -> str:
    m = _PIN.match(pin.strip())
    if not m:
        raise InputError(f"--pin {given!r}: expected sha256/ (or curl's sha256//) followed "
                         "by 44 base64 characters")
    try:
        if len(base64.b64decode(m.group(1), validate=True)) != 32:
            raise ValueError
    except (binascii.Error, ValueError):
        raise InputError(f"--pin {given!r}: not a base64 SHA-256 digest") from None
    return pin.strip()


def load_baseline_file(path: Path) -> tuple[BaselinePort, ...]:
    """A report saved by `mtlsprobe probe --save-baseline` on the server's own LAN."""
    from mtlsprobe.run.baseline import load_baseline

    try:
        data = json.loads(read_bytes(path, "baseline").decode("utf-8"))
    except ValueError as exc:  # undecodable bytes, bad JSON, an integer too long to convert
        raise InputError(f"--baseline {path}: not a JSON report ({exc})") from None
    except RecursionError:  # arrays or objects nested a thousand deep: not our report
        raise InputError(f"--baseline {path}: not a JSON report (nested too deeply)") from None
    try:
        ports = load_baseline(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"--baseline {path}: not an mtlsprobe report ({exc})") from None
    if not ports:
        raise InputError(f"--baseline {path}: the report holds no completed handshake")
    return ports


def build(
    *,
    ca: Iterable[Path] = (),
    pins: Iterable[str] = (),
    baseline: Path | None = None,
    agent_chain: tuple[CertInfo, ...] = (),
) -> Expectations:
    return Expectations(
        roots=load_roots(ca),
        pins=check_pins(pins),
        baseline=load_baseline_file(baseline) if baseline else (),
        agent_cert=agent_chain[0] if agent_chain else None,
        agent_chain=agent_chain,
    )
