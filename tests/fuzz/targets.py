"""The fuzz targets: one per parser of what others control, bytes in, a property checked.

A target returns normally or raises an operator error its parser documents (``InputError``
for a file that is not what it claims to be: ``model.errors``); any other exception is a
bug, and so is an ``AssertionError`` from a property that does not hold (output bounded by
the input, a round trip where a writer exists). Each target draws its structure from the
bytes itself (``Draw``), so the same targets run under hypothesis (``tests/fuzz``: the
normal suite, a small fixed budget) and under atheris or a long hypothesis run
(``scripts/fuzz``). ``SEEDS`` gives each target valid inputs to start mutating from.

Adding a parser: a ``def name(data: bytes) -> None`` here that feeds the bytes to it and
checks what comes out, an entry in ``TARGETS`` (and in ``SEEDS`` when valid inputs help), a
test beside this file that runs it with ``fuzzing.budget``, and its line in
``scripts/fuzz``'s ``TESTS`` (``zeek_log`` is the latest).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from mtlsprobe.capture import linklayer
from mtlsprobe.capture.observations import ObservationReader
from mtlsprobe.capture.pcapfile import MAX_BLOCK, MAX_FRAME, CaptureFile
from mtlsprobe.capture.pcapng_writer import PcapngWriter
from mtlsprobe.capture.tcp import TcpReassembler
from mtlsprobe.cli.main import error_line
from mtlsprobe.model import Chunk, Direction, Observation, Transcript
from mtlsprobe.model.errors import InputError
from mtlsprobe.report.fleet.aggregate import FleetAggregator
from mtlsprobe.report.fleet.records import Foreign, InputStats, rows_of
from mtlsprobe.report.fleet.render import render
from mtlsprobe.report.jsonin import from_jsonable
from mtlsprobe.run import expectations
from mtlsprobe.run.report_files import read_documents
from mtlsprobe.tls import handshake_messages as hm
from mtlsprobe.tls.dn import name_to_string
from mtlsprobe.tls.fingerprint import ja3, ja4
from mtlsprobe.tls.handshake_framing import HandshakeAssembler
from mtlsprobe.tls.hellos import parse_client_hello, parse_server_hello
from mtlsprobe.tls.keylog import KNOWN_LABELS, KeyLog, merge_keylogs
from mtlsprobe.tls.observer import observe
from mtlsprobe.tls.reader import DecodeError
from mtlsprobe.tls.records import MAX_RECORD_LEN, RecordSplitter

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "pcaps"
MAX_NOTES = 64  # a capture's notes, whatever it holds (each goes into the report)


class Draw:
    """Structure drawn from fuzz bytes, front to back; zeros once the bytes run out."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def more(self) -> bool:
        return self.pos < len(self.data)

    def int(self, size: int) -> int:
        raw = self.data[self.pos : self.pos + size]
        self.pos += size
        return int.from_bytes(raw.ljust(size, b"\0"), "big")

    def bytes(self, size: int) -> bytes:
        raw = self.data[self.pos : self.pos + size]
        self.pos += size
        return raw

    def rest(self) -> bytes:
        raw, self.pos = self.data[self.pos :], len(self.data)
        return raw


# --- captures ------------------------------------------------------------------------


def pcap_file(data: bytes) -> None:
    """The container reader alone: frames out, never more bytes than came in."""
    try:
        capture = CaptureFile(io.BytesIO(data))
    except InputError:
        return
    total = frames = 0
    for ts, linktype, frame in capture:
        assert isinstance(ts, float) and 0 <= linktype < 1 << 32
        assert len(frame) <= max(MAX_FRAME, MAX_BLOCK)
        total += len(frame)
        frames += 1
    if data[:2] != b"\x1f\x8b":
        assert total <= len(data)
        assert len(capture.keylog_text) <= len(data) + frames + 1
    assert len(capture.notes) <= MAX_NOTES, capture.notes[:3]


