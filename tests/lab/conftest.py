"""Fixtures of the middlebox lab: the namespace topology (one per test session), the lab PKI,
and `lab`, a per-test handle that starts daemons and firewall rules and, at teardown, stops
them and asserts that nothing (process, nft rule) is left in any lab namespace.

Skipped, with the reason, only where the lab cannot run: not root, or `ip netns` fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .daemons import Daemon, LabPKI, ProbeRun, probe_from, render
from .netns import FORWARDERS, ROLES, Topology, lab_namespaces, unavailable


@pytest.fixture(scope="session")
def topology() -> Iterator[Topology]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    topo = Topology("s").create()
    yield topo
    problems = topo.destroy()
    assert not problems, f"lab teardown found leftovers: {problems}"
    assert not lab_namespaces(topo.prefix)


@pytest.fixture(scope="session")
def lab_pki(tmp_path_factory: pytest.TempPathFactory) -> LabPKI:
    return LabPKI.create(tmp_path_factory.mktemp("lab-pki"))


class Lab:
    """What one test runs in the lab; everything it starts is undone by `close()`."""

    def __init__(self, topo: Topology, lab_pki: LabPKI, workdir: Path) -> None:
        self.topo = topo
        self.pki = lab_pki
        self.workdir = workdir
        self.addr = topo.addr
        self.daemons: list[Daemon] = []
        self.nft_roles: list[str] = []

    def start(self, daemon: Daemon) -> Any:
        """Start a daemon (skip the test, with the reason, if its program is missing)."""
        reason = daemon.missing()
        if reason:
            pytest.skip(reason)
        self.daemons.append(daemon)
        return daemon.start()

    def dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
        return path

    def nft(self, role: str, template: str, **values: object) -> None:
        """Load lab/<template> (rendered) into `role`'s nftables; flushed at teardown."""
        assert role in FORWARDERS, "firewall rules go on the router or the middlebox"
        self.nft_roles.append(role)
        self.topo.nft(role, render(template, **values))

    def probe(self, target: str, role: str = "agent", **kw: Any) -> ProbeRun:
        return probe_from(self.topo, role, target, lab_pki=self.pki, **kw)

    def close(self) -> list[str]:
        problems: list[str] = []
        for daemon in reversed(self.daemons):
            daemon.stop()
        for role in dict.fromkeys(self.nft_roles):
            self.topo.nft_flush(role)
        for role in ROLES:
            pids = self.topo.pids(role)
            if pids:
                problems.append(f"processes left in {role}: {pids}")
            ruleset = self.topo.nft_ruleset(role)
            if ruleset:
                problems.append(f"nft rules left in {role}: {ruleset}")
        return problems


@pytest.fixture
def lab(topology: Topology, lab_pki: LabPKI, tmp_path: Path) -> Iterator[Lab]:
    handle = Lab(topology, lab_pki, tmp_path)
    try:
        yield handle
    finally:
        problems = handle.close()
    assert not problems, f"the test left things behind: {problems}"
