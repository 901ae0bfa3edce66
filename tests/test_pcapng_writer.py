"""The pcapng writer, read back by our own CaptureFile and by tshark, DSB included."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP

from mtlsprobe.capture.pcapfile import CaptureFile
from mtlsprobe.capture.pcapng_writer import LINKTYPE_RAW, PcapngWriter
from mtlsprobe.capture.transcripts import CaptureReader

KEYLOG = "CLIENT_RANDOM " + "ab" * 32 + " " + "cd" * 48 + "\n"  # odd length: padding matters


def packets() -> list[bytes]:
    a, b = "10.252.1.2", "10.252.3.2"
    return [
        bytes(IP(src=a, dst=b, ttl=64) / TCP(sport=40000, dport=443, flags="S", seq=100)),
        bytes(IP(src=b, dst=a, ttl=62) / TCP(sport=443, dport=40000, flags="SA", seq=900,
                                             ack=101)),
        bytes(IP(src=a, dst=b, ttl=64) / TCP(sport=40000, dport=443, flags="PA", seq=101,
                                             ack=901) / b"\x16\x03\x01\x00\x01\x01"),
    ]


def write(out, *, comment: str | None = "made by a test", keylog: str = KEYLOG) -> None:
    w = PcapngWriter(out, comment=comment)
    ifid = w.add_interface(LINKTYPE_RAW, name="probe")
    if keylog:
        w.add_secrets(keylog)
    for i, p in enumerate(packets()):
        w.add_packet(ifid, 1700000000.25 + i, p, comment=f"packet {i}" if i == 1 else None,
                     outbound=i != 1)


def test_capturefile_reads_packets_times_and_the_key_log():
    buf = io.BytesIO()
    write(buf)
    buf.seek(0)
    with CaptureFile(buf) as cap:
        got = list(cap)
        assert [(lt, frame) for _, lt, frame in got] == [(LINKTYPE_RAW, p) for p in packets()]
        assert [round(ts, 6) for ts, _, _ in got] == [1700000000.25, 1700000001.25,
                                                      1700000002.25]
        assert cap.keylog_text == KEYLOG
        assert cap.notes == []


def test_flows_see_the_connection_with_ttls():
    buf = io.BytesIO()
    write(buf)
    buf.seek(0)
    [t] = list(CaptureReader(buf, ports={443}))
    assert (t.client.ip, t.client.port, t.server.port) == ("10.252.1.2", 40000, 443)
    assert t.tcp is not None and (t.tcp.syn_ttl, t.tcp.synack_ttl) == (64, 62)


def test_unknown_interface_is_refused():
    w = PcapngWriter(io.BytesIO())
    with pytest.raises(ValueError):
        w.add_packet(0, 0.0, b"x")


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_reads_packets_comments_and_the_secrets(tmp_path: Path):
    path = tmp_path / "w.pcapng"
    with path.open("wb") as f:
        write(f)
    fields = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "ip.ttl", "-e", "tcp.flags.str",
         "-e", "frame.comment", "-e", "frame.time_epoch"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.splitlines()
    assert len(fields) == 3
    assert fields[0].split("\t")[0] == "64" and fields[1].split("\t")[0] == "62"
    assert "packet 1" in fields[1]
    assert fields[0].split("\t")[-1].startswith("1700000000.25")
    info = subprocess.run(["capinfos", str(path)], capture_output=True, text=True, timeout=60)
    if info.returncode == 0:
        assert "made by a test" in info.stdout
    # tshark writes the DSB back out: the secrets survived its parser intact
    keys = tmp_path / "keys.txt"
    subprocess.run(["editcap", "--extract-secrets", str(path), str(keys)],
                   capture_output=True, timeout=60)
    if keys.exists():
        assert keys.read_text() == KEYLOG
    else:  # older editcap: ask tshark to rewrite with secrets and read them with our reader
        out = tmp_path / "copy.pcapng"
        subprocess.run(["editcap", str(path), str(out)], check=True, capture_output=True,
                       timeout=60)
        with CaptureFile(out) as cap:
            list(cap)
            assert cap.keylog_text == KEYLOG