def pcapng_round_trip(data: bytes) -> None:
    """What ``PcapngWriter`` writes (interfaces, packets, comments, key logs), the reader
    gives back: the same frames, link types, microseconds, comments and key log."""
    draw = Draw(data)
    out = io.BytesIO()
    writer = PcapngWriter(out, comment=draw.bytes(draw.int(1) % 8).decode("latin-1") or None)
    linktypes = [draw.int(2) for _ in range(1 + draw.int(1) % 3)]
    for linktype in linktypes:
        writer.add_interface(linktype, name=draw.bytes(draw.int(1) % 6).hex() or None)
    packets, secrets = [], ""
    while draw.more():
        if draw.int(1) % 7 == 0:
            text = draw.bytes(draw.int(1) % 80).decode("ascii", "replace").replace("\ufffd", "?")
            writer.add_secrets(text)
            secrets += text if text.endswith("\n") else text + "\n"
            continue
        iface = draw.int(1) % len(linktypes)
        micros = draw.int(6)
        frame = draw.bytes(draw.int(2) % 2000)
        comment = draw.bytes(draw.int(1) % 5).decode("latin-1") or None
        writer.add_packet(iface, micros / 1e6, frame, comment=comment,
                          outbound=(None, True, False)[draw.int(1) % 3])
        packets.append((micros, linktypes[iface], frame, comment))
    read = []
    with CaptureFile(io.BytesIO(out.getvalue())) as f:
        for ts, linktype, frame in f:
            read.append((round(ts * 1e6), linktype, frame, f.comment))
        assert f.notes == [] and f.keylog_text == secrets
    assert read == packets


