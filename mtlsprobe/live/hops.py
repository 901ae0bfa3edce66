"""Where on the path: TTL-limited probing toward one target (tracebox / tlsmiddlebox style).

Three phases, every probe bounded (TTL <= 30, per-probe timeout, one total deadline):

- ``ip``: ICMP echo requests with TTL 1..N to the server's address. Time-exceeded names
  each hop; the echo reply gives the distance of the address itself.
- ``tcp``: SYNs with TTL 1..N to the port, crafted with scapy and sent on a raw socket
  (each from its own reserved local port; our kernel resets the SYN-ACKs, which is what
  tracebox does). The first SYN-ACK/RST gives the TCP endpoint's distance; a TCP endpoint
  nearer than the address is a transparent proxy. ICMP quotes show what each hop received,
  so MSS/window-scale/option/address rewriting is located too.
- ``tls``: per TTL, a normal kernel TCP connection (full TTL), then ``IP_TTL`` = t and the
  ClientHello. The kernel keeps seq/ack right (no hand-made TCP state, no RST-suppressing
  firewall rule), the ICMP time-exceeded names hop t, and the first TTL at which a
  ServerHello/RST/FIN comes back is where the ClientHello is answered.

Answers are read from raw ICMP and raw TCP sockets (copies of incoming packets, with their
IP headers: the reply TTL says how far back the answering machine is). IPv4 only.
Needs root or CAP_NET_RAW: without, :func:`trace` returns a HopTrace whose ``error`` says
so. Scapy is imported inside the functions that build packets (it costs about a second).
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from mtlsprobe.model import Endpoint, HopProbe, HopTrace

MAX_TTL = 30
NO_RAW_NOTE = "hop trace skipped: raw sockets need root or CAP_NET_RAW ({why})"
_INITIAL_TTLS = (32, 64, 128, 255)
_SYN_OPTIONS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None),
                ("WScale", 7)]
ICMP_ECHO_REPLY, ICMP_UNREACH, ICMP_ECHO, ICMP_TIME_EXCEEDED = 0, 3, 8, 11
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10


@dataclass(frozen=True)
class TraceOptions:
    max_ttl: int = MAX_TTL
    probe_timeout: float = 1.0  # wait per TTL (tls) or per batch after the last answer
    deadline: float = 30.0  # seconds for the whole trace
    sni: str | None = None
    phases: tuple[str, ...] = ("ip", "tcp", "tls")


def unavailable() -> str | None:
    """Why no trace can run here (None when it can)."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    except PermissionError:
        return "not root and no CAP_NET_RAW"
    except OSError as exc:
        return f"no raw socket: {exc.strerror or exc}"
    return None


def hops_back(reply_ttl: int | None) -> int | None:
    """Routers between the answering machine and us, assuming a usual initial TTL."""
    if reply_ttl is None:
        return None
    initial = next(i for i in _INITIAL_TTLS if i >= reply_ttl)
    return initial - reply_ttl


# --- parsing what comes back ---------------------------------------------------------------


@dataclass(frozen=True)
class _Quote:
    """The probe an ICMP error quotes, as the reporting hop received it."""

    src: str
    dst: str
    ttl: int
    proto: int
    sport: int = 0  # TCP ports, or ICMP echo id in sport
    dport: int = 0
    seq: int = 0
    window: int | None = None
    options: tuple[str, ...] = ()
    payload: bytes = b""


@dataclass(frozen=True)
class _Reply:
    at: float
    src: str
    ttl: int
    kind: str  # "time_exceeded" | "unreachable" | "echo_reply" | "tcp"
    quote: _Quote | None = None
    echo: tuple[int, int] | None = None  # (id, seq) of an echo reply
    tcp: tuple[int, int, int, int, int, int] | None = None  # sport dport seq ack flags paylen


def _ip(data: bytes) -> tuple[int, int, int, str, str] | None:
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    return ihl, data[8], data[9], socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20])


