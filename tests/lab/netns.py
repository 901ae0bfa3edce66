"""The lab's network: four namespaces in a line, built and removed with iproute2.

    agent --- router --- middlebox --- server
    10.251.1.0/24  10.251.2.0/24   10.251.3.0/24   (and fd00:251:N::/64)

The router and the middlebox forward (ip_forward in those namespaces only), so the
middlebox is never adjacent to the agent, and "direct" traffic crosses both as plain
routers. Veth pairs are created straight inside their namespaces (nothing ever lives in
the host's namespace); deleting the namespaces removes them.

Boundary: plumbing only (ip, sysctl, nft, poll-connect from inside a namespace). What runs
in the lab is tests/lab/daemons.py's business. Every address used here is in 10.251.0.0/16
or fd00:251::/32 and exists only inside the lab's namespaces.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

ROLES = ("agent", "router", "middlebox", "server")

#: (left role, left ifname, left host part), (right role, right ifname, right host part), subnet
LINKS = (
    (("agent", "to-router", 2), ("router", "to-agent", 1), 1),
    (("router", "to-mbox", 1), ("middlebox", "to-router", 2), 2),
    (("middlebox", "to-server", 1), ("server", "to-mbox", 2), 3),
)

#: Where each role's traffic goes (IPv4 subnet number -> gateway); "default" for the rest.
ROUTES = {
    "agent": [("default", "10.251.1.1", "fd00:251:1::1")],
    "router": [("10.251.3.0/24", "10.251.2.2", None), ("fd00:251:3::/64", None, "fd00:251:2::2")],
    "middlebox": [("default", "10.251.2.1", "fd00:251:2::1")],
    "server": [("default", "10.251.3.1", "fd00:251:3::1")],
}

FORWARDERS = ("router", "middlebox")


@dataclass(frozen=True)
class Addresses:
    """The lab's fixed addresses (the same in every run: namespaces isolate runs)."""

    agent: str = "10.251.1.2"
    router_agent_side: str = "10.251.1.1"
    middlebox: str = "10.251.2.2"  # where middlebox daemons listen (the agent's side)
    middlebox_server_side: str = "10.251.3.1"  # where the server sees middlebox traffic from
    server: str = "10.251.3.2"
    server6: str = "fd00:251:3::2"
    agent6: str = "fd00:251:1::2"


ADDR = Addresses()


class LabError(RuntimeError):
    pass


def run(
    argv: list[str], *, check: bool = True, timeout: float = 30.0, **kw: object
) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; on failure raise LabError with its stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc


def unavailable() -> str | None:
    """Why the lab cannot run here (None when it can): root and working `ip netns` needed."""
    if os.geteuid() != 0:
        return "the middlebox lab needs root (network namespaces); CI runs it as root"
    for prog in ("ip", "nft"):
        if shutil.which(prog) is None:
            return f"{prog} is not installed (scripts/setup-test-env installs iproute2/nftables)"
    probe = f"mtlslab{os.getpid()}-check"
    try:
        run(["ip", "netns", "add", probe])
    except (LabError, OSError) as exc:
        return f"`ip netns add` fails here, so no lab: {exc}"
    try:
        run(["ip", "netns", "delete", probe])
    except LabError as exc:
        return f"`ip netns delete` fails here: {exc}"
    return None


def lab_namespaces(prefix: str = "mtlslab") -> list[str]:
    """Namespaces whose name starts with `prefix` (the lab's), as `ip netns list` shows them."""
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