def capture(data: bytes) -> None:
    """The whole capture path (reader, link layers, flows, TLS observer): observations."""
    try:
        reader = ObservationReader(io.BytesIO(data))
    except InputError:
        return
    observations = list(reader)
    assert all(isinstance(o, Observation) for o in observations)
    assert len(observations) <= max(1, len(data) // 40)  # one per TCP connection at most
    assert len(reader.notes) <= MAX_NOTES, reader.notes[:3]


def analyze(data: bytes) -> None:
    """The whole of ``analyze`` on a capture file: reading, rules, every renderer."""
    from mtlsprobe.report import jsonl, jsonout, markdown, table
    from mtlsprobe.run import pipeline
    from mtlsprobe.run.analyze import analyze as run_analyze

    path = Path(_BASELINE_DIR) / "capture.pcap"
    path.write_bytes(data)
    try:
        run = run_analyze([path], expectations.build(), jobs=1)
    except InputError:
        return
    report = pipeline.make_report("analyze", run.results, {}, run.notes)
    json.loads(jsonout.dumps(report))
    shown = table.render_table(report) + markdown.render_markdown(report)
    assert not _CONTROL & set(shown), sorted(_CONTROL & set(shown))
    jsonl.render_jsonl(report)
    assert len(run.notes) <= 2 * MAX_NOTES


def link_layer(data: bytes) -> None:
    """One frame of any link type we read: a TCP segment inside it, or None and a reason."""
    draw = Draw(data)
    kinds = (linklayer.ETHERNET, linklayer.SLL, linklayer.SLL2, linklayer.RAW, linklayer.NULL,
             linklayer.LOOP, linklayer.RAW4, linklayer.RAW6, 147)
    linktype = kinds[draw.int(1) % len(kinds)]
    frame = draw.rest()
    skipped: dict[str, int] = {}
    seg = linklayer.decode(linktype, frame, skipped)
    if seg is None:
        assert sum(skipped.values()) == 1
        linklayer.not_decoded_note(skipped)
        return
    assert not skipped
    assert 0 <= seg.sport < 65536 and 0 <= seg.dport < 65536 and 0 <= seg.ttl < 256
    assert len(seg.payload) + len(seg.options) <= len(frame)
    assert seg.payload in frame
    seg.option_summary  # noqa: B018 - parsed on use


def tcp_reassembly(data: bytes) -> None:
    """Segments, acknowledgements and the end of stream in any order: the bytes delivered
    and the gaps tile the stream from 0, within the cap, each byte delivered once."""
    draw = Draw(data)
    cap = (64, 300, None)[draw.int(1) % 3]
    r = TcpReassembler(cap)
    base = draw.int(4)
    delivered: list[bytes] = []
    while draw.more():
        op = draw.int(1)
        seq = (base + draw.int(2) - 200) & 0xFFFFFFFF
        if op % 8 == 0:
            r.syn(seq)
        elif op % 8 == 1:
            delivered += r.acked(seq)
        elif op % 8 == 2:
            delivered += r.flush()
        else:
            payload = draw.bytes(draw.int(1) % 64)
            delivered += r.segment(seq, payload, fin=op % 8 == 3)
    delivered += r.flush()
    stored = sum(map(len, delivered))
    assert stored == r.stored
    assert stored + sum(n for _, n in r.gaps) == r.next_offset
    assert cap is None or r.next_offset <= cap
    assert list(r.gaps) == sorted(r.gaps) and all(n > 0 for _, n in r.gaps)
    assert r.retransmissions >= 0 and r.conflicting_bytes >= 0


# --- TLS -------------------------------------------------------------------------------


def tls_records(data: bytes) -> None:
    """The record layer, fed in pieces: records no longer than TLS allows."""
    draw = Draw(data)
    splitter = RecordSplitter()
    try:
        while draw.more():
            for record in splitter.feed(draw.bytes(1 + draw.int(1))):
                assert len(record.payload) <= MAX_RECORD_LEN
    except DecodeError:
        return


PARSERS: tuple[Callable[[bytes], object], ...] = (
    parse_client_hello, parse_server_hello, hm.parse_encrypted_extensions,
    functools.partial(hm.parse_certificate, tls13=True),
    functools.partial(hm.parse_certificate, tls13=False),
    functools.partial(hm.parse_certificate_request, tls13=True),
    functools.partial(hm.parse_certificate_request, tls13=False),
    functools.partial(hm.parse_new_session_ticket, tls13=True),
    functools.partial(hm.parse_new_session_ticket, tls13=False),
    hm.parse_alerts, hm.parse_key_update, hm.parse_finished, hm.parse_hello_request,
    name_to_string,
)


def tls_messages(data: bytes) -> None:
    """Each handshake message parser (and DN names): a value or a DecodeError."""
    draw = Draw(data)
    parse = PARSERS[draw.int(1) % len(PARSERS)]
    body = draw.rest()
    try:
        value = parse(body)
    except DecodeError:
        return
    if parse is parse_client_hello:
        ja3(value)  # type: ignore[arg-type]
        ja4(value)  # type: ignore[arg-type]


@functools.cache
def _template(with_keys: bool, version: str = "TLSv1.3") -> Transcript:
    import tlsgen  # tests/: a real handshake in memory

    return tlsgen.run(version=version, client_cert="good", keylog=with_keys)


def transcript_bytes(t: Transcript, tls12: bool = False) -> bytes:
    """A transcript's chunks as ``tls_observer`` reads them (for seeds)."""
    out = bytearray([bool(t.keylog) | tls12 << 1])
    for c in t.chunks:
        out += bytes([c.direction is Direction.S2C]) + len(c.data).to_bytes(2, "big") + c.data
    return bytes(out)


def tls_observer(data: bytes) -> None:
    """The sans-IO core on any bytes both ways, with or without a key log that fits the
    seeds' ClientHello (TLS 1.3 or 1.2): an Observation, never an exception."""
    draw = Draw(data)
    flags = draw.int(1)
    template = _template(bool(flags & 1), "TLSv1.2" if flags & 2 else "TLSv1.3")
    chunks = []
    while draw.more():
        c2s = not draw.int(1) & 1
        chunks.append(Chunk(direction=Direction.C2S if c2s else Direction.S2C, at=0.0,
                            data=draw.bytes(draw.int(2))))
    obs = observe(Transcript(label=template.label, client=template.client,
                             server=template.server, route=template.route,
                             started_at=template.started_at, chunks=tuple(chunks),
                             keylog=template.keylog))
    assert isinstance(obs, Observation)
    assert len(obs.notes) <= 64


def keylog(data: bytes) -> None:
    """Key log text: lines read or counted as skipped, and what was read written back
    and merged reads the same."""
    text = data.decode("utf-8", "replace")
    log = KeyLog.parse(text)
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(log) + log.skipped_lines <= len(lines)
    written = "".join(f"{label} {random.hex()} {secret.hex()}\n"
                      for random, secrets in log.entries.items()
                      for label, secret in secrets.items())
    again = KeyLog.parse(written)
    assert again.entries == log.entries and again.skipped_lines == 0
    half = len(written) // 2
    cut = written.rfind("\n", 0, half) + 1
    merged = merge_keylogs(KeyLog.parse(written[:cut]), KeyLog.parse(written[cut:]))
    assert merged is not None and merged.entries == log.entries
    assert all(label in KNOWN_LABELS for s in log.entries.values() for label in s)


# --- reports ---------------------------------------------------------------------------


def _json(data: bytes) -> object:
    try:
        return json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None


#: values an agent (or whoever controls it) may put anywhere in a report
HOSTILE: tuple[object, ...] = (
    None, True, 0, -1, 65536, 2**70, float("inf"), float("nan"), 1.5, "", "x" * 3000,
    "\x1b]0;owned\x07\u202e<script>*x*</script>|`[a](b)`", [], {}, [[[[]]]], {"a": {"b": {}}},
    "2026-01-01T00:00:00Z", "not a date", "inspected", {"schema_version": 1},
)
MUTATED = 0xF0  # a first byte from here on: the seed report, mutated by its structure
_DEEP = "\0deep"  # stands for arrays nested 3,000 deep (json.dumps cannot write them)


def _nodes(value: object, limit: int = 4000) -> list[tuple[object, object]]:
    """(container, key or index) of the values inside ``value``, breadth first."""
    out: list[tuple[object, object]] = []
    queue = [value]
    while queue and len(out) < limit:
        item = queue.pop(0)
        keys = list(item) if isinstance(item, dict) else range(len(item)) if isinstance(
            item, list) else ()
        for k in keys:
            out.append((item, k))
            queue.append(item[k])  # type: ignore[index]
    return out


def report_bytes(data: bytes, seed: object) -> bytes:
    """``data`` as is; or, when it starts at ``MUTATED``, ``seed`` (a JSON value) with values
    replaced by hostile ones (``HOSTILE``), one or more levels deep, keys deleted, nested
    past any limit: the bytes choose where and what."""
    if not data or data[0] < MUTATED:
        return data
    draw = Draw(data[1:])
    value = json.loads(json.dumps(seed))
    while draw.more():
        nodes = _nodes(value)
        if not nodes:
            break
        container, key = nodes[draw.int(2) % len(nodes)]
        op = draw.int(1)
        if op % 8 == 0 and isinstance(container, dict):
            del container[key]
        elif op % 8 == 1:
            container[key] = _DEEP  # type: ignore[index]
        else:
            # a copy: the same list put in twice would nest in itself (a cycle)
            container[key] = copy.deepcopy(HOSTILE[op % len(HOSTILE)])  # type: ignore[index]
    text = json.dumps(value, indent=2 if data[0] & 1 else None)
    return text.replace(json.dumps(_DEEP), "[" * 3000 + "]" * 3000).encode()


def report_observation(data: bytes) -> None:
    """A saved report's observation read back (``report.jsonin``): a value, or the
    TypeError/ValueError its callers turn into one line."""
    value = _json(report_bytes(data, _observation()))
    try:
        obs = from_jsonable(Observation, value)
    except (TypeError, ValueError):
        return
    assert isinstance(obs, Observation)


_BASELINE_DIR = tempfile.mkdtemp(prefix="mtlsprobe-fuzz-")


def baseline(data: bytes) -> None:
    """``--baseline FILE``: baseline ports, or one InputError line."""
    path = Path(_BASELINE_DIR) / "baseline.json"
    path.write_bytes(report_bytes(data, _report()))
    try:
        ports = expectations.load_baseline_file(path)
    except InputError as exc:
        line = error_line(exc)  # what the operator sees
        assert len(line) < 1100 and not _CONTROL & set(line)
        return
    assert ports


NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
_CONTROL = {*map(chr, range(32)), *map(chr, range(0x7F, 0xA0)), "\u202e", "\u2066"} - {"\n"}


def summarize(data: bytes) -> None:
    """``summarize``'s reading of an agent's report file (JSON, JSON Lines, pretty
    documents, gzip) and every rendering of the roll-up: nothing fatal, what is read
    counted, no control character shown raw."""
    path = Path(_BASELINE_DIR) / "reports.json"
    data = report_bytes(data, _report())
    path.write_bytes(data)
    stats = InputStats()
    agg = FleetAggregator()
    for where, doc in read_documents([str(path)], stats):
        try:
            agg.add_all(list(rows_of(doc)))
        except Foreign as exc:
            stats.foreign_document(where, str(exc))
    assert stats.streams == 1 and stats.malformed + stats.foreign <= len(data)
    assert all("\n" not in line for line in stats.unreadable)
    if not len(agg):
        return
    summary = agg.summary(NOW, 7.0, None, stats)
    for fmt in ("table", "markdown", "csv", "json"):
        out = render(summary, fmt)
        assert len(out) <= 40 * len(data) + 20_000, (fmt, len(out), len(data))
        if fmt != "json":
            shown = set(out.replace("\r\n", "\n"))
            assert not _CONTROL & shown, (fmt, sorted(_CONTROL & shown))


def zeek_log(data: bytes) -> None:
    """``analyze`` of a Zeek ssl.log (TSV, JSON lines or anything else named ssl.log): one
    InputError line, or results with bounded notes and no control character shown raw."""
    from mtlsprobe.report import markdown, table
    from mtlsprobe.run import pipeline
    from mtlsprobe.run.analyze import analyze as run_analyze

    path = Path(_BASELINE_DIR) / "ssl.log"
    path.write_bytes(data)
    try:
        run = run_analyze([path], expectations.build(), jobs=1)
    except InputError as exc:
        line = error_line(exc)
        assert len(line) < 1100 and not _CONTROL & set(line)
        return
    report = pipeline.make_report("analyze", run.results, {}, run.notes)
    shown = table.render_table(report) + markdown.render_markdown(report)
    assert not _CONTROL & set(shown), sorted(_CONTROL & set(shown))
    assert len(run.results) <= max(1, data.count(b"\n") + 1)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "pcap_file": pcap_file,
    "pcapng_round_trip": pcapng_round_trip,
    "capture": capture,
    "analyze": analyze,
    "link_layer": link_layer,
    "tcp_reassembly": tcp_reassembly,
    "tls_records": tls_records,
    "tls_messages": tls_messages,
    "tls_observer": tls_observer,
    "keylog": keylog,
    "report_observation": report_observation,
    "baseline": baseline,
    "summarize": summarize,
    "zeek_log": zeek_log,
}


