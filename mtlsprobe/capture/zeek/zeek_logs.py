"""Zeek log files -> Observations: every x509.log indexed first, then ssl.log rows streamed.

Boundary: which Zeek log a file is (by its header, never its name: rotation names such as
``ssl.2026-12-01-00-00-00.log.gz`` are as good as ``ssl.log``), the order they are read in,
and the notes about them. Parsing the format is ``zeek_format``'s job, the x509 index
``zeek_x509``'s, the mapping of a row ``zeek_observations``'.

An ssl.log without an ``ssl_history`` column (Zeek older than 4.1) or without the connection's
addresses and ports is refused with one ``InputError`` line: without the history no
CertificateRequest or client Certificate can be told. A Zeek log of another kind (conn.log,
files.log, ...) is skipped with a note.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from mtlsprobe.capture.zeek.zeek_format import Header, Row, ZeekReader, open_binary
from mtlsprobe.capture.zeek.zeek_observations import REQUIRED, RowMapper
from mtlsprobe.capture.zeek.zeek_x509 import X509Index
from mtlsprobe.model import Observation
from mtlsprobe.model.errors import InputError

SSL_MARKS = ("ssl_history", "cert_chain_fps", "established")
X509_MARKS = ("fingerprint", "certificate.subject")
POLICY_HINT = (
    "load policy/protocols/ssl/log-certs-base64 (without log-hostcerts-only) for x509.log "
    "to carry the certificates"
)


def log_path(head: bytes, kind: str) -> str:
    """"ssl", "x509" or another Zeek path name ("" when it cannot be told) from a log's head."""
    if kind == "json":
        first = head.split(b"\n", 1)[0]
        try:
            keys = set(json.loads(first))
        except ValueError:
            keys = {k.decode("utf-8", "replace") for k in _json_keys(first)}
        return _by_fields(keys)
    path, fields = "", set()
    for line in head.split(b"\n"):
        if line.startswith(b"#path"):
            path = line[5:].strip().decode("utf-8", "replace")
        elif line.startswith(b"#fields"):
            fields = {f.decode("utf-8", "replace") for f in line.split()[1:]}
    return path or _by_fields(fields)


def _json_keys(line: bytes) -> list[bytes]:
    return [part.rsplit(b'"', 1)[-1] for part in line.split(b'":')[:-1]]


def _by_fields(fields: set[str]) -> str:
    if any(m in fields for m in X509_MARKS):
        return "x509"
    if any(m in fields for m in SSL_MARKS) or {"id.orig_h", "version"} <= fields:
        return "ssl"
    return "other" if fields else ""


def _name(path: str) -> str:
    return "stdin" if path == "-" else Path(path).name


def _check_ssl(reader: ZeekReader, header: Header) -> None:
    fields = set(header.fields)
    if "ssl_history" not in fields and "id.orig_h" in fields:
        raise InputError(
            f"{reader.name}: this ssl.log has no ssl_history column (Zeek older than 4.1): "
            "without it no CertificateRequest or client certificate can be told; analyze logs "
            "of Zeek 4.1 or newer"
        )
    missing = [f for f in REQUIRED if f not in fields]
    if missing:
        raise InputError(f"{reader.name}: not an ssl.log Zeek could have written: no "
                         f"{', '.join(missing)} column(s)")


def _check_x509(reader: ZeekReader, header: Header) -> None:
    if "fingerprint" not in header.fields:
        raise InputError(f"{reader.name}: not an x509.log: no fingerprint column")


class ZeekLogs:
    """Stream the Observations of Zeek logs; ``notes`` holds what the report should say.

    ``sources``: (path, "tsv" | "json", log path) triples, as ``run.zeek_inputs`` sorted
    them out by content (``"-"``: standard input). Iterate once: every x509.log is indexed
    before the first ssl.log row is mapped.
    """

    def __init__(self, sources: Sequence[tuple[str, str, str]]) -> None:
        self.sources = list(sources)
        self.notes: list[str] = []
        self.index = X509Index()
        self.names: list[str] = [str(p) for p, _, _ in self.sources]
        self.rows = 0
        self.requests_without_ca_list = 0  # CertificateRequests seen, CA list not logged

    def __iter__(self) -> Iterator[Observation]:
        for path, kind, which in self.sources:
            if which == "x509":
                for row in self._rows(path, kind, _check_x509):
                    self.index.add(row)
        for path, kind, which in self.sources:
            if which == "ssl":
                yield from self._ssl(path, kind)
            elif which != "x509":
                self.notes.append(f"skipped {path}: a Zeek {which or 'unknown'} log, "
                                  "not an ssl.log or x509.log")
        self.notes.extend(self.index.notes())
        self.notes.extend(self._setting_notes())

    def _rows(self, path: str, kind: str,
              check: Callable[[ZeekReader, Header], None]) -> Iterator[Row]:
        try:
            stream = open_binary(path)
        except OSError as exc:
            raise InputError(f"cannot open Zeek log {path}: {exc.strerror or exc}") from None
        reader = ZeekReader(_name(path), stream, kind, on_header=check)
        try:
            yield from reader
        finally:
            if path != "-":
                stream.close()
            self.notes.extend(reader.notes)

    def _ssl(self, path: str, kind: str) -> Iterator[Observation]:
        name = _name(path)
        mapper = RowMapper(name, self.index)
        count = 0
        reader_rows = self._rows(path, kind, _check_ssl)
        for row in reader_rows:
            count += 1
            obs = mapper.observation(row, count)
            self.requests_without_ca_list += not obs.cert_request.authorities_seen
            yield obs
        self.rows += count
        if mapper.unreadable_ts:
            self.notes.append(
                f"{name}: {mapper.unreadable_ts:,} row(s) with an unreadable ts were "
                "judged as of 1970-01-01 (certificate validity and age mean nothing for them)")
        self.notes.append(f"{name}: {count:,} ssl.log row(s)")

    def _setting_notes(self) -> list[str]:
        """What the Zeek logs could not say for want of a policy script."""
        out = []
        if self.rows and not self.index.certs:
            out.append("no x509.log given (or it held no rows): chains are known by fingerprint "
                       "only, so --ca matches only a root the server sent itself; give the "
                       "x509.log files of the same days")
        if self.requests_without_ca_list:
            out.append(f"{self.requests_without_ca_list:,} CertificateRequest(s) without their "
                       "CA names: load policy/protocols/ssl/certificate-request-info in Zeek to "
                       "log them (requested_client_certificate_authorities)")
        return out
