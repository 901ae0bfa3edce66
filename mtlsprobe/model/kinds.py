"""The small vocabularies every layer shares: directions, what was seen, how a stream ended."""

from __future__ import annotations

import enum


class Direction(str, enum.Enum):
    C2S = "client_to_server"
    S2C = "server_to_client"


class Seen(str, enum.Enum):
    """Whether a fact was observed.

    UNKNOWN means we could not have seen it (encrypted without keys, capture gap,
    connection or capture ended first). It is never the same as NO.
    """

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


class StreamEnd(str, enum.Enum):
    """How the TCP connection (or our view of it) ended."""

    FIN = "fin"
    RST = "rst"
    TIMEOUT = "timeout"
    CLOSED_BY_US = "closed_by_us"
    CAPTURE_ENDED = "capture_ended"
    NOT_CONNECTED = "not_connected"


class Stage(str, enum.Enum):
    """How far one connection got before it ended (the furthest stage reached)."""

    DNS = "dns"
    TCP = "tcp"
    PROXY = "proxy"  # CONNECT not answered with 2xx
    HANDSHAKE = "handshake"  # ended before both Finished
    FIRST_READ = "first_read"  # ended right after the handshake (TLS 1.3 late rejection)
    HTTP = "http"  # ended during/after the HTTP exchange
    ESTABLISHED = "established"  # handshake done, nothing went wrong while we looked


class Outcome(str, enum.Enum):
    ESTABLISHED = "established"  # both Finished, no fatal alert before we stopped looking
    REJECTED_BY_SERVER = "rejected_by_server"  # fatal alert from the server side
    REJECTED_BY_CLIENT = "rejected_by_client"  # fatal alert from the client side
    ABORTED = "aborted"  # RST/EOF mid-handshake, no alert
    NO_ANSWER = "no_answer"  # ClientHello sent, nothing came back before timeout
    NOT_TLS = "not_tls"  # the peer answered with something that is not TLS
    INCOMPLETE = "incomplete"  # not enough evidence to tell (capture cut, gap)


class CertKind(str, enum.Enum):
    """Which client credentials an attempt offered."""

    NONE = "none"
    UNTRUSTED = "untrusted"  # throwaway certificate from a CA made on the fly
    AGENT = "agent"  # the operator-supplied agent certificate
    UNKNOWN = "unknown"  # capture: we did not choose
