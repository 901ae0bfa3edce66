"""Write the ssl.log and x509.log Zeek would write for a capture, derived by our own code.

Usage:
    python3 scripts/zeek/zeek_logs_from_capture.py CAPTURE [-o DIR] [--json]
        [--host-certs-only] [--log-certs-base64] [--no-subject-issuer] [--no-dedup]
        [--roots ROOTS.pem] [--port N ...]

TCP flows and their bytes come from the project's capture code
(``mtlsprobe.capture.transcripts.CaptureReader``: reassembly, encapsulations, HTTP CONNECT
stripped as Zeek's HTTP analyzer hands the tunnel on); TLS records and handshake
messages from ``mtlsprobe.tls``; what Zeek does with them is ``zeek_ssl.py`` and
``zeek_x509.py`` (each cites the Zeek source it follows). A flow that opens with a
cleartext protocol on a STARTTLS port (``--port`` adds more) is read from its first
ClientHello / server TLS record on, as Zeek's protocol analyzers hand STARTTLS over.

Columns: ssl.log is Zeek's default (``scripts/base/protocols/ssl/main.zeek``,
``files.zeek``) plus subject, issuer, client_subject, client_issuer (files.zeek, off by
default in Zeek: ``--no-subject-issuer`` leaves them out) and
requested_client_certificate_authorities (``policy/protocols/ssl/certificate-request-info.zeek``)
and, with ``--roots``, validation_status (``policy/protocols/ssl/validate-certs.zeek`` with
those roots as ``SSL::root_certs``; ``zeek_validate.py``).
x509.log is ``scripts/base/files/x509/main.zeek``: every certificate (leaf ``host_cert=T``,
chain ``F``), each (fingerprint, host_cert, client_cert) once per run like Zeek's
``X509::relog_known_certificates_after`` (``--no-dedup``: every time, as with 0secs);
``--host-certs-only`` is ``policy/protocols/ssl/log-hostcerts-only.zeek`` (which Zeek's
``site/local.zeek`` loads: base Zeek logs every certificate) and
``--log-certs-base64`` adds ``cert`` (``log-certs-base64.zeek``).

Not Zeek's: ``uid`` (ours: a hash of the capture name and the connection), and ``#open``
/``#close`` are the first and last packet times of its TCP connections (UTC), so a rerun writes the
same bytes. Zeek's ``ts`` is when the first TLS record was seen, so is ours.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from zeek_ssl import CertFile, ZeekSsl  # noqa: E402
from zeek_validate import validation_status  # noqa: E402

from mtlsprobe.capture.transcripts import CaptureReader, transcript  # noqa: E402
from mtlsprobe.model import Direction, Transcript  # noqa: E402

#: Ports where Zeek's protocol analyzers hand a STARTTLS (or SSL request) over to SSL:
#: FTP, SMTP, POP3, IMAP, LDAP, submission, MySQL, XMPP client and server, PostgreSQL.
STARTTLS_PORTS = frozenset({21, 25, 110, 143, 389, 587, 3306, 5222, 5269, 5432})
_CLIENT_HELLO = re.compile(rb"\x16\x03[\x00-\x04]..\x01", re.S)
_SERVER_TLS = re.compile(rb"\x16\x03[\x00-\x04]..\x02|\x15\x03[\x00-\x04]\x00\x02", re.S)

SSL_FIELDS = [
    ("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
    ("id.resp_h", "addr"), ("id.resp_p", "port"), ("version", "string"),
    ("cipher", "string"), ("curve", "string"), ("server_name", "string"),
    ("resumed", "bool"), ("last_alert", "string"), ("next_protocol", "string"),
    ("established", "bool"), ("ssl_history", "string"),
    ("cert_chain_fps", "vector[string]"), ("client_cert_chain_fps", "vector[string]"),
    ("subject", "string"), ("issuer", "string"), ("client_subject", "string"),
    ("client_issuer", "string"), ("sni_matches_cert", "bool"),
    ("validation_status", "string"),
    ("requested_client_certificate_authorities", "vector[string]"),
]
_SUBJECT_ISSUER = {"subject", "issuer", "client_subject", "client_issuer"}
X509_FIELDS = [
    ("ts", "time"), ("fingerprint", "string"), ("certificate.version", "count"),
    ("certificate.serial", "string"), ("certificate.subject", "string"),
    ("certificate.issuer", "string"), ("certificate.not_valid_before", "time"),
    ("certificate.not_valid_after", "time"), ("certificate.key_alg", "string"),
    ("certificate.sig_alg", "string"), ("certificate.key_type", "string"),
    ("certificate.key_length", "count"), ("certificate.exponent", "string"),
    ("certificate.curve", "string"), ("san.dns", "vector[string]"),
    ("san.uri", "vector[string]"), ("san.email", "vector[string]"),
    ("san.ip", "vector[addr]"), ("basic_constraints.ca", "bool"),
    ("basic_constraints.path_len", "count"), ("host_cert", "bool"), ("client_cert", "bool"),
]


@dataclass
class Options:
    subject_issuer: bool = True
    host_certs_only: bool = False
    certs_base64: bool = False
    dedup: bool = True
    ports: frozenset[int] = STARTTLS_PORTS
    roots: Path | None = None  # SSL::root_certs for validate-certs.zeek (None: no column)


@dataclass
class Flow:
    """One TCP connection: Zeek's conn id (originator = SYN sender) and its TLS bytes."""

    orig: tuple[str, int]
    resp: tuple[str, int]
    start: float
    last: float
    transcript: Transcript