# --- seeds -----------------------------------------------------------------------------


def _fixture_captures() -> list[Path]:
    return sorted(p for p in FIXTURES.rglob("*") if p.suffix in (".pcap", ".pcapng"))


@functools.cache
def _frames() -> list[bytes]:
    """Frames of each kind the fixtures hold, with their link type's index prefixed, and
    one of them in each encapsulation tests/pcapgen.py builds (scapy), nested too."""
    kinds = {linklayer.ETHERNET: 0, linklayer.SLL: 1, linklayer.SLL2: 2, linklayer.RAW: 3,
             linklayer.NULL: 4, linklayer.LOOP: 5}
    out = []
    for path in _fixture_captures()[:4]:
        with CaptureFile(path) as f:
            for _, linktype, frame in f:
                if linktype in kinds and len(out) < 40:
                    out.append(bytes([kinds[linktype]]) + frame)
    import pcapgen  # tests/

    packet = next(f[15:] for f in out if f[0] == 0 and f[13:15] == b"\x08\x00" and len(f) > 80)
    for link in (*pcapgen.ENCAPSULATIONS, "mpls/vlan/vxlan", "vlan88a8/vlan/erspan3o",
                 "vxlan6/geneve-ip", "cmd/mplsmc/grekcs", "geneve/vlan/mpls"):
        out.append(b"\x00" + pcapgen.encapsulate(packet, link))
    return out


