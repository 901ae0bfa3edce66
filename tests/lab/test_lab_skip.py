"""The lab says why it cannot run, rather than failing, where it cannot (not root, no netns)."""

from __future__ import annotations

import os
import subprocess

from . import netns


def test_not_root_is_a_reason_to_skip(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "needs root" in (netns.unavailable() or "")


def test_failing_ip_netns_is_a_reason_to_skip(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda name: f"/usr/sbin/{name}")

    def refuse(argv, **kw):
        return subprocess.CompletedProcess(argv, 1, "", "mount --make-shared /run/netns: denied")

    monkeypatch.setattr(netns.subprocess, "run", refuse)
    reason = netns.unavailable() or ""
    assert "ip netns add" in reason and "denied" in reason
