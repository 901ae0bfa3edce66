"""A small threaded TCP service on loopback: the lifecycle shared by our servers and middleboxes.

Boundary: listening, accepting, one thread per connection, and a clean, idempotent stop that
leaves no thread or socket behind. What happens on a connection is the subclass's `handle`.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import threading
import time
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

#: Errors a hostile or vanishing peer can cause; a handler swallows these quietly.
PEER_ERRORS = (OSError, ssl.SSLError, EOFError, ValueError, UnicodeError)


class TcpService:
    """Accepts connections on `host:port` and runs `handle(sock, peer)` in a thread for each."""

    #: Most connections handled at once; more are closed on accept.
    max_connections = 64
    #: Default timeout on accepted sockets, so no handler blocks forever.
    io_timeout = 10.0

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        #: One record per finished connection (subclasses append via `record`).
        self.seen: list[Any] = []
        self._seen_cond = threading.Condition()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self):  # -> Self (3.10 compatible)
        if self._listener is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(128)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping.clear()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"{type(self).__name__}-accept-{self.port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut live connections, join every thread. Safe to call twice."""
        if self._listener is None:
            return
        self._stopping.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join()
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join()
        for s in conns:
            with contextlib.suppress(OSError):
                s.close()
        for own in (self._listener, self._wake_r, self._wake_w):
            if own is not None:
                own.close()
        self._listener = self._wake_r = self._wake_w = None
        self._accept_thread = None
        with self._lock:
            self._conns.clear()
            self._threads.clear()

    def __enter__(self):
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def live_threads(self) -> int:
        """Connection threads still running (0 after stop)."""
        with self._lock:
            return sum(t.is_alive() for t in self._threads)

    # -- what was seen -------------------------------------------------------------------------

    def record(self, item: Any) -> None:
        with self._seen_cond:
            self.seen.append(item)
            self._seen_cond.notify_all()

    def wait_seen(self, count: int = 1, timeout: float = 5.0) -> list[Any]:
        """Block until at least `count` connections have ended; return a snapshot of `seen`."""
        deadline = time.monotonic() + timeout
        with self._seen_cond:
            while len(self.seen) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"saw {len(self.seen)} connections, wanted {count}")
                self._seen_cond.wait(left)
            return list(self.seen)

    # -- tracking helpers for subclasses -------------------------------------------------------

    def track(self, sock: socket.socket) -> None:
        """Register a socket (an upstream one, or the SSLSocket wrapping an accepted one) so
        stop() cuts it too. A socket tracked while stopping is cut at once."""
        with self._lock:
            self._conns.add(sock)
        if self._stopping.is_set():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.discard(sock)

    # -- internals -----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                ready = sel.select()
                if any(key.fileobj is self._wake_r for key, _ in ready):
                    return
                try:
                    sock, peer = self._listener.accept()
                except OSError:
                    continue
                self._spawn(sock, peer)

    def _spawn(self, sock: socket.socket, peer: tuple) -> None:
        with self._lock:
            self._threads = {t for t in self._threads if t.is_alive()}
            if len(self._threads) >= self.max_connections or self._stopping.is_set():
                sock.close()
                return
            self._conns.add(sock)
            t = threading.Thread(
                target=self._run_handler,
                args=(sock, peer),
                name=f"{type(self).__name__}-conn-{peer[1]}",
                daemon=True,
            )
            self._threads.add(t)
        t.start()

    def _run_handler(self, sock: socket.socket, peer: tuple) -> None:
        sock.settimeout(self.io_timeout)
        try:
            self.handle(sock, peer)
        except PEER_ERRORS as exc:
            log.debug("%s: connection from %s ended: %s", type(self).__name__, peer, exc)
        except Exception:  # a bug in a handler must not kill the service or print a traceback
            log.debug("%s: handler failed", type(self).__name__, exc_info=True)
        finally:
            self.untrack(sock)
            with contextlib.suppress(OSError):
                sock.close()

    def handle(self, sock: socket.socket, peer: tuple) -> None:
        raise NotImplementedError