class _FlowReader:
    """The project's capture reader, yielding each connection with its TCP addresses.
    (Composed, not subclassed: CaptureReader may be mypyc-compiled.)"""

    def __init__(self, path: str | Path, **options: Any) -> None:
        self.reader = CaptureReader(path, **options)

    def __iter__(self) -> Iterator[Flow]:
        name = self.reader.capture.name
        for conn in self.reader.connections():
            client, server, _how = conn.roles()
            t = transcript(conn, label=f"{name} flow {conn.index}", keylog=None)
            yield Flow(orig=client.addr, resp=server.addr, start=conn.start, last=conn.last,
                       transcript=t)


def _tls_start(data: bytes, pattern: re.Pattern[bytes]) -> int | None:
    """Where TLS starts in a stream: 0, or after a cleartext (STARTTLS) prelude."""
    if data[:1] in (b"\x16", b"\x15") and data[1:2] == b"\x03":
        return 0
    m = pattern.search(data)
    return m.start() if m else None


def run_flow(flow: Flow) -> ZeekSsl:
    """Replay one connection's bytes, in capture order, into Zeek's SSL logic."""
    t = flow.transcript
    zeek = ZeekSsl()
    streams = {d: b"".join(c.data for c in t.chunks if c.direction is d) for d in Direction}
    skip = {
        Direction.C2S: _tls_start(streams[Direction.C2S], _CLIENT_HELLO),
        Direction.S2C: _tls_start(streams[Direction.S2C], _SERVER_TLS),
    }
    if skip[Direction.C2S] is None:
        return zeek
    gaps = {d: sorted((g.offset, g.length) for g in t.gaps if g.direction is d)
            for d in Direction}
    pos = dict.fromkeys(Direction, 0)  # bytes seen per direction (until the first gap)
    base = t.started_at.timestamp()
    for chunk in t.chunks:
        d = chunk.direction
        at = base + chunk.at
        start = pos[d]
        pos[d] += len(chunk.data)
        if gaps[d] and gaps[d][0][0] <= start:
            zeek.gap(at)
            break
        cut = skip[d]
        if cut is None or pos[d] <= cut:
            continue
        zeek.feed(d is Direction.C2S, at, chunk.data[max(0, cut - start):])
        if zeek.stopped:
            break
    return zeek


def _uid(capture: str, flow: Flow) -> str:
    digest = hashlib.sha256(f"{capture}|{flow.orig}|{flow.resp}|{flow.start!r}".encode())
    n = int.from_bytes(digest.digest()[:12], "big")
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 62)
        out += alphabet[r]
    return "C" + out[:17]