@functools.cache
def _report() -> dict[str, object]:
    """A full v1 report of a real capture, as JSON (what summarize and --baseline read)."""
    from mtlsprobe.report import jsonout
    from mtlsprobe.run import pipeline
    from mtlsprobe.run.analyze import analyze

    path = FIXTURES / "untrusted-cert-rejected.pcapng"
    run = analyze([path], expectations.build(), jobs=1)
    report = pipeline.make_report("analyze", run.results, {}, run.notes)
    value = json.loads(jsonout.dumps(report))
    assert isinstance(value, dict)
    return value


def _messages() -> list[bytes]:
    """The plaintext handshake messages of a TLS 1.2 handshake, each prefixed with the
    index of its parser; and a CA name."""
    by_type = {1: 0, 2: 1, 11: 4, 13: 6}
    out = []
    for direction in Direction:
        assembler = HandshakeAssembler()
        splitter = RecordSplitter()
        for c in _template(False, "TLSv1.2").chunks:
            if c.direction is direction:
                for record in splitter.feed(c.data):
                    if record.content_type == 22:
                        with contextlib.suppress(DecodeError):
                            for msg in assembler.feed(record.payload):
                                if msg.msg_type in by_type:
                                    out.append(bytes([by_type[msg.msg_type]]) + msg.body)
    return out


