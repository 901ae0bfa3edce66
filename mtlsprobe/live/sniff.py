"""The probe's own packet capture: AF_PACKET sniffing of its connections, in a thread.

Boundary: packets in, packets out. :class:`Sniffer` records TCP packets to/from a set of
ports (a kernel BPF filter keeps the rest of the host's traffic out of Python) while the
attempts run; :func:`select_flows` keeps only the probe's own connections (4-tuples);
:func:`to_pcapng` writes them, with the key log of throwaway sessions, for the ticket;
:func:`passive_facts` turns them into ``TcpFacts`` (TTLs, RSTs, SYN-ACK options) by
reading that pcapng back with ``capture.transcripts`` -- the very code ``analyze`` runs, so a
live run and ``analyze`` of its capture see the same facts.

Why a sniffer: Linux reports no per-segment TTL on a TCP socket (IP_RECVTTL works for
UDP/raw only), so TTL evidence needs a packet socket, i.e. root or CAP_NET_RAW. Without
it :func:`unavailable` says why and the probe goes on without passive evidence.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import socket
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from mtlsprobe.capture.pcapng_writer import LINKTYPE_RAW, PcapngWriter
from mtlsprobe.model import CertKind, TcpFacts, Transcript

ETH_P_ALL, ETH_P_IP, ETH_P_IPV6 = 0x0003, 0x0800, 0x86DD
PACKET_OUTGOING = 4
ARPHRD_LOOPBACK = 772
SO_ATTACH_FILTER = 26
SO_TIMESTAMP = 29
MAX_PACKETS = 100_000  # a probe makes a handful of short connections; this is a safety cap
NO_SNIFF_NOTE = (
    "passive TCP/IP evidence (TTLs, injected RSTs, SYN-ACK options) needs a packet socket "
    "(root or CAP_NET_RAW; Linux gives no per-segment TTL on TCP sockets): {why}"
)

Client = tuple[str, int]  # the probe's local (ip, port) of one connection


@dataclass(frozen=True, slots=True)
class Packet:
    """One IP packet as the sniffer saw it (bytes from the IP header on)."""

    ts: float  # seconds since the epoch (kernel receive timestamp)
    data: bytes
    ifname: str
    outbound: bool

    def flow(self) -> tuple[str, int, str, int] | None:
        """(src ip, src port, dst ip, dst port) of a TCP packet, else None."""
        d = self.data
        if len(d) >= 20 and d[0] >> 4 == 4 and d[9] == 6:
            ihl = (d[0] & 0x0F) * 4
            if len(d) < ihl + 4:
                return None
            sport, dport = struct.unpack_from("!HH", d, ihl)
            return socket.inet_ntop(socket.AF_INET, d[12:16]), sport, socket.inet_ntop(
                socket.AF_INET, d[16:20]), dport
        if len(d) >= 44 and d[0] >> 4 == 6 and d[6] == 6:
            sport, dport = struct.unpack_from("!HH", d, 40)
            return socket.inet_ntop(socket.AF_INET6, d[8:24]), sport, socket.inet_ntop(
                socket.AF_INET6, d[24:40]), dport
        return None


class SniffUnavailable(Exception):
    """No packet socket here (not root / no CAP_NET_RAW, or not Linux)."""


def unavailable() -> str | None:
    """Why the sniffer cannot run here, or None when it can."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL)).close()
    except AttributeError:
        return "AF_PACKET sockets are Linux-only"
    except PermissionError:
        return "not root and no CAP_NET_RAW"
    except OSError as exc:
        return f"no packet socket: {exc.strerror or exc}"
    return None


# --- classic BPF: TCP over IPv4/IPv6 with either port in `ports` --------------------------

_LDH_ABS, _LDB_ABS, _LDXB_MSH, _LDH_IND = 0x28, 0x30, 0xB1, 0x48
_JEQ, _JSET, _RET = 0x15, 0x45, 0x06
_AD_PROTOCOL = 0xFFFFF000  # SKF_AD_OFF + SKF_AD_PROTOCOL: the packet's ethertype