class Topology:
    """The four namespaces, named ``mtlslab<pid>-<tag>-<role>``: unique per test run."""

    def __init__(self, tag: str = "t") -> None:
        self.prefix = f"mtlslab{os.getpid()}-{tag}-"
        self.names = {role: self.prefix + role for role in ROLES}
        self.created: list[str] = []
        self.addr = ADDR

    def ns(self, role: str) -> str:
        return self.names[role]

    # -- build / remove ------------------------------------------------------------------------

    def create(self) -> Topology:
        try:
            self._create()
        except BaseException:
            self.destroy()
            raise
        return self

    def _create(self) -> None:
        for role in ROLES:
            run(["ip", "netns", "add", self.ns(role)])
            self.created.append(self.ns(role))
            self.ip(role, "link", "set", "lo", "up")
        for (lrole, lif, lhost), (rrole, rif, rhost), net in LINKS:
            run(["ip", "link", "add", lif, "netns", self.ns(lrole), "type", "veth",
                 "peer", "name", rif, "netns", self.ns(rrole)])
            for role, ifname, host in ((lrole, lif, lhost), (rrole, rif, rhost)):
                self.ip(role, "addr", "add", f"10.251.{net}.{host}/24", "dev", ifname)
                self.ip(role, "-6", "addr", "add", f"fd00:251:{net}::{host}/64", "dev", ifname,
                        "nodad")
                self.ip(role, "link", "set", ifname, "up")
        for role, routes in ROUTES.items():
            for dest, via4, via6 in routes:
                if via4:
                    self.ip(role, "route", "add", dest, "via", via4)
                if via6:
                    self.ip(role, "-6", "route", "add", "::/0" if dest == "default" else dest,
                            "via", via6)
        for role in FORWARDERS:
            self.sysctl(role, "net.ipv4.ip_forward", "1")
            self.sysctl(role, "net.ipv6.conf.all.forwarding", "1")

    def destroy(self) -> list[str]:
        """Kill anything still running inside, delete the namespaces; return what was left over
        (processes that had to be killed, namespaces that would not go)."""
        problems: list[str] = []
        for name in list(self.created):
            pids = self._pids(name)
            if pids:
                problems.append(f"processes left in {name}: {pids}")
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, 9)
            if run(["ip", "netns", "delete", name], check=False).returncode != 0:
                problems.append(f"could not delete namespace {name}")
            else:
                self.created.remove(name)
        left = [n for n in lab_namespaces(self.prefix)]
        if left:
            problems.append(f"namespaces left: {left}")
        return problems

    # -- inside a namespace --------------------------------------------------------------------

    def argv(self, role: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(role), *argv]

    def ip(self, role: str, *args: str) -> subprocess.CompletedProcess:
        return run(["ip", "-n", self.ns(role), *args])

    def exec(self, role: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
        return run(self.argv(role, argv), **kw)

    def sysctl(self, role: str, key: str, value: str) -> None:
        self.exec(role, ["sysctl", "-q", "-w", f"{key}={value}"])

    def nft(self, role: str, script: str) -> None:
        """Load an nft script (`nft -f -`) inside the namespace."""
        run(self.argv(role, ["nft", "-f", "-"]), input=script)

    def nft_ruleset(self, role: str) -> str:
        return self.exec(role, ["nft", "list", "ruleset"]).stdout.strip()

    def nft_flush(self, role: str) -> None:
        self.exec(role, ["nft", "flush", "ruleset"])

    def _pids(self, name: str) -> list[int]:
        out = run(["ip", "netns", "pids", name], check=False).stdout
        return [int(p) for p in out.split()]

    def pids(self, role: str) -> list[int]:
        """Processes running inside the role's namespace."""
        return self._pids(self.ns(role))

    def wait_tcp(
        self,
        role: str,
        host: str,
        port: int,
        *,
        timeout: float = 20.0,
        proc: subprocess.Popen | None = None,
    ) -> None:
        """Poll-connect to host:port from inside `role`'s namespace until it accepts.

        The polling loop runs in one helper process inside the namespace; meanwhile we block
        on the helper (and fail early if the daemon `proc` exits). No sleeps.
        """
        helper = subprocess.Popen(
            self.argv(role, [sys.executable, "-c", _POLL_CONNECT, host, str(port), str(timeout)]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + timeout + 5
        try:
            while True:
                try:
                    out, _ = helper.communicate(timeout=0.1)
                except subprocess.TimeoutExpired:
                    if proc is not None and proc.poll() is not None:
                        raise LabError(
                            f"daemon exited with {proc.returncode} before {host}:{port} accepted"
                        ) from None
                    if time.monotonic() > deadline:
                        raise LabError(f"{host}:{port} in {role}: poller hung") from None
                    continue
                if helper.returncode != 0:
                    raise LabError(f"{host}:{port} in {role} not accepting: {out.strip()}")
                return
        finally:
            if helper.poll() is None:
                helper.kill()
                helper.wait()


_POLL_CONNECT = """
import socket, sys, time
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
while True:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        sys.exit(0)
    except OSError as exc:
        if time.monotonic() > deadline:
            sys.exit(f"not accepting after {timeout}s: {exc}")
        # a refused connect returns at once: wait on a socket that never becomes ready,
        # bounded, instead of a bare sleep
        import select
        select.select([], [], [], 0.02)
"""