def _observation() -> object:
    results = _report()["results"]
    assert isinstance(results, list)
    return results[0]["observations"][0]


def _seeds(name: str) -> list[bytes]:
    if name in ("pcap_file", "capture", "analyze"):
        return [p.read_bytes() for p in _fixture_captures()[:6]]
    if name == "link_layer":
        return _frames()
    if name == "tls_observer":
        return [transcript_bytes(_template(keys, version), version == "TLSv1.2")
                for keys in (True, False) for version in ("TLSv1.3", "TLSv1.2")]
    if name == "tls_records":
        stream = b"".join(c.data for c in _template(False, "TLSv1.2").chunks
                          if c.direction is Direction.S2C)
        return [b"".join(bytes([len(p) - 1]) + p for p in
                         (stream[i : i + 256] for i in range(0, len(stream), 256)))]
    if name == "tls_messages":
        return _messages()
    if name == "zeek_log":
        logs = sorted((ROOT / "fixtures" / "zeek-logs").glob("*/ssl.log"))[:4]
        tsv = [p.read_bytes() for p in logs]
        return [*tsv, b"".join(_json_lines(t) for t in tsv[:1])]
    if name == "keylog":
        text = _template(True).keylog or ""
        return [text.encode()]
    if name in ("report_observation", "baseline", "summarize"):
        report = _report()
        if name == "report_observation":
            results = report["results"]
            assert isinstance(results, list)
            return [*(json.dumps(o).encode() for o in results[0]["observations"][:2]),
                    bytes([MUTATED]) + bytes(range(0, 256, 11))]
        return [json.dumps(report, indent=2).encode(), json.dumps(report).encode(),
                bytes([MUTATED]) + bytes(range(0, 256, 7)), bytes([MUTATED + 1, 0, 3, 1])]
    return [b""]


def _json_lines(tsv: bytes) -> bytes:
    """A Zeek TSV log as JSON lines (what Zeek writes with LogAscii::use_json)."""
    lines = tsv.decode().splitlines()
    fields = next(line.split("\t")[1:] for line in lines if line.startswith("#fields"))
    rows = [dict(zip(fields, line.split("\t"), strict=False))
            for line in lines if line and not line.startswith("#")]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


SEEDS: dict[str, Callable[[], list[bytes]]] = {
    name: functools.partial(_seeds, name) for name in TARGETS
}