def bpf_program(ports: Iterable[int]) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) for a cooked (SOCK_DGRAM) packet socket, which sees
    packets from the network header on. Non-first IPv4 fragments are dropped."""
    ports = sorted(set(ports))
    if not ports or len(ports) > 60:
        raise ValueError("between 1 and 60 ports")
    prog: list[list[object]] = []

    def op(code: int, k: int, jt: object = 0, jf: object = 0) -> None:
        prog.append([code, jt, jf, k])

    def ports_then(label_hit: str, label_miss: str | int) -> None:  # 0: fall through
        for i, p in enumerate(ports):
            op(_JEQ, p, label_hit, label_miss if i == len(ports) - 1 else 0)

    op(_LDH_ABS, _AD_PROTOCOL)
    op(_JEQ, ETH_P_IP, 0, "v6")
    op(_LDB_ABS, 9)
    op(_JEQ, 6, 0, "drop")
    op(_LDH_ABS, 6)
    op(_JSET, 0x1FFF, "drop", 0)
    op(_LDXB_MSH, 0)
    op(_LDH_IND, 0)
    ports_then("accept", 0)
    op(_LDH_IND, 2)
    ports_then("accept", "drop")
    labels = {"v6": len(prog)}
    op(_JEQ, ETH_P_IPV6, 0, "drop")
    op(_LDB_ABS, 6)
    op(_JEQ, 6, 0, "drop")
    op(_LDH_ABS, 40)
    ports_then("accept", 0)
    op(_LDH_ABS, 42)
    ports_then("accept", "drop")
    labels["drop"] = len(prog)
    op(_RET, 0)
    labels["accept"] = len(prog)
    op(_RET, 0x40000)
    out: list[tuple[int, int, int, int]] = []
    for i, (code, jt, jf, k) in enumerate(prog):
        jumps = [labels[j] - i - 1 if isinstance(j, str) else j for j in (jt, jf)]
        if any(not 0 <= j <= 255 for j in jumps):  # type: ignore[operator]
            raise ValueError("filter too long for classic BPF jumps")
        out.append((code, jumps[0], jumps[1], k))  # type: ignore[arg-type]
    return out


def _attach(sock: socket.socket, program: Sequence[tuple[int, int, int, int]]) -> None:
    insns = b"".join(struct.pack("HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(insns)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class Sniffer:
    """Record TCP packets to/from `ports` on every interface, in a background thread.

    Use as a context manager around the attempts; ``packets`` holds what was seen.
    Raises :class:`SniffUnavailable` on entry without a packet socket.
    """

    def __init__(self, ports: Iterable[int], *, max_packets: int = MAX_PACKETS) -> None:
        self.ports = tuple(sorted(set(ports)))
        self.max_packets = max_packets
        self.packets: list[Packet] = []
        self.dropped = 0
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sniffer:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        except (AttributeError, OSError) as exc:
            raise SniffUnavailable(unavailable() or str(exc)) from exc
        try:
            if 0 < len(self.ports) <= 60:  # more ports: all TCP reaches Python, still works
                _attach(sock, bpf_program(self.ports))
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.settimeout(0.05)
        except (OSError, ValueError):
            sock.close()
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="mtlsprobe sniff", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Packet]:
        """Stop after taking what the kernel has queued; returns the packets."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._sock is not None:
            self._sock.close()
        return self.packets

    def __enter__(self) -> Sniffer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        assert self._sock is not None
        sock = self._sock
        ancsize = socket.CMSG_SPACE(16)
        while True:
            stopping = self._stop.is_set()
            try:
                if stopping:
                    sock.setblocking(False)
                data, anc, _flags, addr = sock.recvmsg(65535, ancsize)
            except (TimeoutError, BlockingIOError, InterruptedError):
                if stopping:
                    return
                continue
            except OSError:
                return
            ifname, _proto, pkttype, hatype = addr[0], addr[1], addr[2], addr[3]
            if pkttype == PACKET_OUTGOING and hatype == ARPHRD_LOOPBACK:
                continue  # loopback shows every packet twice: keep the receive copy
            ts = time.time()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(value) >= 16:
                    sec, usec = struct.unpack("ll", value[:16])
                    ts = sec + usec / 1e6
            if len(self.packets) >= self.max_packets:
                self.dropped += 1
                continue
            self.packets.append(Packet(ts, data, ifname, pkttype == PACKET_OUTGOING))


# --- after the run -------------------------------------------------------------------------


def client_of(t: Transcript) -> Client | None:
    """The local (ip, port) of a live transcript's TCP connection, when it connected."""
    if not t.client.port or not t.client.ip or t.client.ip == "0.0.0.0":
        return None
    return t.client.ip, t.client.port


def select_flows(packets: Iterable[Packet], clients: Iterable[Client]) -> list[Packet]:
    """The packets of the connections whose local end is in `clients` (either direction),
    each from the one interface it was first seen on (a forwarded or bridged packet is seen
    once per interface it crosses). The local (ip, port) names one connection at a time."""
    wanted = set(clients)
    first_if: dict[Client, str] = {}
    out: list[Packet] = []
    for p in packets:
        f = p.flow()
        if f is None:
            continue
        key = (f[0], f[1]) if (f[0], f[1]) in wanted else (f[2], f[3])
        if key not in wanted:
            continue
        if first_if.setdefault(key, p.ifname) != p.ifname:
            continue
        out.append(p)
    out.sort(key=lambda p: p.ts)
    return out