def ssl_row(capture: str, flow: Flow, zeek: ZeekSsl, opts: Options) -> dict[str, Any]:
    info = zeek.info
    servers, clients = info.server_certs, info.client_certs
    leaf = servers[0].facts if servers else None
    cleaf = clients[0].facts if clients else None
    return {
        "ts": info.ts, "uid": _uid(capture, flow),
        "id.orig_h": flow.orig[0], "id.orig_p": flow.orig[1],
        "id.resp_h": flow.resp[0], "id.resp_p": flow.resp[1],
        "version": info.version, "cipher": info.cipher, "curve": info.curve,
        "server_name": info.server_name, "resumed": info.resumed,
        "last_alert": info.last_alert, "next_protocol": info.next_protocol,
        "established": info.established, "ssl_history": info.history,
        "cert_chain_fps": _fps(servers), "client_cert_chain_fps": _fps(clients),
        "subject": leaf.subject if leaf else None, "issuer": leaf.issuer if leaf else None,
        "client_subject": cleaf.subject if cleaf else None,
        "client_issuer": cleaf.issuer if cleaf else None,
        "sni_matches_cert": zeek.sni_matches_cert(),
        "validation_status": _validation(zeek, flow, opts),
        "requested_client_certificate_authorities": info.requested_cas,
    }


def _validation(zeek: ZeekSsl, flow: Flow, opts: Options) -> str | None:
    certs = zeek.info.server_certs
    if opts.roots is None or not certs or certs[0].facts is None:
        return None
    at = zeek.info.logged_at if zeek.info.logged_at is not None else flow.last
    return validation_status([c.der for c in certs], opts.roots, at)


def _fps(certs: list[CertFile] | None) -> list[str] | None:
    return None if certs is None else [c.fingerprint for c in certs]


def x509_row(cert: CertFile, opts: Options) -> dict[str, Any] | None:
    f = cert.facts
    if f is None:
        return None
    row: dict[str, Any] = {
        "ts": cert.ts, "fingerprint": cert.fingerprint, "certificate.version": f.version,
        "certificate.serial": f.serial, "certificate.subject": f.subject,
        "certificate.issuer": f.issuer, "certificate.not_valid_before": f.not_valid_before,
        "certificate.not_valid_after": f.not_valid_after, "certificate.key_alg": f.key_alg,
        "certificate.sig_alg": f.sig_alg, "certificate.key_type": f.key_type,
        "certificate.key_length": f.key_length, "certificate.exponent": f.exponent,
        "certificate.curve": f.curve, "san.dns": f.san_dns, "san.uri": f.san_uri,
        "san.email": f.san_email, "san.ip": f.san_ip, "basic_constraints.ca": f.ca,
        "basic_constraints.path_len": f.path_len, "host_cert": cert.host_cert,
        "client_cert": cert.client_cert,
    }
    if opts.certs_base64:
        row["cert"] = base64.b64encode(cert.der).decode()
    return row


@dataclass
class Logs:
    """Both logs of one capture: rows in the order Zeek writes them, and the time span."""

    ssl: list[dict[str, Any]]
    x509: list[dict[str, Any]]
    first: float
    last: float


def derive(path: str | Path, opts: Options | None = None) -> Logs:
    """The ssl.log and x509.log rows of every TLS connection in a capture."""
    opts = opts or Options()
    name = Path(path).name
    reader = _FlowReader(path, ports=set(opts.ports), max_bytes=None)
    rows: list[tuple[float, int, dict[str, Any]]] = []
    files: list[tuple[float, int, CertFile]] = []
    first, last = float("inf"), float("-inf")
    for n, flow in enumerate(reader):
        first, last = min(first, flow.start), max(last, flow.last)
        zeek = run_flow(flow)
        if zeek.info.ts is None:
            continue  # no SSL event: Zeek writes no row
        written = zeek.info.logged_at if zeek.info.logged_at is not None else flow.last
        rows.append((written, n, ssl_row(name, flow, zeek, opts)))
        files += [(c.ts, n * 1000 + i, c) for i, c in enumerate(zeek.files)]
    x509: list[dict[str, Any]] = []
    seen: set[tuple[str, bool, bool]] = set()
    for _, _, cert in sorted(files, key=lambda f: (f[0], f[1])):
        key = (cert.fingerprint, cert.host_cert, cert.client_cert)
        if (opts.dedup and key in seen) or (opts.host_certs_only and not cert.host_cert):
            continue
        seen.add(key)
        row = x509_row(cert, opts)
        if row is not None:
            x509.append(row)
    if first == float("inf"):
        first = last = 0.0
    ssl = [r for _, _, r in sorted(rows, key=lambda r: (r[0], r[1]))]
    return Logs(ssl=ssl, x509=x509, first=first, last=last)


