"""An HTTP CONNECT exchange opening a captured connection (a client talking TLS through a proxy).

Boundary: reads the request and reply heads from a connection's held chunks; the flow
table asks whether one is there (to keep the connection), the transcript and observation
readers take its lengths (stripped from the streams) and its route.

The request and reply become ``route`` (kind "http_proxy", proxy URL, status, reply
headers, auth schemes) and the CONNECT target is the server; a head longer than
``CONNECT_LIMIT`` is not one.
"""

from __future__ import annotations

from mtlsprobe.capture.connection import Connection, Prelude, Side
from mtlsprobe.model import Endpoint, Route

CONNECT_LIMIT = 16384  # an HTTP CONNECT request or response head longer than this is not one


def prelude(conn: Connection) -> Prelude | None:
    """The connection's HTTP CONNECT exchange, if it opens with one (looked for once
    its roles are known, from the chunks then held)."""
    if conn.prelude is False:
        client, server, _ = conn.roles()
        # only a client stream that can start with "CONNECT" is searched for a request
        # head: joining and scanning 16 KiB per TLS connection was a tenth of the flow cost
        could_connect = b"CONNEC".startswith(client.first)  # first: up to 6 bytes
        conn.prelude = (
            connect_prelude(conn, client, server, final=True) if could_connect else None
        )
    return conn.prelude  # type: ignore[return-value]


def connect_pending(conn: Connection) -> bool:
    """Whether the client may be sending an HTTP CONNECT exchange not complete yet."""
    if conn.prelude is not False:
        return False
    client, server, _ = conn.roles()
    return b"CONNEC".startswith(client.first) and (
        connect_prelude(conn, client, server, final=False) is None
    )


def _head(conn: Connection, side: Side, limit: int = CONNECT_LIMIT) -> bytes:
    parts, n = [], 0
    for s, _at, data in conn.chunks:
        if s is side:
            parts.append(data)
            n += len(data)
            if n >= limit:
                break
    return b"".join(parts)


def _decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "³" and the like, which int() refuses."""
    return text.isascii() and text.isdigit()


def _http_head(data: bytes) -> tuple[list[str], int] | None:
    """(lines, length) of an HTTP message head ending with an empty line, or None."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    return data[:end].decode("latin-1").split("\r\n"), end + 4


def connect_prelude(
    conn: Connection, client: Side, server: Side, *, final: bool
) -> Prelude | None:
    """An HTTP CONNECT exchange opening the connection: (route, target, request length,
    response length). None while incomplete or when it is not one."""
    request = _http_head(_head(conn, client))
    response = _http_head(_head(conn, server))
    if request is None or response is None:
        return None
    (req_lines, req_len), (resp_lines, resp_len) = request, response
    method, _, rest = req_lines[0].partition(" ")
    authority = rest.split(" ")[0]
    host, _, port = authority.rpartition(":")
    status_line = resp_lines[0].split(" ", 2)
    if method != "CONNECT" or not _decimal(port) or not status_line[0].startswith("HTTP/"):
        return None
    if len(status_line) < 2 or not _decimal(status_line[1]):
        return None
    headers = tuple(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in resp_lines[1:])
    )
    schemes = tuple(v.split(" ")[0] for k, v in headers if k.lower() == "proxy-authenticate")
    proxy = server.addr
    route = Route(
        kind="http_proxy",
        proxy=f"http://{'[' + proxy[0] + ']' if ':' in proxy[0] else proxy[0]}:{proxy[1]}",
        source="capture",
        connect_status=int(status_line[1]),
        connect_reason=status_line[2] if len(status_line) > 2 else "",
        connect_headers=headers,
        proxy_auth_schemes=schemes,
    )
    target = Endpoint(host=host.strip("[]"), port=int(port))
    return route, target, req_len, resp_len
