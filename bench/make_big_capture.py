"""Record a large capture of real TLS traffic on loopback, for bench/analyze_vs_tshark.py.

Usage:
    python bench/make_big_capture.py [--handshakes 22000] [--bulk 16] [--bulk-mb 64]
                                     [--out bench/out/loopback.pcap]

Writes OUT (pcap, via ``tcpdump -i lo``) and OUT.keys (the clients' NSS key log, 0600).
Five Python ``ssl`` servers on 127.0.0.1 (TLS 1.3 / TLS 1.2, without and with a required
client certificate, and one that asks but does not require), two client processes doing
``--handshakes`` short connections between them (with and without a client certificate;
a required certificate that is missing ends in an alert), then ``--bulk`` connections that
each carry ``--bulk-mb`` MB of application data. Fails when tcpdump reports dropped packets.
The test PKI is made on the fly and lives only in a private temp dir.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtlsprobe import pki

OUT = Path(__file__).resolve().parent / "out" / "loopback.pcap"
# name -> (TLS version, client certificate mode)
SERVERS = {
    "tls13": (ssl.TLSVersion.TLSv1_3, ssl.CERT_NONE),
    "tls13-mtls": (ssl.TLSVersion.TLSv1_3, ssl.CERT_REQUIRED),
    "tls12": (ssl.TLSVersion.TLSv1_2, ssl.CERT_NONE),
    "tls12-mtls": (ssl.TLSVersion.TLSv1_2, ssl.CERT_REQUIRED),
    "optional": (None, ssl.CERT_OPTIONAL),
}
RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
BULK_BLOCK = os.urandom(1 << 20)
BULK_PACE = 0.008  # seconds between 1 MiB blocks: ~125 MB/s per bulk connection


def make_pki(tmp: Path) -> dict[str, Path]:
    ca = pki.CA("bench Root CA", org="mtlsprobe bench")
    inter = ca.intermediate("bench Issuing CA", org="mtlsprobe bench")
    server = inter.issue("bench.test", sans=("bench.test", "localhost", "127.0.0.1"))
    client = inter.issue("bench-agent-01", eku=(pki.CLIENT_AUTH,))
    files = {
        "ca": ca.cert_pem, "server": server.chain_pem, "server_key": server.key_pem(),
        "client": client.chain_pem, "client_key": client.key_pem(),
    }
    out = {}
    for name, data in files.items():
        p = tmp / f"{name}.pem"
        p.write_bytes(data)
        p.chmod(0o600)
        out[name] = p
    return out


# --- servers ------------------------------------------------------------------------


def _serve_one(ctx: ssl.SSLContext, conn: socket.socket) -> None:
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            request = tls.recv(64)
            if request.startswith(b"BULK"):
                size = int(request.split()[1])
                sent = 0
                while sent < size:
                    tls.sendall(BULK_BLOCK[: min(len(BULK_BLOCK), size - sent)])
                    sent += len(BULK_BLOCK)
                    time.sleep(BULK_PACE)  # keep tcpdump from dropping loopback packets
            else:
                tls.sendall(RESPONSE)
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


def _listener(name: str, files: dict[str, Path], ready: mp.Queue) -> None:
    version, mode = SERVERS[name]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files["server"], files["server_key"])
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    ctx.verify_mode = mode
    if mode != ssl.CERT_NONE:
        ctx.load_verify_locations(files["ca"])
    sock = socket.create_server(("127.0.0.1", 0), backlog=512)
    ready.put((name, sock.getsockname()[1]))
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=_serve_one, args=(ctx, conn), daemon=True).start()


def server_process(files: dict[str, Path], ready: mp.Queue) -> None:
    threads = [
        threading.Thread(target=_listener, args=(n, files, ready), daemon=True) for n in SERVERS
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# --- clients ------------------------------------------------------------------------


def _client_ctx(files: dict[str, Path], keylog: Path, cert: bool,
                version: ssl.TLSVersion | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(files["ca"])
    ctx.keylog_filename = str(keylog)
    if cert:
        ctx.load_cert_chain(files["client"], files["client_key"])
    if version is not None:
        ctx.maximum_version = version
    return ctx


def client_process(worker: int, jobs: list[tuple[str, int, bool, int]],
                   files: dict[str, Path], keylog: Path, done: mp.Queue) -> None:
    """jobs: (server name, port, with client cert, bulk bytes or 0)."""
    contexts: dict[tuple[bool, str], ssl.SSLContext] = {}
    ok = failed = 0
    for i, (name, port, cert, bulk) in enumerate(jobs):
        version = ssl.TLSVersion.TLSv1_2 if (name == "optional" and i % 2) else None
        key = (cert, f"{version}")
        if key not in contexts:
            contexts[key] = _client_ctx(files, keylog, cert, version)
        sni = f"svc{(worker * 7 + i) % 50}.bench.test"
        try:
            request = f"BULK {bulk}\r\n".encode() if bulk else b"GET / HTTP/1.0\r\n\r\n"
            with (
                socket.create_connection(("127.0.0.1", port)) as raw,
                contexts[key].wrap_socket(raw, server_hostname=sni) as tls,
            ):
                tls.sendall(request)
                while tls.recv(1 << 16):
                    pass
            ok += 1
        except (OSError, ssl.SSLError):
            failed += 1
    done.put((worker, ok, failed))


# --- capture ------------------------------------------------------------------------


def record(out: Path, handshakes: int, bulk: int, bulk_mb: int, workers: int = 2) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="mtlsprobe-bigcap-"))
    tmp.chmod(0o700)
    server = tcpdump = None
    try:
        files = make_pki(tmp)
        ready: mp.Queue = mp.Queue()
        server = mp.Process(target=server_process, args=(files, ready), daemon=True)
        server.start()
        ports = dict(ready.get(timeout=30) for _ in SERVERS)
        partial = out.with_suffix(".partial")
        tcpdump = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-s", "0", "-B", str(256 * 1024), "--immediate-mode",
             "-w", str(partial),
             " or ".join(f"tcp port {p}" for p in ports.values())],
            stderr=subprocess.PIPE, text=True,
        )
        assert tcpdump.stderr is not None
        for line in tcpdump.stderr:
            if "listening on" in line:
                break
        else:
            raise SystemExit("tcpdump did not start")
        names = list(SERVERS)
        jobs: list[list[tuple[str, int, bool, int]]] = [[] for _ in range(workers)]
        for i in range(handshakes):
            name = names[i % len(names)]
            cert = (i // len(names)) % 3 != 0  # two thirds offer a client certificate
            jobs[i % workers].append((name, ports[name], cert, 0))
        for i in range(bulk):
            name = ("tls13", "tls12", "tls13-mtls", "tls12-mtls")[i % 4]
            jobs[i % workers].append((name, ports[name], True, bulk_mb << 20))
        keylogs = [tmp / f"keys-{w}.log" for w in range(workers)]
        for k in keylogs:
            k.touch(mode=0o600)
        done: mp.Queue = mp.Queue()
        start = time.perf_counter()
        procs = [
            mp.Process(target=client_process, args=(w, jobs[w], files, keylogs[w], done))
            for w in range(workers)
        ]
        for p in procs:
            p.start()
        results = [done.get() for _ in procs]
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - start
        ok = sum(r[1] for r in results)
        failed = sum(r[2] for r in results)
        print(f"{ok} connections completed, {failed} ended in a TLS error (expected for "
              f"missing client certs), {elapsed:.0f} s", file=sys.stderr)
        # let tcpdump drain its ring: wait until the file stops growing
        size = -1
        while partial.stat().st_size != size:
            size = partial.stat().st_size
            time.sleep(2.0)
        tcpdump.send_signal(2)
        _, err = tcpdump.communicate(timeout=60)
        dropped = re.search(r"(\d+) packets? dropped by kernel", err)
        print(err.strip(), file=sys.stderr)
        if dropped is None or int(dropped.group(1)) != 0:
            raise SystemExit(f"tcpdump dropped packets: {err.strip()}")
        keys = out.with_name(out.name + ".keys")
        with keys.open("w") as f:
            keys.chmod(0o600)
            for k in keylogs:
                f.write(k.read_text())
        partial.replace(out)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.0f} MB) and {keys}", file=sys.stderr)
    finally:
        if tcpdump is not None and tcpdump.poll() is None:
            tcpdump.kill()
            tcpdump.wait()
        if server is not None:
            server.kill()
            server.join()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--handshakes", type=int, default=22000)
    ap.add_argument("--bulk", type=int, default=16)
    ap.add_argument("--bulk-mb", type=int, default=64)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    record(args.out, args.handshakes, args.bulk, args.bulk_mb)


if __name__ == "__main__":
    main()