def throwaway_keylog(transcripts: Iterable[Transcript], *, include_agent: bool = False) -> str:
    """Key log lines of the probe's own throwaway sessions (no client certificate, or the
    untrusted one); the agent-certificate session only when `include_agent`."""
    lines: list[str] = []
    for t in transcripts:
        if not t.keylog:
            continue
        kind = t.attempt.client_cert if t.attempt else CertKind.UNKNOWN
        if kind is CertKind.AGENT and not include_agent:
            continue
        if kind is CertKind.UNKNOWN:
            continue
        lines.extend(line for line in t.keylog.splitlines() if line and not line.startswith("#"))
    return "".join(line + "\n" for line in lines)


ATTEMPT_COMMENT = "mtlsprobe attempt: {name}; client certificate: {kind}"


def attempt_comments(transcripts: Iterable[Transcript]) -> dict[Client, str]:
    """Per connection, the comment its first packet gets: which attempt it was."""
    out: dict[Client, str] = {}
    for t in transcripts:
        client = client_of(t)
        if client is not None and t.attempt is not None:
            out[client] = ATTEMPT_COMMENT.format(name=t.attempt.name,
                                                 kind=t.attempt.client_cert.value)
    return out


def to_pcapng(
    packets: Sequence[Packet],
    *,
    keylog: str = "",
    comment: str | None = None,
    labels: dict[Client, str] | None = None,
) -> bytes:
    """The packets as pcapng (raw IP link type), the key log first in a DSB; the first
    packet of each connection in `labels` carries its label as a comment."""
    buf = io.BytesIO()
    w = PcapngWriter(buf, comment=comment)
    ifid = w.add_interface(LINKTYPE_RAW, name="mtlsprobe")
    if keylog:
        w.add_secrets(keylog)
    pending = dict(labels or {})
    for p in packets:
        note = None
        if pending and (f := p.flow()) is not None:
            note = pending.pop((f[0], f[1]), None) or pending.pop((f[2], f[3]), None)
        w.add_packet(ifid, p.ts, p.data, outbound=p.outbound, comment=note)
    return buf.getvalue()


def passive_facts(packets: Sequence[Packet]) -> dict[Client, TcpFacts]:
    """TcpFacts per connection (keyed by its client end), computed by ``capture.transcripts`` --
    the same code ``analyze`` runs on the written pcapng."""
    from mtlsprobe.capture.transcripts import CaptureReader

    if not packets:
        return {}
    out: dict[Client, TcpFacts] = {}
    ports = {f[3] for f in (p.flow() for p in packets) if f is not None}
    reader = CaptureReader(io.BytesIO(to_pcapng(packets)), ports=ports)
    with contextlib.suppress(Exception):
        for t in reader:
            if t.tcp is not None and t.client.ip:
                out[(t.client.ip, t.client.port)] = t.tcp
    return out


def with_passive_facts(
    transcripts: Sequence[Transcript], facts: dict[Client, TcpFacts]
) -> list[Transcript]:
    """Transcripts with sniffed TcpFacts merged in (the live connect timing kept)."""
    out: list[Transcript] = []
    for t in transcripts:
        client = client_of(t)
        got = facts.get(client) if client else None
        if got is None:
            out.append(t)
            continue
        connect_ms = t.tcp.connect_ms if t.tcp else None
        out.append(replace(t, tcp=replace(got, connect_ms=connect_ms)))
    return out


# --- the hook around the attempts (live.probe) ----------------------------------------------


class SniffLog:
    """What one probe run's sniffing produced, for the CLI: the probe's own packets (its
    connections only), the transcripts they belong to, and notes for the report."""

    def __init__(self) -> None:
        self.packets: list[Packet] = []
        self.transcripts: list[Transcript] = []
        self.notes: list[str] = []
        self.available = False


class SniffSession:
    """Context manager around the attempts: sniff `ports` when possible, else note why.
    :meth:`apply` then merges passive facts into the transcripts and fills the log."""

    def __init__(self, ports: Iterable[int], log: SniffLog | None = None) -> None:
        self.log = log if log is not None else SniffLog()
        self.sniffer: Sniffer | None = Sniffer(ports)

    def __enter__(self) -> SniffSession:
        assert self.sniffer is not None
        try:
            self.sniffer.start()
            self.log.available = True
        except (SniffUnavailable, OSError) as exc:
            self.sniffer = None
            self.log.notes.append(NO_SNIFF_NOTE.format(why=exc))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.sniffer is not None:
            self.sniffer.stop()

    def apply(self, transcripts: Sequence[Transcript]) -> list[Transcript]:
        """`transcripts` with sniffed TcpFacts; the log keeps their packets."""
        if self.sniffer is None:
            self.log.transcripts.extend(transcripts)
            return list(transcripts)
        if self.sniffer.dropped:
            self.log.notes.append(
                f"the sniffer kept the first {self.sniffer.max_packets} packets only"
            )
        clients = [c for c in (client_of(t) for t in transcripts) if c is not None]
        mine = select_flows(self.sniffer.packets, clients)
        out = with_passive_facts(transcripts, passive_facts(mine))
        self.log.packets.extend(mine)
        self.log.transcripts.extend(out)
        return out