def parse_icmp(data: bytes, at: float) -> _Reply | None:
    """An ICMP packet (from its IPv4 header) -> reply, with the quoted probe for errors."""
    from mtlsprobe.capture.linklayer import tcp_option_summary

    head = _ip(data)
    if head is None or head[2] != 1 or len(data) < head[0] + 8:
        return None
    ihl, ttl, _p, src, _dst = head
    itype = data[ihl]
    if itype == ICMP_ECHO_REPLY:
        ident, seq = struct.unpack_from("!HH", data, ihl + 4)
        return _Reply(at=at, src=src, ttl=ttl, kind="echo_reply", echo=(ident, seq))
    if itype not in (ICMP_TIME_EXCEEDED, ICMP_UNREACH):
        return None
    inner = data[ihl + 8 :]
    qhead = _ip(inner)
    if qhead is None:
        return None
    qihl, qttl, qproto, qsrc, qdst = qhead
    body = inner[qihl:]
    quote = _Quote(src=qsrc, dst=qdst, ttl=qttl, proto=qproto)
    if qproto == 6 and len(body) >= 8:
        sport, dport, seq = struct.unpack_from("!HHI", body)
        window: int | None = None
        options: tuple[str, ...] = ()
        payload = b""
        if len(body) >= 20:
            hlen = (body[12] >> 4) * 4
            (window,) = struct.unpack_from("!H", body, 14)
            options = tcp_option_summary(body[20:hlen]) if hlen > 20 else ()
            payload = body[hlen:]
        quote = _Quote(src=qsrc, dst=qdst, ttl=qttl, proto=6, sport=sport, dport=dport, seq=seq,
                       window=window, options=options, payload=payload)
    elif qproto == 1 and len(body) >= 8:
        ident, seq = struct.unpack_from("!HH", body, 4)
        quote = _Quote(src=qsrc, dst=qdst, ttl=qttl, proto=1, sport=ident, seq=seq)
    kind = "time_exceeded" if itype == ICMP_TIME_EXCEEDED else "unreachable"
    return _Reply(at=at, src=src, ttl=ttl, kind=kind, quote=quote)


def parse_tcp(data: bytes, at: float) -> _Reply | None:
    head = _ip(data)
    if head is None or head[2] != 6 or len(data) < head[0] + 20:
        return None
    ihl, ttl, _p, src, _dst = head
    sport, dport, seq, ack, off, flags = struct.unpack_from("!HHIIBB", data, ihl)
    total = struct.unpack_from("!H", data, 2)[0] or len(data)
    paylen = max(0, total - ihl - (off >> 4) * 4)
    return _Reply(at=at, src=src, ttl=ttl, kind="tcp", tcp=(sport, dport, seq, ack, flags, paylen))


def rewritten(quote: _Quote, sent: _Quote) -> tuple[str, ...]:
    """What differs between the probe as a hop quoted it and as we sent it."""
    out: list[str] = []
    if quote.src != sent.src:
        out.append(f"src {sent.src}->{quote.src}")
    if quote.dst != sent.dst:
        out.append(f"dst {sent.dst}->{quote.dst}")
    if quote.ttl not in (0, 1):
        out.append(f"ttl arrived as {quote.ttl}, not 1")
    if quote.proto == 6 and sent.proto == 6:
        if quote.sport != sent.sport or quote.dport != sent.dport:
            out.append(f"ports {sent.sport}:{sent.dport}->{quote.sport}:{quote.dport}")
        if quote.window is not None and sent.window is not None and quote.window != sent.window:
            out.append(f"window {sent.window}->{quote.window}")
        if sent.options and quote.options != sent.options:  # () = not ours to know (kernel)
            out.extend(_option_changes(sent.options, quote.options))
        n = min(len(quote.payload), len(sent.payload))
        if n and quote.payload[:n] != sent.payload[:n]:
            at = next(i for i in range(n) if quote.payload[i] != sent.payload[i])
            out.append(f"payload differs from byte {at}")
    return tuple(out)


def _option_changes(sent: tuple[str, ...], got: tuple[str, ...]) -> list[str]:
    def keyed(opts: tuple[str, ...]) -> dict[str, str]:
        return {o.split("=", 1)[0]: o for o in opts}

    s, g = keyed(sent), keyed(got)
    out = []
    for k in s:
        if k not in g:
            out.append(f"option {s[k]} removed")
        elif g[k] != s[k]:
            out.append(f"{k} {s[k].split('=', 1)[-1]}->{g[k].split('=', 1)[-1]}")
    out.extend(f"option {g[k]} added" for k in g if k not in s)
    return out or [f"options {','.join(sent)}->{','.join(got)}"]


# --- locating the middlebox (pure) ----------------------------------------------------------


def hop_address(probes: tuple[HopProbe, ...] | list[HopProbe], ttl: int) -> str | None:
    """The address that sent time-exceeded for `ttl` in any phase (ip phase first)."""
    for phase in ("ip", "tcp", "tls"):
        for p in probes:
            if p.phase == phase and p.ttl == ttl and p.answer == "time_exceeded" and p.addr:
                return p.addr
    return None


