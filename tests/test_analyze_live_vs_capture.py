"""Live and offline agree: probe loopback scenarios while tcpdump captures the probe's own
traffic on lo, then analyze the capture (with the probe's key logs) and compare.

Same verdict, and the same rule ids except:
- live-only attempt rules MTLS030-MTLS035: they judge *our* chosen attempts (throwaway or
  agent certificate); a capture has no Attempt, so they cannot fire offline;
- capture-only rules MTLS070 (captured certificate refused, none accepted: the offline
  counterpart of MTLS033/034) and MTLS071 (the per-server connection summary).
Needs root and tcpdump (CI is root); skipped with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from mtlsprobe.live.credentials import Credentials
from mtlsprobe.live.probe import ProbeOptions, probe_target
from mtlsprobe.model import Endpoint, Expectations, Verdict
from mtlsprobe.model.certs import cert_info
from mtlsprobe.run import analyze as offline
from mtlsprobe.run import pipeline
from mtlsprobe.run.captures import read_keylogs
from mtlsprobe.tls.observer import observe

_spec = importlib.util.spec_from_file_location(
    "fixture_tcpdump", Path(__file__).resolve().parents[1] / "fixtures" / "pcaps" / "tcpdump.py"
)
assert _spec is not None and _spec.loader is not None
tcpdump = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tcpdump)

pytestmark = pytest.mark.skipif(tcpdump.can_capture() is not None,
                                reason=str(tcpdump.can_capture()))

LIVE_ONLY = frozenset({"MTLS030", "MTLS031", "MTLS032", "MTLS033", "MTLS034", "MTLS035"})
CAPTURE_ONLY = frozenset({"MTLS070", "MTLS071"})


@pytest.fixture
def pinned(loopback_pki) -> Expectations:
    return Expectations(roots=(cert_info(loopback_pki.server_root.der),),
                        pins=(cert_info(loopback_pki.server.der).spki_pin,))


def live_and_offline(address: tuple[str, int], expect: Expectations, tmp_path: Path,
                     credentials: Credentials | None = None, timeout: float = 5.0):
    target = Endpoint(host=address[0], port=address[1])
    options = ProbeOptions(sni="localhost", timeout=timeout, repeat=2, use_env_proxy=False,
                           credentials=credentials)
    pcap = tmp_path / "probe.pcap"
    with tcpdump.Tcpdump(pcap, [address[1]]):
        [(route, transcripts)] = probe_target(target, options)
    live = pipeline.judge(target, route, [observe(t) for t in transcripts], expect, "flag")
    keys = tmp_path / "probe.keys"
    fd = os.open(keys, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(t.keylog or "" for t in transcripts))
        run = offline.analyze([pcap], expect, keylog_texts=read_keylogs([keys]))
    finally:
        keys.unlink()
    [result] = run.results
    assert sum(o.repeats for o in result.observations) == len(transcripts), run.notes
    return live, result


def assert_agree(live, captured) -> None:
    live_ids = {f.rule for f in live.findings} - LIVE_ONLY
    offline_ids = {f.rule for f in captured.findings} - CAPTURE_ONLY
    assert captured.verdict is live.verdict, (live.reason, captured.reason)
    assert offline_ids == live_ids


def test_direct_pass(mtls_server, pinned, loopback_pki, tmp_path):
    live, captured = live_and_offline(mtls_server.address, pinned, tmp_path,
                                      Credentials.from_issued(loopback_pki.client))
    assert live.verdict is Verdict.PASS_END_TO_END
    assert_agree(live, captured)
    assert all(o.decrypted for o in captured.observations if o.version)


def test_intercepting_proxy(intercepting_proxy, pinned, loopback_pki, tmp_path):
    live, captured = live_and_offline(intercepting_proxy.address, pinned, tmp_path,
                                      Credentials.from_issued(loopback_pki.client))
    assert live.verdict is Verdict.INSPECTED
    assert_agree(live, captured)


def test_terminating_proxy(terminating_proxy, pinned, loopback_pki, tmp_path):
    live, captured = live_and_offline(terminating_proxy.address, pinned, tmp_path,
                                      Credentials.from_issued(loopback_pki.client))
    assert live.verdict is Verdict.TERMINATED_BY_LB
    assert_agree(live, captured)


def test_reset_after_hello(make_reference_server, pinned, tmp_path):
    server = make_reference_server(behaviour="reset_after_hello")
    live, captured = live_and_offline(server.address, pinned, tmp_path, timeout=2.0)
    assert live.verdict is Verdict.BLOCKED
    assert_agree(live, captured)


def test_no_cert_requested(make_reference_server, pinned, tmp_path):
    server = make_reference_server(verify="none")
    live, captured = live_and_offline(server.address, pinned, tmp_path)
    assert live.verdict is Verdict.PASS_END_TO_END
    assert_agree(live, captured)
    assert "MTLS002" in {f.rule for f in captured.findings}


def test_untrusted_agent_certificate_maps_mtls033_to_mtls070(mtls_server, pinned,
                                                             loopback_pki, tmp_path):
    live, captured = live_and_offline(mtls_server.address, pinned, tmp_path,
                                      Credentials.from_issued(loopback_pki.stranger))
    assert live.verdict is Verdict.CLIENT_CERT_REJECTED
    assert_agree(live, captured)
    assert "MTLS033" in {f.rule for f in live.findings}
    assert "MTLS070" in {f.rule for f in captured.findings}
