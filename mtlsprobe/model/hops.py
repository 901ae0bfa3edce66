"""Where on the path: TTL-limited probes toward one target (probe --trace, mtlsprobe trace)."""

from __future__ import annotations

from dataclasses import dataclass

from mtlsprobe.model.transcript import Endpoint

# --- where on the path (probe --trace, mtlsprobe trace) ------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HopProbe:
    """One TTL-limited probe of a hop trace and the first answer it got."""

    phase: str  # "ip" (ICMP echo to the server's address) | "tcp" (SYN) | "tls" (ClientHello)
    ttl: int  # the TTL (hop limit) the probe was sent with
    answer: str  # "time_exceeded" | "unreachable" | "echo_reply" | "synack" | "rst" | "tls"
    #              | "fin" | "data" | "none" (nothing before the per-probe timeout)
    addr: str | None = None  # who answered: the ICMP sender, or the segment's source address
    reply_ttl: int | None = None  # TTL of the answer as it arrived
    rtt_ms: float | None = None
    rewritten: tuple[str, ...] = ()  # differences between the ICMP-quoted probe and what we sent


@dataclass(frozen=True, slots=True, kw_only=True)
class HopTrace:
    """TTL-limited probing toward one target (tracebox / tlsmiddlebox style).

    Distances are the smallest TTL that got an answer other than ICMP time-exceeded.
    ``middlebox_*`` name the hop that answered (or reset) before the server's distance.
    """

    target: Endpoint
    probes: tuple[HopProbe, ...] = ()
    ip_distance: int | None = None  # the server's address answered an ICMP echo at this TTL
    tcp_distance: int | None = None  # the SYN was answered (SYN-ACK or RST) at this TTL
    tls_distance: int | None = None  # the ClientHello was answered at this TTL
    tls_answer: str | None = None  # what answered the ClientHello first: "tls" | "rst" | "fin"
    middlebox_hop: int | None = None
    middlebox_addr: str | None = None
    middlebox_answer: str | None = None  # "tcp" (answered the SYN) | "tls" | "rst" | "fin"
    middlebox_reason: str | None = None  # one sentence: how the hop was located
    notes: tuple[str, ...] = ()
    error: str | None = None  # why no trace ran (no raw sockets, IPv6, ...)
