"""Record a large capture of real TLS traffic, for bench/analyze_vs_tshark.py.

Usage:
    python bench/make_big_capture.py [--handshakes 22000] [--bulk 16] [--bulk-mb 64]
                                     [--ethernet] [--bulk-pace 0.008] [--out FILE]

Writes OUT (pcap) and OUT.keys (the clients' NSS key log, 0600). By default the traffic runs
on 127.0.0.1 and is recorded by ``tcpdump -i lo`` into bench/out/loopback.pcap: loopback's
MTU is 65536 and GSO is on, so bulk data travels in ~64 KB segments (few, large packets).
``--ethernet`` (root; needs ``ip`` and ``ethtool``) records a capture with real-network
packet sizes instead, into bench/out/ethernet.pcap: servers and clients run in two network
namespaces this script creates (``mtlsbench-srv`` 10.203.0.1/30, ``mtlsbench-cli``
10.203.0.2/30) joined by a veth pair with MTU 1500 and TSO/GSO/GRO off, and tcpdump listens
on the server's veth, so the file is Ethernet frames of at most 1514 bytes (checked after
recording). The namespaces are removed on every exit path; no traffic leaves them.
Five Python ``ssl`` servers (TLS 1.3 / TLS 1.2, without and with a required
client certificate, and one that asks but does not require), two client processes doing
``--handshakes`` short connections between them (with and without a client certificate;
a required certificate that is missing ends in an alert), then ``--bulk`` connections that
each carry ``--bulk-mb`` MB of application data. Fails when tcpdump reports dropped packets.
The test PKI is made on the fly and lives only in a private temp dir.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtlsprobe.live import pki

OUT = Path(__file__).resolve().parent / "out" / "loopback.pcap"
ETHERNET_OUT = OUT.with_name("ethernet.pcap")
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
ETHERNET_MAX_FRAME = 1514  # MTU 1500 plus the 14-byte Ethernet header


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


# --- network ------------------------------------------------------------------------


@dataclass(frozen=True)
class Net:
    """Where the servers listen, and where tcpdump records them."""

    server_ip: str = "127.0.0.1"
    interface: str = "lo"
    server_ns: str | None = None  # network namespace of the servers and of tcpdump
    client_ns: str | None = None


LOOPBACK = Net()
ETHERNET = Net("10.203.0.1", "mtlsb-srv", "mtlsbench-srv", "mtlsbench-cli")
_ETHERNET_CLIENT = ("10.203.0.2", "mtlsb-cli")
_CLONE_NEWNET = 0x40000000


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.strip()}")


def enter_netns(name: str | None) -> None:
    """Move the calling (single-threaded, freshly forked) process into namespace NAME."""
    if name is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


@contextlib.contextmanager
def ethernet_link(net: Net) -> Iterator[None]:
    """Two namespaces joined by an MTU-1500 veth pair without segmentation offloads."""
    assert net.server_ns and net.client_ns
    for tool in ("ip", "ethtool"):
        if shutil.which(tool) is None:
            raise SystemExit(f"--ethernet needs {tool} (apt-get install iproute2 ethtool)")
    existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for ns in (net.server_ns, net.client_ns):
        if re.search(rf"^{re.escape(ns)}(\s|$)", existing, re.M):
            raise SystemExit(f"network namespace {ns} exists (another run, or a killed one: "
                             f"ip netns del {ns})")
    client_ip, client_if = _ETHERNET_CLIENT
    created: list[str] = []
    try:
        for ns in (net.server_ns, net.client_ns):
            _run("ip", "netns", "add", ns)
            created.append(ns)
        _run("ip", "-n", net.server_ns, "link", "add", net.interface, "mtu", "1500",
             "type", "veth", "peer", "name", client_if, "mtu", "1500", "netns", net.client_ns)
        for ns, ifname, ip in ((net.server_ns, net.interface, net.server_ip),
                               (net.client_ns, client_if, client_ip)):
            _run("ip", "netns", "exec", ns, "ethtool", "-K", ifname,
                 "tso", "off", "gso", "off", "gro", "off")
            _run("ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", ifname)
            _run("ip", "-n", ns, "link", "set", ifname, "up")
        yield
    finally:
        for ns in reversed(created):  # deleting a namespace also deletes its end of the veth
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def largest_frame(pcap: Path) -> tuple[int, int, int]:
    """(link type, packet count, largest original frame length) of a classic pcap file."""
    with pcap.open("rb") as f:
        head = f.read(24)
        endian = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<",
                  b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}.get(head[:4])
        if endian is None:
            raise SystemExit(f"{pcap}: not a classic pcap file")
        linktype = int.from_bytes(head[20:24], "little" if endian == "<" else "big")
        count = largest = 0
        order = "little" if endian == "<" else "big"
        while len(rec := f.read(16)) == 16:
            count += 1
            largest = max(largest, int.from_bytes(rec[12:16], order))
            f.seek(int.from_bytes(rec[8:12], order), os.SEEK_CUR)
    return linktype, count, largest


# --- servers ------------------------------------------------------------------------


def _serve_one(ctx: ssl.SSLContext, conn: socket.socket, pace: float) -> None:
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            request = tls.recv(64)
            if request.startswith(b"BULK"):
                size = int(request.split()[1])
                sent = 0
                while sent < size:
                    tls.sendall(BULK_BLOCK[: min(len(BULK_BLOCK), size - sent)])
                    sent += len(BULK_BLOCK)
                    time.sleep(pace)  # keep tcpdump from dropping packets
            else:
                tls.sendall(RESPONSE)
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


def _listener(name: str, files: dict[str, Path], ready: mp.Queue, host: str,
              pace: float) -> None:
    version, mode = SERVERS[name]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files["server"], files["server_key"])
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    ctx.verify_mode = mode
    if mode != ssl.CERT_NONE:
        ctx.load_verify_locations(files["ca"])
    sock = socket.create_server((host, 0), backlog=512)
    ready.put((name, sock.getsockname()[1]))
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=_serve_one, args=(ctx, conn, pace), daemon=True).start()


def server_process(files: dict[str, Path], ready: mp.Queue, net: Net, pace: float) -> None:
    enter_netns(net.server_ns)  # before any thread: threads inherit the namespace
    threads = [
        threading.Thread(target=_listener, args=(n, files, ready, net.server_ip, pace),
                         daemon=True)
        for n in SERVERS
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
                   files: dict[str, Path], keylog: Path, done: mp.Queue, net: Net) -> None:
    """jobs: (server name, port, with client cert, bulk bytes or 0)."""
    enter_netns(net.client_ns)
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
                socket.create_connection((net.server_ip, port)) as raw,
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


def record(out: Path, handshakes: int, bulk: int, bulk_mb: int, workers: int = 2,
           net: Net = LOOPBACK, pace: float = BULK_PACE) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="mtlsprobe-bigcap-"))
    tmp.chmod(0o700)
    server = tcpdump = None
    procs: list[mp.Process] = []
    partial = out.with_suffix(".partial")
    try:
        files = make_pki(tmp)
        ready: mp.Queue = mp.Queue()
        server = mp.Process(target=server_process, args=(files, ready, net, pace), daemon=True)
        server.start()
        ports = dict(ready.get(timeout=30) for _ in SERVERS)
        in_ns = ["ip", "netns", "exec", net.server_ns] if net.server_ns else []
        tcpdump = subprocess.Popen(
            [*in_ns, "tcpdump", "-i", net.interface, "-s", "0", "-B", str(256 * 1024),
             "--immediate-mode", "-w", str(partial),
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
            mp.Process(target=client_process, args=(w, jobs[w], files, keylogs[w], done, net))
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
        tcpdump.send_signal(signal.SIGINT)
        _, err = tcpdump.communicate(timeout=60)
        dropped = re.search(r"(\d+) packets? dropped by kernel", err)
        print(err.strip(), file=sys.stderr)
        if dropped is None or int(dropped.group(1)) != 0:
            raise SystemExit(f"tcpdump dropped packets: {err.strip()}")
        if net.server_ns:
            linktype, count, largest = largest_frame(partial)
            print(f"link type {linktype}, {count} frames, largest {largest} bytes",
                  file=sys.stderr)
            if linktype != 1 or largest > ETHERNET_MAX_FRAME:
                raise SystemExit(f"not an Ethernet capture with frames <= {ETHERNET_MAX_FRAME} "
                                 f"bytes: link type {linktype}, largest frame {largest}")
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
        for p in [*procs, server]:
            if p is not None and p.is_alive():
                p.kill()
                p.join()
        partial.unlink(missing_ok=True)  # only left on failure: never a half capture as OUT
        shutil.rmtree(tmp, ignore_errors=True)


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM/SIGHUP unwind like Ctrl-C: every finally runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--handshakes", type=int, default=22000)
    ap.add_argument("--bulk", type=int, default=16)
    ap.add_argument("--bulk-mb", type=int, default=64)
    ap.add_argument("--ethernet", action="store_true",
                    help="MTU-1500 veth between two network namespaces instead of loopback")
    ap.add_argument("--bulk-pace", type=float, default=BULK_PACE,
                    help="seconds between 1 MiB bulk blocks (raise it if tcpdump drops packets)")
    ap.add_argument("--out", type=Path, help=f"default {OUT} ({ETHERNET_OUT} with --ethernet)")
    args = ap.parse_args()
    out = args.out or (ETHERNET_OUT if args.ethernet else OUT)
    net = ETHERNET if args.ethernet else LOOPBACK
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate_as_interrupt)
    with ethernet_link(net) if args.ethernet else contextlib.nullcontext():
        record(out, args.handshakes, args.bulk, args.bulk_mb, net=net, pace=args.bulk_pace)


if __name__ == "__main__":
    main()
