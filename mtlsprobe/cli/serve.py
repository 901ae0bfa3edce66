"""`mtlsprobe serve`: the reference mTLS listener that `probe --reflector` compares against.

Options -> mtlsprobe.live.reflector.Reflector -> one line per answered connection on stdout.
No logic here beyond argument checks; the listener writes no files.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from mtlsprobe.cli.common import TOOL_EXIT_CODES_HELP
from mtlsprobe.live.files import read_limited
from mtlsprobe.model.errors import EnvironmentProblem
from mtlsprobe.report.escape import terminal

PRIVILEGED_BELOW = 1024


def parse_listen(text: str) -> tuple[str, int]:
    """ADDR:PORT, [v6]:PORT or :PORT (all IPv4 addresses). Raises click.BadParameter."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) < 65536:
        raise click.BadParameter(f"{text!r}: expected ADDR:PORT (port 0-65535)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


def answered_line(echo: dict[str, object]) -> str:
    """One line for an answered connection; the server name is the client's (escaped)."""
    hello = echo.get("client_hello") or {}
    tls = echo.get("tls") or {}
    chain = echo.get("client_chain_sha256") or []
    assert isinstance(hello, dict) and isinstance(tls, dict) and isinstance(chain, list)
    return terminal(
        f"{echo.get('peer')} {tls.get('version')} ja3={hello.get('ja3')} "
        f"sni={hello.get('sni') or '-'} client_cert="
        f"{chain[0][:16] + '...' if chain else 'none'}"
    )


@click.command(epilog=TOOL_EXIT_CODES_HELP)
@click.option("--listen", default="0.0.0.0:18383", show_default=True, metavar="ADDR:PORT",
              help="Where to listen: a spare port next to the server, or the real port "
                   "during a maintenance window.")
@click.option("--cert", type=click.Path(dir_okay=False, path_type=Path),
              help="Server certificate chain (PEM/DER). Default: a throwaway one made now.")
@click.option("--key", type=click.Path(dir_okay=False, path_type=Path),
              help="Its private key (PEM/DER; may be encrypted: $MTLSPROBE_KEY_PASSWORD or a "
                   "prompt).")
@click.option("--name", "names", multiple=True, metavar="DNS|IP",
              help="Names for the generated certificate (repeatable; default: this host).")
@click.option("--client-ca", type=click.Path(dir_okay=False, path_type=Path),
              help="PEM CA bundle named in the CertificateRequest (any client certificate is "
                   "still accepted and echoed).")
@click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Shared secret to HMAC-sign each echo (else $MTLSPROBE_REFLECTOR_SECRET; "
                   "unsigned without either).")
@click.option("--max-connections", type=click.IntRange(1, 1024), default=16,
              show_default=True, help="Connections handled at once; more are closed.")
@click.option("--timeout", type=click.FloatRange(0.05, 600), default=10.0, show_default=True,
              help="Deadline in seconds for each connection.")
@click.option("--stop-after", type=click.IntRange(1), metavar="N",
              help="Exit after answering N connections (default: run until interrupted).")
@click.option("--allow-privileged", is_flag=True,
              help="Allow a port below 1024 (e.g. 443 during a maintenance window).")
def serve(
    listen: str,
    cert: Path | None,
    key: Path | None,
    names: tuple[str, ...],
    client_ca: Path | None,
    secret_file: Path | None,
    max_connections: int,
    timeout: float,
    stop_after: int | None,
    allow_privileged: bool,
) -> None:
    """Run an mTLS listener that echoes what each connection brought.

    It requests a client certificate (accepting any), and answers every connection
    (HTTP GET or raw) with JSON: the ClientHello digest, JA3 and offer, the client chain
    (SHA-256), version, cipher, peer address and its own chain. Run it on or next to the
    real server, then from the agent: `mtlsprobe probe --reflector HOST:PORT`. A
    different ClientHello, a lost client certificate or another server certificate on
    the way proves something re-originates TLS.
    """
    from mtlsprobe.live import reflector
    from mtlsprobe.live.reflector_echo import read_secret
    from mtlsprobe.model.certs import cert_info

    host, port = parse_listen(listen)
    if 0 < port < PRIVILEGED_BELOW and not allow_privileged:
        raise click.UsageError(
            f"port {port} is privileged (<{PRIVILEGED_BELOW}); add --allow-privileged if you "
            "mean it (e.g. the real port during a maintenance window)"
        )
    if bool(cert) != bool(key):
        raise click.UsageError("--cert and --key go together")
    if cert and names:
        raise click.UsageError("--name applies to the generated certificate only")
    secret = read_secret(secret_file)
    if cert and key:
        from mtlsprobe.live.credentials import password_from

        chain_pem, key_pem = reflector.identity_from_files(
            cert, key, password=lambda: password_from(None)
        )
    else:
        chain_pem, key_pem = reflector.generated_identity(names or _default_names(host))
    ca_pem = None
    if client_ca:
        ca_pem = read_limited(client_ca, "certificate")

    def announce(echo: dict[str, object]) -> None:
        click.echo(answered_line(echo))

    server = reflector.Reflector(
        chain_pem=chain_pem, key_pem=key_pem, host=host, port=port, client_ca_pem=ca_pem,
        secret=secret, max_connections=max_connections, timeout=timeout, on_answer=announce,
    )
    try:
        server.start()
    except OSError as exc:
        raise EnvironmentProblem(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        leaf = cert_info(server.chain[0])
        click.echo(f"mtlsprobe serve: listening on {_show(server.host, server.port)}")
        click.echo(f"  certificate {terminal(leaf.subject)} sha256 {leaf.sha256} "
                   f"pin {leaf.spki_pin}")
        click.echo(f"  client certificates: requested, any accepted; CA names: "
                   f"{terminal('; '.join(server.client_ca_names)) or '(none)'}")
        click.echo(f"  echo {'HMAC-signed' if secret else 'unsigned'}; at most "
                   f"{max_connections} at once, {timeout:g} s each; no files written")
        click.echo(f"  from the agent: mtlsprobe probe --reflector HOST:{server.port}"
                   + (" --reflector-secret-file FILE" if secret else ""), nl=True)
        sys.stdout.flush()
        while not stop.is_set():
            if stop_after is not None and server.wait_answered(stop_after, timeout=0.5):
                break
            if stop_after is None:
                stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    click.echo(f"mtlsprobe serve: stopped after {server.answered} answered connection(s)")


def _default_names(host: str) -> tuple[str, ...]:
    names = [socket.gethostname() or "localhost"]
    if host not in ("0.0.0.0", "::", ""):
        names.append(host)
    return tuple(dict.fromkeys(names))


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