# --- Zeek's ASCII and JSON writers (src/logging/writers/ascii/Ascii.cc) ------------


def _escape(text: str, in_set: bool) -> str:
    out = []
    for b in text.encode("utf-8", "surrogateescape"):
        ch = chr(b)
        if b == 0x5C:
            out.append("\\\\")
        elif b < 0x20 or b >= 0x7F or (in_set and ch == ","):
            out.append(f"\\x{b:02x}")
        else:
            out.append(ch)
    s = "".join(out)
    return "\\x2d" if s == "-" else s


def _tsv_value(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "bool":
        return "T" if value else "F"
    if kind == "time":
        return f"{value:.6f}"
    if kind.startswith("vector"):
        return ",".join(_escape(str(v), True) for v in value) if value else "(empty)"
    if kind == "string":
        return _escape(value, False) if value != "" else "(empty)"
    return str(value)


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")


def tsv(path: str, fields: list[tuple[str, str]], rows: list[dict[str, Any]],
        opened: float, closed: float) -> str:
    lines = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)",
             "#unset_field\t-", f"#path\t{path}", f"#open\t{_stamp(opened)}",
             "#fields\t" + "\t".join(n for n, _ in fields),
             "#types\t" + "\t".join(k for _, k in fields)]
    lines += ["\t".join(_tsv_value(r.get(n), k) for n, k in fields) for r in rows]
    lines.append(f"#close\t{_stamp(closed)}")
    return "\n".join(lines) + "\n"


def json_lines(fields: list[tuple[str, str]], rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        obj = {n: round(r[n], 6) if k == "time" else r[n]  # pcap times are microseconds
               for n, k in fields if r.get(n) is not None}
        out.append(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))
    return "".join(line + "\n" for line in out)


def fields_for(opts: Options) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    ssl = [f for f in SSL_FIELDS if (opts.subject_issuer or f[0] not in _SUBJECT_ISSUER)
           and (opts.roots is not None or f[0] != "validation_status")]
    x509 = X509_FIELDS + ([("cert", "string")] if opts.certs_base64 else [])
    return ssl, x509


def write(logs: Logs, out: Path, opts: Options, *, as_json: bool = False) -> list[Path]:
    """Write ssl.log and x509.log (``x509.log`` only when there is a certificate, as
    Zeek creates a log file at its first row); the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    ssl_fields, x509_fields = fields_for(opts)
    written = []
    for name, fields, rows in (("ssl", ssl_fields, logs.ssl), ("x509", x509_fields, logs.x509)):
        if not rows:
            continue
        text = json_lines(fields, rows) if as_json else tsv(name, fields, rows, logs.first,
                                                             logs.last)
        path = out / f"{name}.log"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("capture", help="pcap or pcapng file")
    p.add_argument("-o", "--out", default=".", help="folder for ssl.log and x509.log")
    p.add_argument("--json", action="store_true", help="JSON lines (LogAscii::use_json)")
    p.add_argument("--no-subject-issuer", action="store_true",
                   help="leave out subject/issuer/client_subject/client_issuer (Zeek default)")
    p.add_argument("--host-certs-only", action="store_true",
                   help="x509.log: leaf certificates only (log-hostcerts-only.zeek)")
    p.add_argument("--log-certs-base64", action="store_true",
                   help="x509.log: add the cert column (log-certs-base64.zeek)")
    p.add_argument("--no-dedup", action="store_true",
                   help="x509.log: log a certificate every time it is seen")
    p.add_argument("--roots", type=Path, help="PEM root store: add validation_status "
                   "(validate-certs.zeek with these as SSL::root_certs)")
    p.add_argument("--port", type=int, action="append", default=[],
                   help="another port where TLS may follow a cleartext prelude")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    opts = Options(subject_issuer=not a.no_subject_issuer, host_certs_only=a.host_certs_only,
                   certs_base64=a.log_certs_base64, dedup=not a.no_dedup,
                   ports=STARTTLS_PORTS | frozenset(a.port), roots=a.roots)
    for path in write(derive(a.capture, opts), Path(a.out), opts, as_json=a.json):
        print(path)
    return 0


def iter_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """The ssl.log rows of a capture (for tests)."""
    yield from derive(path).ssl


if __name__ == "__main__":
    sys.exit(main())
