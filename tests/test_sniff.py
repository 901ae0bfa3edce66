"""live.sniff: the kernel filter, the probe's own flows only, loopback de-duplication,
passive facts through capture.transcripts, and which key logs may leave the host."""

from __future__ import annotations

import socket
import threading
from datetime import datetime, timezone

import pytest
from scapy.layers.inet import IP, TCP

from mtlsprobe.live import sniff
from mtlsprobe.model import Attempt, CertKind, Endpoint, Route, Transcript

NO_SNIFF = sniff.unavailable()
needs_sniff = pytest.mark.skipif(NO_SNIFF is not None, reason=f"no packet socket: {NO_SNIFF}")


def pkt(src: str, sport: int, dst: str, dport: int, ifname: str = "eth0", ts: float = 0.0,
        flags: str = "A") -> sniff.Packet:
    data = bytes(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags))
    return sniff.Packet(ts, data, ifname, outbound=src == "10.0.0.2")


def transcript(port: int, kind: CertKind, keylog: str | None) -> Transcript:
    return Transcript(
        label=f"t{port}", client=Endpoint(host="10.0.0.2", port=port, ip="10.0.0.2"),
        server=Endpoint(host="s", port=443, ip="10.0.0.9"), route=Route(kind="direct"),
        started_at=datetime.now(timezone.utc), keylog=keylog,
        attempt=Attempt(name=f"a{port}", client_cert=kind),
    )


def test_bpf_program_shape_and_limits():
    prog = sniff.bpf_program([443, 8443, 443])
    assert prog[-1] == (0x06, 0, 0, 0x40000) and prog[-2] == (0x06, 0, 0, 0)
    assert sum(1 for code, *_ in prog if code == 0x15 and _[2] in (443, 8443)) == 8
    with pytest.raises(ValueError):
        sniff.bpf_program([])
    with pytest.raises(ValueError):
        sniff.bpf_program(range(1, 100))


def test_select_flows_keeps_our_connections_once_each():
    ours, other = ("10.0.0.2", 40000), ("10.0.0.2", 40001)
    packets = [
        pkt("10.0.0.2", 40000, "10.0.0.9", 443, ts=1),
        pkt("10.0.0.9", 443, "10.0.0.2", 40000, ts=2),
        pkt("10.0.0.2", 40000, "10.0.0.9", 443, ifname="docker0", ts=1),  # bridged copy
        pkt("10.0.0.2", 40001, "10.0.0.9", 443, ts=3),  # not ours
    ]
    got = sniff.select_flows(packets, [ours])
    assert [p.ts for p in got] == [1, 2] and {p.ifname for p in got} == {"eth0"}
    assert sniff.select_flows(packets, [other])[0].ts == 3


def test_only_throwaway_sessions_keys_unless_asked():
    ts = [transcript(1, CertKind.NONE, "CLIENT_RANDOM aa bb\n"),
          transcript(2, CertKind.UNTRUSTED, "# comment\nCLIENT_RANDOM cc dd\n"),
          transcript(3, CertKind.AGENT, "CLIENT_RANDOM ee ff\n")]
    assert sniff.throwaway_keylog(ts) == "CLIENT_RANDOM aa bb\nCLIENT_RANDOM cc dd\n"
    assert "ee ff" in sniff.throwaway_keylog(ts, include_agent=True)


def test_attempt_comments_label_each_connection():
    got = sniff.attempt_comments([transcript(7, CertKind.UNTRUSTED, None)])
    assert got == {("10.0.0.2", 7): "mtlsprobe attempt: a7; client certificate: untrusted"}


def test_session_without_privileges_notes_and_passes_transcripts_through(monkeypatch):
    def refuse(self):
        raise sniff.SniffUnavailable("not root and no CAP_NET_RAW")

    monkeypatch.setattr(sniff.Sniffer, "start", refuse)
    log = sniff.SniffLog()
    ts = [transcript(1, CertKind.NONE, None)]
    with sniff.SniffSession([443], log) as session:
        pass
    assert session.apply(ts) == ts
    assert not log.available and "CAP_NET_RAW" in log.notes[0] and "TTL" in log.notes[0]


@needs_sniff
def test_sniffer_sees_each_loopback_packet_once_and_only_its_ports():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(4)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(conn.recv(16))

    thread = threading.Thread(target=serve)
    thread.start()
    with sniff.Sniffer([port]) as sn:
        with socket.create_connection(("127.0.0.1", port)) as c:
            client = c.getsockname()
            c.sendall(b"ping")
            assert c.recv(16) == b"ping"
        socket.create_connection(other.getsockname()).close()  # another port: filtered out
        thread.join(5)
    listener.close()
    other.close()
    flows = {p.flow() for p in sn.packets}
    assert all(port in (f[1], f[3]) for f in flows)
    mine = sniff.select_flows(sn.packets, [client])
    assert len({p.data for p in mine}) == len(mine)  # no loopback duplicates
    facts = sniff.passive_facts(mine)
    tcp = facts[client]
    assert (tcp.syn_ttl, tcp.synack_ttl) == (64, 64) and tcp.synack_options
