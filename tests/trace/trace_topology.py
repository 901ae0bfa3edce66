"""A line of four namespaces for the hop-trace tests, built on the issue-4 lab helpers.

    agent --- r1 --- r2 --- server
       10.252.1.0/24  10.252.2.0/24  10.252.3.0/24

r1 and r2 forward (ip_forward inside those namespaces only), so the server is three hops
from the agent: hop 1 answers from 10.252.1.1, hop 2 from 10.252.2.2. Plumbing (namespace
creation, exec, nft, teardown that kills leftovers) is ``tests/lab/netns.Topology``'s;
only the shape and the addresses (10.252.0.0/16, this suite's range) are ours.
Daemons run inside a namespace with ``ip netns exec`` and a tiny ``python -c`` script that
prints "ready" and exits when its stdin closes.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from lab.netns import LabError, Topology, run

REPO = Path(__file__).resolve().parents[2]
AGENT, HOP1, HOP2, SERVER = "10.252.1.2", "10.252.1.1", "10.252.2.2", "10.252.3.2"
ROLES = ("agent", "r1", "r2", "server")
LINKS = (  # (role, ifname, address) pairs of each veth
    (("agent", "to-r1", "10.252.1.2"), ("r1", "to-agent", "10.252.1.1")),
    (("r1", "to-r2", "10.252.2.1"), ("r2", "to-r1", "10.252.2.2")),
    (("r2", "to-server", "10.252.3.1"), ("server", "to-r2", "10.252.3.2")),
)
ROUTES = {
    "agent": [("default", "10.252.1.1")],
    "r1": [("10.252.3.0/24", "10.252.2.2")],
    "r2": [("10.252.1.0/24", "10.252.2.1")],
    "server": [("default", "10.252.3.1")],
}


class TraceTopology(Topology):
    """agent - r1 - r2 - server; see the module docstring."""

    def __init__(self, tag: str = "trace") -> None:
        super().__init__(tag)
        self.names = {role: self.prefix + role for role in ROLES}

    def _create(self) -> None:
        for role in ROLES:
            run(["ip", "netns", "add", self.ns(role)])
            self.created.append(self.ns(role))
            self.ip(role, "link", "set", "lo", "up")
        for (lrole, lif, laddr), (rrole, rif, raddr) in LINKS:
            run(["ip", "link", "add", lif, "netns", self.ns(lrole), "type", "veth",
                 "peer", "name", rif, "netns", self.ns(rrole)])
            for role, ifname, addr in ((lrole, lif, laddr), (rrole, rif, raddr)):
                self.ip(role, "addr", "add", f"{addr}/24", "dev", ifname)
                self.ip(role, "link", "set", ifname, "up")
        for role, routes in ROUTES.items():
            for dest, via in routes:
                self.ip(role, "route", "add", dest, "via", via)
        for role in ("r1", "r2"):
            self.sysctl(role, "net.ipv4.ip_forward", "1")
            # tests send many TTL-limited probes within seconds: no ICMP rate limit here
            # (real routers do limit; the trace retries once and tolerates silent hops)
            self.sysctl(role, "net.ipv4.icmp_ratelimit", "0")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@contextlib.contextmanager
def daemon(topo: TraceTopology, role: str, script: str, *args: str,
           timeout: float = 20.0) -> Iterator[subprocess.Popen]:
    """Run `script` in `role`'s namespace until the block ends; wait for its "ready" line."""
    proc = subprocess.Popen(
        topo.argv(role, [sys.executable, "-c", script, *args]), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "ready" or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate(timeout=5)
            raise LabError(f"{role} daemon not ready: {line!r} {err[-2000:]}")
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                proc.stdin.close()  # type: ignore[union-attr]
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


SERVER_SCRIPT = """
import sys
from mtlsprobe.live import pki
from mtlsprobe_demo.server import ReferenceServer
ca = pki.CA("Trace Lab Root", org="mtlsprobe trace lab")
leaf = ca.issue("server.lab", sans=("server.lab", "10.252.3.2"), eku=(pki.SERVER_AUTH,))
open(sys.argv[1], "wb").write(ca.cert_pem)
s = ReferenceServer(leaf, verify="none", host="10.252.3.2", port=443).start()
print("ready", flush=True)
sys.stdin.read()
s.stop()
"""

INTERCEPTOR_SCRIPT = """
import sys
from mtlsprobe_demo.intercepting_proxy import InterceptingProxy
p = InterceptingProxy(upstream=("10.252.3.2", 443), host="0.0.0.0", port=8443).start()
print("ready", flush=True)
sys.stdin.read()
p.stop()
"""

REDIRECT_NFT = """
table ip mtlstrace {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "to-r1" tcp dport 443 redirect to :8443
    }
}
"""

RESET_HELLO_NFT = """
table inet mtlstrace {
    chain forward {
        type filter hook forward priority filter; policy accept;
        tcp dport 443 @ih,0,8 0x16 reject with tcp reset
    }
}
"""

MSS_CLAMP_NFT = """
table inet mtlstrace {
    chain forward {
        type filter hook forward priority filter; policy accept;
        tcp flags syn tcp option maxseg size set 1200
    }
}
"""


@contextlib.contextmanager
def nft_rules(topo: TraceTopology, role: str, script: str) -> Iterator[None]:
    topo.nft(role, script)
    try:
        yield
    finally:
        topo.exec(role, ["nft", "delete", "table", *script.split()[1:3]], check=False)
