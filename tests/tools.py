"""Real external programs on loopback for the tests: openssl s_server, tinyproxy, mitmdump.

Each runs with its own config/keys/log in a private work dir, is declared ready only when it
says so (a printed line) or its port accepts, and is always stopped (terminate, then kill) with
its pipes closed. Nothing here sleeps for synchronisation.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

import pytest
from cryptography import x509

from mtlsprobe.live import pki

READY_TIMEOUT = 20.0


def require_program(name: str) -> str:
    """The program's path, or skip the test with a clear reason when it is not installed."""
    path = (
        shutil.which(name) if os.sep not in name else (name if os.access(name, os.X_OK) else None)
    )
    if path is None:
        pytest.skip(f"{name} is not installed (CI installs it; see scripts/setup-test-env)")
    return path


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def read_http_head(sock: socket.socket) -> bytes:
    """An HTTP message head read byte by byte up to its empty line (or the peer's close), so
    no byte after it (a TLS handshake through a CONNECT tunnel) is taken from the socket."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            break
        head += byte
    return head


def tls_request(raw: socket.socket, ctx: ssl.SSLContext, request: bytes,
                server_hostname: str = "localhost") -> tuple[x509.Certificate, bytes]:
    """TLS over an open socket (closed after), one request: (server leaf as seen, the whole
    raw response up to the server's close)."""
    with raw, ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
        leaf = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        tls.sendall(request)
        out = b""
        while chunk := tls.recv(65536):
            out += chunk
    return leaf, out


def free_port() -> int:
    """A currently free loopback port (for programs that cannot bind port 0 and report it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, proc: subprocess.Popen, timeout: float) -> None:
    """Poll-connect until the port accepts; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{host}:{port} not accepting after {timeout}s") from None
            # Block on the process (not a sleep): returns early if it exits.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.05)


class ExternalProgram:
    """A subprocess whose merged stdout/stderr is collected line by line (and logged to a file)."""

    name = "program"

    def __init__(self, workdir: Path) -> None:
        self.workdir = private_dir(Path(workdir))
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self.log_path = self.workdir / f"{self.name}.out"

    @property
    def output(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def _spawn(self, argv: list[str], *, stdin: bool = False) -> None:
        self.process = subprocess.Popen(
            argv,
            cwd=self.workdir,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"{self.name}-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with open(self.log_path, "w", encoding="utf-8") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                with self._cond:
                    self.lines.append(line)
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_line(
        self, pattern: str, timeout: float = READY_TIMEOUT, start: int = 0
    ) -> re.Match:
        """Wait for an output line (from index `start`) matching the regex; return the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = max(seen, len(self.lines))
                reader_done = self._reader is None or not self._reader.is_alive()
                if reader_done:
                    raise RuntimeError(
                        f"{self.name} ended without printing {pattern!r}:\n" + self.output[-2000:]
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{self.name} did not print {pattern!r} in {timeout}s:\n"
                        + self.output[-2000:]
                    )
                self._cond.wait(min(left, 0.5))

    @property
    def line_count(self) -> int:
        with self._cond:
            return len(self.lines)

    def stop(self) -> None:
        """Terminate (then kill) the process, close its pipes, join the reader. Idempotent."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if self._reader is not None:
            self._reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self):
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self):  # pragma: no cover - overridden
        raise NotImplementedError


class OpenSSLServer(ExternalProgram):
    """`openssl s_server` on 127.0.0.1 (port chosen by the kernel, read from its ACCEPT line).

    verify: "required" (-Verify N: cert mandatory), "request" (-verify N: asks for one, accepts
    any or none), "none". tls: "TLSv1.2" / "TLSv1.3" / None. With `www=False` (echo mode) the
    server obeys stdin commands (see `command`); with -www it serves a status page.
    """

    name = "s_server"

    def __init__(
        self,
        identity: pki.Issued,
        *,
        workdir: Path,
        client_ca: pki.CA | None = None,
        verify: str = "required",
        verify_depth: int = 2,
        tls: str | None = None,
        www: bool = True,
        msg: bool = False,
        resume_on_reneg: bool = False,
        extra_args: tuple[str, ...] = (),
        binary: str = "openssl",
    ) -> None:
        super().__init__(workdir)
        if verify not in ("required", "request", "none"):
            raise ValueError(f"verify must be required|request|none, not {verify!r}")
        self.identity = identity
        self.client_ca = client_ca
        self.verify = verify
        self.verify_depth = verify_depth
        self.tls = tls
        self.www = www
        self.msg = msg
        self.resume_on_reneg = resume_on_reneg
        self.extra_args = extra_args
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def argv(self) -> list[str]:
        cert = write_private(self.workdir / "server-cert.pem", self.identity.cert_pem)
        key = write_private(self.workdir / "server-key.pem", self.identity.key_pem())
        # s_server prints some lines with C stdio (buffered on a pipe): ask for line buffering.
        stdbuf = shutil.which("stdbuf")
        argv = [stdbuf, "-oL", "-eL"] if stdbuf else []
        argv += [self.binary, "s_server", "-accept", f"{self.host}:0"]
        argv += ["-cert", str(cert), "-key", str(key)]
        if self.identity.chain:
            chain = self.identity.chain_pem[len(self.identity.cert_pem) :]
            argv += ["-cert_chain", str(write_private(self.workdir / "chain.pem", chain))]
        if self.client_ca is not None:
            ca = write_private(self.workdir / "client-ca.pem", self.client_ca.cert_pem)
            argv += ["-CAfile", str(ca)]
        if self.verify == "required":
            argv += ["-Verify", str(self.verify_depth)]
        elif self.verify == "request":
            argv += ["-verify", str(self.verify_depth)]
        if self.tls == "TLSv1.2":
            argv.append("-tls1_2")
        elif self.tls == "TLSv1.3":
            argv.append("-tls1_3")
        elif self.tls is not None:
            raise ValueError(f"tls must be TLSv1.2|TLSv1.3|None, not {self.tls!r}")
        if self.www:
            argv.append("-www")
        if self.msg:
            argv.append("-msg")
        if not self.resume_on_reneg:
            argv.append("-no_resumption_on_reneg")  # else 'R' resumes and asks for no cert
        return argv + list(self.extra_args)

    def start(self) -> OpenSSLServer:
        if self.process is not None:
            return self
        self._spawn(self.argv(), stdin=True)
        m = self.wait_for_line(r"^ACCEPT (\S+):(\d+)")
        self.port = int(m.group(2))
        return self

    def command(self, keys: str, *, wait_for: str | None = None, timeout: float = 10.0):
        """Type one line into s_server's stdin (echo mode, a client connected) and optionally
        wait for a regex in the output printed after it; returns the match (or None).

        Keystrokes (OpenSSL 3.0 apps/s_server.c, sv_body): 'R' renegotiate requesting a client
        cert (TLS 1.2; SSL_VERIFY_PEER|CLIENT_ONCE), 'r' renegotiate, 'c' TLS 1.3 post-handshake
        CertificateRequest, 'k'/'K' key update, 'q' end the connection, 'Q' quit the server.
        These print 'SSL_do_handshake -> N'. Any other line goes to the client as data.
        s_server reads stdin in chunks and drops what follows a command in the same chunk, so
        wait for each command's effect before typing the next.
        """
        assert self.process is not None and self.process.stdin is not None
        start = self.line_count
        self.process.stdin.write(keys + "\n")
        self.process.stdin.flush()
        if wait_for is None:
            return None
        return self.wait_for_line(wait_for, timeout=timeout, start=start)


class Tinyproxy(ExternalProgram):
    """tinyproxy in the foreground (-d) with its own config: only 127.0.0.1 may use it, and
    CONNECT is allowed only to `connect_ports` (all ports when empty)."""

    name = "tinyproxy"

    def __init__(
        self,
        *,
        workdir: Path,
        connect_ports: tuple[int, ...] | list[int] = (),
        basic_auth: tuple[str, str] | None = None,
        binary: str = "tinyproxy",
    ) -> None:
        super().__init__(workdir)
        self.connect_ports = tuple(connect_ports)
        self.basic_auth = basic_auth
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = 0
        self.config_path = self.workdir / "tinyproxy.conf"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def config(self) -> str:
        lines = [
            f"Port {self.port}",
            f"Listen {self.host}",
            f"Bind {self.host}",
            "Timeout 30",
            "MaxClients 20",
            "Allow 127.0.0.1",
            "LogLevel Info",
            f'LogFile "{self.workdir / "tinyproxy.log"}"',
            f'PidFile "{self.workdir / "tinyproxy.pid"}"',
            "DisableViaHeader Yes",
        ]
        lines += [f"ConnectPort {p}" for p in self.connect_ports]
        if self.basic_auth:
            lines.append(f"BasicAuth {self.basic_auth[0]} {self.basic_auth[1]}")
        return "\n".join(lines) + "\n"

    def start(self) -> Tinyproxy:
        if self.process is not None:
            return self
        last: Exception | None = None
        for _ in range(3):  # the free port may be taken between our probe and its bind
            self.port = free_port()
            write_private(self.config_path, self.config().encode())
            self._spawn([self.binary, "-d", "-c", str(self.config_path)])
            assert self.process is not None
            try:
                wait_for_port(self.host, self.port, self.process, READY_TIMEOUT)
                return self
            except (RuntimeError, TimeoutError) as exc:
                last = exc
                self.stop()
                self.process = None
        raise RuntimeError(f"tinyproxy did not start: {last}")

    @property
    def log(self) -> str:
        path = self.workdir / "tinyproxy.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Mitmdump(ExternalProgram):
    """mitmdump as a regular (explicit) proxy on 127.0.0.1, CA generated in its own confdir,
    `--ssl-insecure` so it accepts our test servers' certificates upstream."""

    name = "mitmdump"

    @staticmethod
    def default_binary() -> str:
        return "/opt/mitm/bin/mitmdump"

    def __init__(
        self,
        *,
        workdir: Path,
        binary: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(workdir)
        self.binary = binary or self.default_binary()
        self.extra_args = extra_args
        self.host = "127.0.0.1"
        self.port = 0
        self.confdir = private_dir(self.workdir / "conf")

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def ca_cert_path(self) -> Path:
        """The generated CA certificate (PEM) clients must trust to accept its re-signed certs."""
        return self.confdir / "mitmproxy-ca-cert.pem"

    def start(self) -> Mitmdump:
        if self.process is not None:
            return self
        argv = [
            self.binary,
            "--mode", "regular",
            "--listen-host", self.host,
            "--listen-port", "0",
            "--set", f"confdir={self.confdir}",
            "--ssl-insecure",
            *self.extra_args,
        ]  # fmt: skip
        self._spawn(argv)
        m = self.wait_for_line(r"proxy listening at .*:(\d+)", timeout=60)
        self.port = int(m.group(1))
        return self


def drain_pty(master: int) -> bytes:
    """Everything a child wrote to a pseudo-terminal, until it closed it; closes `master`."""
    seen = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        seen += data
    os.close(master)
    return seen
