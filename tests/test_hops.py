"""live.hops: parsing ICMP quotes (scapy-built bytes), header-rewrite detection, locating the
middlebox from a trace (pure), and the trace's behaviour without privileges / on loopback."""

from __future__ import annotations

import dataclasses
import socket
import threading

import hopfacts as h
import pytest
from scapy.layers.inet import ICMP, IP, TCP

from mtlsprobe.live import hops
from mtlsprobe.model import Endpoint, HopTrace

ME, DST = "10.252.1.2", "10.252.3.2"
OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]


def time_exceeded(router: str, quoted: bytes, ttl: int = 63) -> bytes:
    return bytes(IP(src=router, dst=ME, ttl=ttl) / ICMP(type=11, code=0) / quoted)


def syn(ttl: int = 1, **tcp) -> bytes:
    fields = {"sport": 40000, "dport": 443, "seq": 1234, "flags": "S", "window": 64240,
              "options": OPTS, **tcp}
    return bytes(IP(src=ME, dst=DST, ttl=ttl) / TCP(**fields))


def test_parse_time_exceeded_quoting_a_syn():
    r = hops.parse_icmp(time_exceeded(h.HOP2, syn()), 1.0)
    assert r is not None and (r.kind, r.src, r.ttl) == ("time_exceeded", h.HOP2, 63)
    q = r.quote
    assert (q.src, q.dst, q.sport, q.dport, q.seq, q.ttl) == (ME, DST, 40000, 443, 1234, 1)
    assert q.options == ("mss=1460", "sack_perm", "ts", "wscale=7")


def test_parse_quote_cut_after_eight_bytes_still_matches_ports_and_seq():
    r = hops.parse_icmp(time_exceeded(h.HOP1, syn()[:28]), 1.0)
    assert r is not None and (r.quote.sport, r.quote.seq, r.quote.options) == (40000, 1234, ())


def test_parse_echo_reply_and_junk():
    reply = bytes(IP(src=DST, dst=ME, ttl=62) / ICMP(type=0, id=7, seq=3))
    r = hops.parse_icmp(reply, 0.0)
    assert r is not None and (r.kind, r.echo, r.ttl) == ("echo_reply", (7, 3), 62)
    assert hops.parse_icmp(b"\x45" + b"\x00" * 10, 0.0) is None
    assert hops.parse_icmp(bytes(IP(src=DST, dst=ME) / ICMP(type=5)), 0.0) is None


def test_parse_tcp_answers():
    rst = bytes(IP(src=DST, dst=ME, ttl=64) / TCP(sport=443, dport=40000, flags="R", seq=9))
    r = hops.parse_tcp(rst, 0.0)
    assert r is not None and r.tcp[4] & hops.TCP_RST and r.ttl == 64
    data = bytes(IP(src=DST, dst=ME, ttl=62) / TCP(sport=443, dport=40000, flags="PA")
                 / b"\x16\x03\x03\x00\x01\x02")
    assert hops.parse_tcp(data, 0.0).tcp[5] == 6


def test_rewritten_names_mss_option_window_ttl_and_payload_changes():
    sent = hops.parse_icmp(time_exceeded(h.HOP1, syn()), 0).quote
    clamped = syn(options=[("MSS", 1200), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None)],
                  window=1024)
    got = hops.parse_icmp(time_exceeded(h.HOP2, clamped), 0).quote
    changes = hops.rewritten(got, sent)
    assert "mss 1460->1200" in changes and "option wscale=7 removed" in changes
    assert "window 64240->1024" in changes
    ttl_reset = hops.parse_icmp(time_exceeded(h.HOP2, syn(ttl=5)), 0).quote
    assert any(c.startswith("ttl arrived as 5") for c in hops.rewritten(ttl_reset, sent))
    hello = bytes(IP(src=ME, dst=DST, ttl=1) / TCP(sport=1, dport=443, flags="PA")
                  / b"\x16\x03\x01\x00\x05hello")
    changed = hello[:-2] + b"XX"
    q_sent = hops.parse_icmp(time_exceeded(h.HOP1, hello), 0).quote
    q_got = hops.parse_icmp(time_exceeded(h.HOP1, changed), 0).quote
    assert hops.rewritten(q_got, q_sent) == ("payload differs from byte 8",)
    assert hops.rewritten(q_sent, q_sent) == ()


def test_hops_back_assumes_the_usual_initial_ttls():
    assert [hops.hops_back(x) for x in (64, 62, 128, 120, 255, 250, 30, None)] == [
        0, 2, 0, 8, 0, 5, 2, None]


def test_locate_pure_routing_finds_nothing():
    assert hops.locate(h.routed()).middlebox_hop is None