def locate(t: HopTrace) -> HopTrace:
    """Fill ``middlebox_*``: the hop that answered the SYN or the ClientHello before the
    server's distance (the ICMP-echo distance of its address, else the TCP distance)."""
    from dataclasses import replace

    server = t.ip_distance or t.tcp_distance
    if server is None:
        return t
    if t.ip_distance and t.tcp_distance and t.tcp_distance < t.ip_distance:
        answer, at, what = "tcp", t.tcp_distance, "the SYN (TCP is terminated there)"
    elif t.tls_distance and t.tls_distance < server:
        answer, at, what = t.tls_answer or "tls", t.tls_distance, {
            "rst": "the ClientHello with a reset", "fin": "the ClientHello by closing",
        }.get(t.tls_answer or "", "the ClientHello")
    else:
        return t
    reply = next((p for p in t.probes if p.ttl == at and p.answer not in
                  ("time_exceeded", "none", "unreachable", "echo_reply")
                  and p.phase == ("tcp" if answer == "tcp" else "tls")), None)
    back = hops_back(reply.reply_ttl if reply else None)
    hop, how = at, f"TTL {at} was enough for an answer"
    if back is not None and back + 1 == at - 1:
        # A router filtering what it forwards: the TTL check comes first, so TTL `at - 1`
        # got its time-exceeded and TTL `at` its reset; the reply TTL says `at - 1`.
        hop = at - 1
        how = f"answered at TTL {at}, the answer's TTL puts its sender {back} hop(s) back"
    addr = hop_address(t.probes, hop)
    where = f"hop {hop}" + (f" ({addr})" if addr else "")
    reason = (
        f"{where} answers {what} although the server's address is {server} hops away; "
        f"{how}"
    )
    return replace(t, middlebox_hop=hop, middlebox_addr=addr, middlebox_answer=answer,
                   middlebox_reason=reason)


# --- the probing ---------------------------------------------------------------------------


@dataclass
class _Sockets:
    icmp: socket.socket
    tcp: socket.socket
    send: socket.socket
    source: str
    replies: list[_Reply] = field(default_factory=list)

    def close(self) -> None:
        for s in (self.icmp, self.tcp, self.send):
            with contextlib.suppress(OSError):
                s.close()

    def pump(self, until: float) -> Iterator[_Reply]:
        """Replies arriving until `until` (monotonic), as they come."""
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            ready, _, _ = select.select([self.icmp, self.tcp], [], [], left)
            for s in ready:
                try:
                    data = s.recv(65535)
                except OSError:
                    continue
                now = time.monotonic()
                r = parse_icmp(data, now) if s is self.icmp else parse_tcp(data, now)
                if r is not None:
                    yield r


