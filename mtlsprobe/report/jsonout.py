"""The one serialiser: model values -> JSON-ready values -> deterministic text.

dataclass -> dict in field order; Enum -> value; datetime -> RFC 3339 UTC with 'Z';
bytes (certificate ``der``) -> base64; tuples -> lists. Key logs and private keys are
refused, never written: a report may be attached to a ticket.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import re
import typing
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import PurePath

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from mtlsprobe.report.escape import json_text

# Every private key type cryptography has (PrivateKeyTypes is their union; taking it from the
# types module avoids importing the FFDH module, which newer releases mark deprecated).
_PRIVATE_KEYS = tuple(t for t in typing.get_args(PrivateKeyTypes) if isinstance(t, type))
_NEVER_FIELDS = frozenset({"keylog", "private_key", "password"})  # CertInfo.key is a description
# A PEM private key, or what looks like a key log line (NSS format: a label, then the
# client random and the secret in hex). The label alone is no secret: a note may say that
# a key log lacks one ("key log has no CLIENT_RANDOM secret ...").
_SECRET = re.compile(
    r"PRIVATE KEY-----"
    r"|\b(?:CLIENT_RANDOM|\w*_SECRET\w*)\s+[0-9A-Fa-f]{4,}\s+[0-9A-Fa-f]{4,}"
)


class SecretError(ValueError):
    """Something secret was about to be serialised."""


def rfc3339(when: datetime) -> str:
    """UTC with a 'Z'; naive datetimes are taken as UTC. Fractions only when present."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    when = when.astimezone(timezone.utc)
    # not strftime: its %Y writes the year 999 (a certificate may say so) as "999", which
    # no RFC 3339 reader (ours included) takes back
    text = when.replace(tzinfo=None).isoformat(timespec="seconds")
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    return text + "Z"


def _text(value: str) -> str:
    if _SECRET.search(value):
        raise SecretError("refusing to serialise key material")
    return value


def to_jsonable(obj: object) -> object:
    """A JSON-ready copy of `obj`. Raises SecretError for key material, TypeError otherwise."""
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, str):
        return _text(obj)
    if isinstance(obj, datetime):
        return rfc3339(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, _PRIVATE_KEYS):
        raise SecretError("refusing to serialise a private key")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, object] = {}
        for f in dataclasses.fields(obj):
            if f.name in _NEVER_FIELDS:
                continue  # e.g. Transcript.keylog: never leaves memory
            out[f.name] = to_jsonable(getattr(obj, f.name))
        return out
    if isinstance(obj, Mapping):
        return {_text(str(k)): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_jsonable(v) for v in obj), key=json.dumps)
    if isinstance(obj, PurePath):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def dumps(report: object) -> str:
    """Deterministic JSON text (indent 2, field order kept, UTF-8 characters as is)."""
    return json_text(json.dumps(to_jsonable(report), indent=2, ensure_ascii=False))