def test_locate_tcp_terminated_early_is_that_hop():
    t = dataclasses.replace(h.intercepted_at_hop2(), middlebox_hop=None, middlebox_addr=None,
                            middlebox_answer=None, middlebox_reason=None)
    got = hops.locate(t)
    assert (got.middlebox_hop, got.middlebox_addr, got.middlebox_answer) == (2, h.HOP2, "tcp")
    assert "SYN" in got.middlebox_reason


def test_locate_reset_from_a_forwarding_router_is_the_hop_before():
    t = dataclasses.replace(h.reset_at_hop1(), middlebox_hop=None, middlebox_addr=None,
                            middlebox_answer=None, middlebox_reason=None)
    got = hops.locate(t)
    assert (got.middlebox_hop, got.middlebox_addr, got.middlebox_answer) == (1, h.HOP1, "rst")


def test_locate_reset_whose_ttl_says_the_same_hop_stays_there():
    """A reset from a device that is itself hop 2 (reply TTL 63 = one router back)."""
    t = h.routed(tls_distance=2, tls_answer="rst", probes=(
        h.te("ip", 1, h.HOP1), h.te("ip", 2, h.HOP2), h.answer("ip", 3, "echo_reply", 62),
        h.te("tls", 1, h.HOP1), h.answer("tls", 2, "rst", 63)))
    got = hops.locate(t)
    assert (got.middlebox_hop, got.middlebox_addr) == (2, h.HOP2)


def test_locate_without_an_echo_distance_uses_the_tcp_distance():
    t = h.routed(ip_distance=None, tls_distance=2, tls_answer="tls", probes=(
        h.te("tcp", 1, h.HOP1), h.te("tcp", 2, h.HOP2), h.answer("tcp", 3, "synack", 62),
        h.te("tls", 1, h.HOP1), h.answer("tls", 2, "tls", 63)))
    assert hops.locate(t).middlebox_hop == 2


def test_client_hello_is_a_tls_handshake_record_with_the_sni():
    hello = hops.client_hello("server.lab")
    assert hello[:1] == b"\x16" and hello[5] == 1 and b"server.lab" in hello


def test_no_raw_sockets_is_an_error_in_the_trace_not_an_exception(monkeypatch):
    monkeypatch.setattr(hops, "unavailable", lambda: "not root and no CAP_NET_RAW")
    t = hops.trace(Endpoint(host="127.0.0.1", port=1, ip="127.0.0.1"))
    assert isinstance(t, HopTrace) and "CAP_NET_RAW" in (t.error or "") and not t.probes


def test_ipv6_and_names_are_refused_politely():
    assert "IPv4" in hops.trace(Endpoint(host="::1", port=443, ip="::1")).error
    assert "IPv4" in hops.trace(Endpoint(host="example.invalid", port=443)).error


@pytest.mark.skipif(hops.unavailable() is not None, reason="raw sockets need root")
def test_loopback_server_is_one_hop_away_in_every_phase():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    if conn.recv(5)[:1] == b"\x16":
                        conn.sendall(b"\x16\x03\x03\x00\x01\x02")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        t = hops.trace(Endpoint(host="127.0.0.1", port=port, ip="127.0.0.1"),
                       hops.TraceOptions(probe_timeout=0.5, max_ttl=4))
    finally:
        stop.set()
        thread.join(2)
        listener.close()
    assert t.error is None
    assert (t.ip_distance, t.tcp_distance, t.tls_distance, t.tls_answer) == (1, 1, 1, "tls")
    assert t.middlebox_hop is None
    tls = [p for p in t.probes if p.phase == "tls"]
    assert tls and tls[0].reply_ttl == 64


def test_trace_command_without_privileges_says_so_and_validates(monkeypatch):
    """Could not trace is the machine's problem: exit 4 and one line (issue 16), and so is a
    probe asked for --trace or --capture without raw sockets; a trace that ran validates."""
    from click.testing import CliRunner

    from mtlsprobe.cli.main import main

    monkeypatch.setattr(hops, "unavailable", lambda: "not root and no CAP_NET_RAW")
    for args in (["trace", "127.0.0.1:9"], ["probe", "127.0.0.1:9", "--trace"],
                 ["probe", "127.0.0.1:9", "--capture", "x.pcapng"]):
        r = CliRunner().invoke(main, [*args, "--format", "json"])
        assert r.exit_code == 4, (args, r.output)
        assert r.stdout == ""
        [line] = r.stderr.strip().splitlines()
        assert "CAP_NET_RAW" in line and line.startswith("mtlsprobe: error: ")