def _source_for(dst: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.connect((dst, 9))
        return u.getsockname()[0]


def _open(dst: str) -> _Sockets:
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for s in (icmp, tcp):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return _Sockets(icmp, tcp, send, _source_for(dst))


def trace(target: Endpoint, options: TraceOptions | None = None) -> HopTrace:
    """Trace the path to `target` (its ``ip`` or a numeric ``host``). Never raises for
    network conditions or missing privileges: those end up in ``error``/``notes``."""
    options = options or TraceOptions()
    dst = target.ip or target.host
    try:
        socket.inet_aton(dst)
    except OSError:
        return HopTrace(target=target, error=f"hop trace needs an IPv4 address, not {dst}")
    why = unavailable()
    if why is not None:
        return HopTrace(target=target, error=NO_RAW_NOTE.format(why=why))
    deadline = time.monotonic() + options.deadline
    max_ttl = max(1, min(options.max_ttl, MAX_TTL))
    notes: list[str] = []
    probes: list[HopProbe] = []
    socks = _open(dst)
    try:
        ip_d = tcp_d = None
        if "ip" in options.phases or "tcp" in options.phases:
            ip_d, tcp_d, got, more = _ip_and_tcp(socks, dst, target.port, max_ttl, options,
                                                 deadline)
            probes.extend(got)
            notes.extend(more)
        tls_d = tls_answer = None
        if "tls" in options.phases and time.monotonic() < deadline:
            limit = min(max_ttl, tcp_d or max_ttl)
            tls_d, tls_answer, got, more = _tls(socks, dst, target, limit, options, deadline)
            probes.extend(got)
            notes.extend(more)
    finally:
        socks.close()
    if time.monotonic() >= deadline:
        notes.append(f"the trace stopped at its {options.deadline:g} s deadline")
    result = HopTrace(
        target=target, probes=tuple(probes), ip_distance=ip_d, tcp_distance=tcp_d,
        tls_distance=tls_d, tls_answer=tls_answer, notes=tuple(notes),
    )
    return locate(result)


def _ip_and_tcp(
    socks: _Sockets, dst: str, port: int, max_ttl: int, options: TraceOptions, deadline: float
) -> tuple[int | None, int | None, list[HopProbe], list[str]]:
    """Both batch phases at once: every TTL's echo request and SYN, then collect."""
    from scapy.layers.inet import ICMP, IP, TCP
    from scapy.packet import Packet

    ident = os.getpid() & 0xFFFF
    ttls = range(1, max_ttl + 1)
    reserved: list[socket.socket] = []
    sent_at: dict[tuple[str, int], float] = {}
    sent_syn: dict[int, _Quote] = {}  # by local port
    packets: list[tuple[tuple[str, int], bytes]] = []
    try:
        if "ip" in options.phases:
            for t in ttls:
                # annotated: scapy's `/` returns Self, unknown to mypy before Python 3.11
                head = IP(src=socks.source, dst=dst, ttl=t, id=random.randrange(65536))
                echo: Packet = head / ICMP(type=ICMP_ECHO, id=ident, seq=t)
                pkt = echo / b"mtlsprobe hop trace"
                packets.append((("ip", t), bytes(pkt)))
        if "tcp" in options.phases:
            for t in ttls:
                r = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                r.bind((socks.source, 0))  # reserve the port: the kernel will not reuse it
                reserved.append(r)
                sport = r.getsockname()[1]
                seq = random.randrange(1 << 32)
                syn = TCP(sport=sport, dport=port, seq=seq, flags="S", window=64240,
                          options=_SYN_OPTIONS)
                raw = bytes(IP(src=socks.source, dst=dst, ttl=t, id=random.randrange(65536))
                            / syn)
                tcp_raw = raw[20:]
                hlen = (tcp_raw[12] >> 4) * 4
                from mtlsprobe.capture.linklayer import tcp_option_summary

                sent_syn[sport] = _Quote(src=socks.source, dst=dst, ttl=t, proto=6, sport=sport,
                                         dport=port, seq=seq, window=64240,
                                         options=tcp_option_summary(tcp_raw[20:hlen]))
                packets.append((("tcp", t), raw))
        for key, raw in packets:
            sent_at[key] = time.monotonic()
            socks.send.sendto(raw, (dst, 0))
        answers: dict[tuple[str, int], HopProbe] = {}
        by_port = {q.sport: q for q in sent_syn.values()}

        def settled(phase: str) -> bool:
            d = _distance(answers, phase)
            if phase not in options.phases:
                return True
            if d is None:
                return False
            return all((phase, t) in answers for t in range(1, d))

        def collect(wait: float) -> None:
            for r in socks.pump(min(deadline, time.monotonic() + wait)):
                key, probe = _match_batch(r, ident, dst, by_port, sent_at)
                if key is None or key in answers:
                    continue
                answers[key] = probe
                if settled("ip") and settled("tcp"):
                    return

        collect(options.probe_timeout * 2)
        # one more try for silent hops below the distance (routers rate-limit ICMP)
        wanted = dict(packets)
        missing = [
            key for phase in ("ip", "tcp") if phase in options.phases
            for key in ((phase, t) for t in range(1, (_distance(answers, phase) or 0)))
            if key not in answers
        ]
        if missing and time.monotonic() < deadline:
            for key in missing:
                sent_at[key] = time.monotonic()
                socks.send.sendto(wanted[key], (dst, 0))
            collect(options.probe_timeout)
    finally:
        for r in reserved:
            r.close()
    ip_d, tcp_d = _distance(answers, "ip"), _distance(answers, "tcp")
    out: list[HopProbe] = []
    for phase, d in (("ip", ip_d), ("tcp", tcp_d)):
        if phase not in options.phases:
            continue
        last = d if d else max((t for (p, t) in answers if p == phase), default=0)
        for t in range(1, last + 1):
            out.append(answers.get((phase, t)) or HopProbe(phase=phase, ttl=t, answer="none"))
    notes = []
    if "ip" in options.phases and ip_d is None:
        notes.append("the server's address did not answer ICMP echo: distance from TCP only")
    if "tcp" in options.phases and tcp_d is None:
        notes.append(f"no SYN-ACK or RST within TTL {max_ttl}")
    return ip_d, tcp_d, out, notes


def _distance(answers: dict[tuple[str, int], HopProbe], phase: str) -> int | None:
    final = ("echo_reply",) if phase == "ip" else ("synack", "rst")
    hits = [t for (p, t), a in answers.items() if p == phase and a.answer in final]
    return min(hits) if hits else None


def _match_batch(
    r: _Reply, ident: int, dst: str, syns: dict[int, _Quote], sent_at: dict[tuple[str, int], float]
) -> tuple[tuple[str, int] | None, HopProbe]:
    def probe(phase: str, ttl: int, answer: str, changes: tuple[str, ...] = ()) -> HopProbe:
        at = sent_at.get((phase, ttl))
        rtt = round((r.at - at) * 1000, 3) if at is not None else None
        return HopProbe(phase=phase, ttl=ttl, answer=answer, addr=r.src, reply_ttl=r.ttl,
                        rtt_ms=rtt, rewritten=changes)

    none = HopProbe(phase="ip", ttl=1, answer="none")
    if r.kind == "echo_reply" and r.echo and r.echo[0] == ident and r.src == dst:
        return ("ip", r.echo[1]), probe("ip", r.echo[1], "echo_reply")
    if r.kind in ("time_exceeded", "unreachable") and r.quote is not None:
        q = r.quote
        if q.proto == 1 and q.sport == ident and q.dst == dst:
            return ("ip", q.seq), probe("ip", q.seq, r.kind)
        if q.proto == 6 and q.sport in syns and syns[q.sport].seq == q.seq:
            sent = syns[q.sport]
            return ("tcp", sent.ttl), probe("tcp", sent.ttl, r.kind, rewritten(q, sent))
    if r.kind == "tcp" and r.tcp is not None:
        sport, dport, _seq, ack, flags, _n = r.tcp
        syn = syns.get(dport)
        if syn is not None and r.src == dst and sport == syn.dport and ack == (syn.seq + 1) % (
            1 << 32
        ):
            kind = "rst" if flags & TCP_RST else "synack" if flags & TCP_SYN else None
            if kind:
                return ("tcp", syn.ttl), probe("tcp", syn.ttl, kind)
    return None, none


def client_hello(sni: str | None) -> bytes:
    """A real ClientHello from Python's ssl (no verification: nothing is completed)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni or None)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def _tls(
    socks: _Sockets, dst: str, target: Endpoint, limit: int, options: TraceOptions,
    deadline: float,
) -> tuple[int | None, str | None, list[HopProbe], list[str]]:
    """One kernel connection per TTL; the ClientHello goes out with that TTL."""
    hello = client_hello(options.sni or (target.host if target.host != dst else None))
    out: list[HopProbe] = []
    notes: list[str] = []
    for ttl in range(1, limit + 1):
        if time.monotonic() >= deadline:
            break
        probe, note = _tls_one(socks, dst, target.port, ttl, hello, options, deadline)
        if note:
            notes.append(note)
        if probe is None:
            break
        out.append(probe)
        if probe.answer in ("tls", "rst", "fin", "data"):
            return ttl, probe.answer, out, notes
    return None, None, out, notes


def _tls_one(
    socks: _Sockets, dst: str, port: int, ttl: int, hello: bytes, options: TraceOptions,
    deadline: float,
) -> tuple[HopProbe | None, str | None]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(max(0.05, min(options.probe_timeout * 3, deadline - time.monotonic())))
        try:
            sock.connect((dst, port))
        except OSError as exc:
            return None, f"ClientHello phase stopped at TTL {ttl}: connect failed ({exc})"
        sport = sock.getsockname()[1]
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sent = time.monotonic()
        sock.sendall(hello)
        until = min(deadline, sent + options.probe_timeout)
        sent_quote = _Quote(src=socks.source, dst=dst, ttl=ttl, proto=6, sport=sport,
                            dport=port, payload=hello)
        for r in socks.pump(until):
            rtt = round((r.at - sent) * 1000, 3)
            if r.kind in ("time_exceeded", "unreachable") and r.quote is not None:
                q = r.quote
                if q.proto == 6 and q.sport == sport and q.dst == dst and q.payload[:1] == b"\x16":
                    return HopProbe(phase="tls", ttl=ttl, answer=r.kind, addr=r.src,
                                    reply_ttl=r.ttl, rtt_ms=rtt,
                                    rewritten=rewritten(q, sent_quote)), None
            elif r.kind == "tcp" and r.tcp is not None and r.src == dst:
                rsport, rdport, _seq, _ack, flags, paylen = r.tcp
                if rsport != port or rdport != sport:
                    continue
                if flags & TCP_RST:
                    answer = "rst"
                elif paylen:
                    answer = "tls"
                elif flags & TCP_FIN:
                    answer = "fin"
                else:
                    continue  # a bare ACK of the ClientHello: it arrived, keep waiting
                return HopProbe(phase="tls", ttl=ttl, answer=answer, addr=r.src,
                                reply_ttl=r.ttl, rtt_ms=rtt), None
        return HopProbe(phase="tls", ttl=ttl, answer="none"), None
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
