"""probe --capture on loopback: the probe's own packets, its throwaway key log, and
`analyze` of that file reaching the same verdict and rule ids as the live run.

Needs a packet socket (root / CAP_NET_RAW; CI runs as root); skipped otherwise, except the
test that the unprivileged path only notes what it cannot do.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pcapgen
import pytest
import tlsgen
from click.testing import CliRunner

from mtlsprobe.capture.transcripts import CaptureReader
from mtlsprobe.cli.main import main
from mtlsprobe.live import hops, sniff
from mtlsprobe.model import Attempt, CertKind, Endpoint
from mtlsprobe.run.pipeline import judge
from mtlsprobe.tls.observer import observe

NO_SNIFF = sniff.unavailable()
needs_sniff = pytest.mark.skipif(NO_SNIFF is not None, reason=f"no packet socket: {NO_SNIFF}")


@pytest.fixture
def files(tmp_path: Path, loopback_pki) -> dict[str, str]:
    out = {}
    for name, data, mode in (("root.pem", loopback_pki.server_root.cert_pem, 0o644),
                             ("agent.pem", loopback_pki.client.cert_pem, 0o644),
                             ("agent.key", loopback_pki.client.key_pem(), 0o600)):
        p = tmp_path / name
        p.write_bytes(data)
        p.chmod(mode)
        out[name] = str(p)
    return out


def run(*args: str) -> tuple[int, dict]:
    r = CliRunner().invoke(main, [*args, "--format", "json"], catch_exceptions=False)
    return r.exit_code, json.loads(r.stdout)


def rule_ids(report: dict) -> set[str]:
    return {f["rule"] for r in report["results"] for f in r["findings"]}


def live_and_offline(mtls_server, files, tmp_path: Path, *extra: str):
    host, port = mtls_server.address
    cap = tmp_path / "probe.pcapng"
    code, live = run("probe", f"{host}:{port}", "--sni", "localhost", "--ca", files["root.pem"],
                     "--cert", files["agent.pem"], "--key", files["agent.key"],
                     "--no-env-proxy", "--repeat", "2", "--timeout", "5", "--capture", str(cap),
                     *extra)
    assert code in (0, 12) and cap.exists()
    # analyze's pipeline on the file; the reader names each attempt from its pcapng comment
    from mtlsprobe.run import expectations

    expect = expectations.build(ca=[Path(files["root.pem"])], pins=(), baseline=None)
    observations = [observe(t) for t in CaptureReader(cap)]
    assert all(o.attempt is not None for o in observations)
    offline = judge(Endpoint(host="localhost", port=port, ip=host), observations[0].route,
                    observations, expect, "capture")
    return cap, live, offline


@needs_sniff
def test_capture_holds_only_the_probes_connections_and_throwaway_keys(mtls_server, files,
                                                                      tmp_path: Path):
    cap, live, offline = live_and_offline(mtls_server, files, tmp_path)
    assert oct(cap.stat().st_mode & 0o777) == "0o600"
    assert any("written to" in n for n in live["notes"])
    obs = live["results"][0]["observations"]
    assert all(o["tcp"]["synack_ttl"] == 64 for o in obs)  # passive facts, from the sniffer
    clients = {(o["client"]["ip"], o["client"]["port"]) for o in obs}
    assert {(t.client.ip, t.client.port) for t in CaptureReader(cap)} == clients
    reader = CaptureReader(cap)
    list(reader)
    randoms = {line.split()[1] for line in reader.keylog_text.splitlines() if line}
    assert len(randoms) == len(obs) - 1  # every session but the agent-certificate one
    # same verdict; the agent session stays opaque offline, so only its acceptance is missing
    assert offline.verdict.value == live["verdict"]
    assert rule_ids(live) - {f.rule for f in offline.findings} == {"MTLS035"}


@needs_sniff
def test_capture_with_secrets_gives_analyze_the_same_verdict_and_rule_ids(mtls_server, files,
                                                                          tmp_path: Path):
    _cap, live, offline = live_and_offline(mtls_server, files, tmp_path, "--capture-secrets")
    assert offline.verdict.value == live["verdict"]
    assert {f.rule for f in offline.findings} == rule_ids(live)
    assert len(offline.observations) == len(live["results"][0]["observations"])


@needs_sniff
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_decrypts_the_throwaway_sessions_with_the_embedded_key_log(mtls_server, files,
                                                                           tmp_path: Path):
    host, port = mtls_server.address
    cap = tmp_path / "probe.pcapng"
    run("probe", f"{host}:{port}", "--sni", "localhost", "--no-env-proxy", "--repeat", "1",
        "--timeout", "5", "--capture", str(cap))
    out = subprocess.run(
        ["tshark", "-r", str(cap), "-Y", "tls.handshake.type == 11", "-T", "fields",
         "-e", "tcp.stream"], capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()
    # TLS 1.3 Certificate messages are encrypted: tshark sees them only with the DSB keys
    assert len(set(out)) >= 2


@needs_sniff
def test_capture_secrets_adds_the_agent_session(mtls_server, files, tmp_path: Path):
    host, port = mtls_server.address
    cap = tmp_path / "probe.pcapng"
    _code, live = run("probe", f"{host}:{port}", "--sni", "localhost", "--cert",
                     files["agent.pem"], "--key", files["agent.key"], "--no-env-proxy",
                     "--repeat", "1", "--timeout", "5", "--capture", str(cap),
                     "--capture-secrets")
    reader = CaptureReader(cap)
    list(reader)
    randoms = {line.split()[1] for line in reader.keylog_text.splitlines() if line}
    assert len(randoms) == len(live["results"][0]["observations"])


def test_without_a_packet_socket_a_plain_probe_notes_it_and_capture_is_exit_4(
        mtls_server, files, tmp_path: Path, monkeypatch):
    def refuse(self):
        raise sniff.SniffUnavailable("not root and no CAP_NET_RAW")

    monkeypatch.setattr(sniff.Sniffer, "start", refuse)
    monkeypatch.setattr(hops, "unavailable", lambda: None)  # raw sockets, yet no sniffing
    host, port = mtls_server.address
    args = ["probe", f"{host}:{port}", "--sni", "localhost", "--no-env-proxy", "--repeat",
            "1", "--timeout", "5"]
    _code, live = run(*args)
    notes = " ".join(live["notes"])
    assert "CAP_NET_RAW" in notes and "passive" in notes
    assert live["results"][0]["observations"]  # the probe itself ran

    cap = tmp_path / "probe.pcapng"
    res = CliRunner().invoke(main, [*args, "--capture", str(cap), "--format", "json"])
    assert res.exit_code == 4 and res.stdout == ""  # not a success with a note
    assert res.stderr.startswith("mtlsprobe: error: --capture could not capture")
    assert "CAP_NET_RAW" in res.stderr and res.stderr.count("\n") == 1
    assert not cap.exists()


def test_the_reader_names_each_connection_from_its_packet_comment():
    hello = tlsgen.run(version="TLSv1.3").chunks[0].data
    packets, comments = [], {}
    for port, comment in ((40001, "mtlsprobe attempt: tls13-nocert; client certificate: none"),
                          (40002, "mtlsprobe attempt: agent-cert; client certificate: agent"),
                          (40003, "a comment someone else wrote"),
                          (40004, None)):
        segs = pcapgen.conversation([("c", hello)], client=("10.0.0.1", port), close="rst",
                                    start=1_700_000_000.0 + port)
        packets += [sniff.Packet(ts=s.ts, data=pcapgen.ip_tcp(s), ifname="lo",
                                 outbound=s.sport == port) for s in segs]
        if comment:
            comments[("10.0.0.1", port)] = comment
    reader = CaptureReader(io.BytesIO(sniff.to_pcapng(packets, labels=comments)))
    got = {t.client.port: t.attempt for t in reader}
    assert got == {40001: Attempt(name="tls13-nocert", client_cert=CertKind.NONE),
                   40002: Attempt(name="agent-cert", client_cert=CertKind.AGENT),
                   40003: None, 40004: None}


@needs_sniff
def test_analyze_of_the_probe_capture_matches_the_live_run(mtls_server, files, tmp_path: Path):
    """The CLI end to end: live probe with --capture, then `mtlsprobe analyze` of the file.
    Without the attempt comments, analyze took the probe's deliberate no-cert attempts for
    a client's connections and judged them with the capture rules (MTLS070/071)."""
    host, port = mtls_server.address
    cap = tmp_path / "probe.pcapng"
    code, live = run("probe", f"{host}:{port}", "--sni", "localhost", "--ca", files["root.pem"],
                     "--cert", files["agent.pem"], "--key", files["agent.key"],
                     "--no-env-proxy", "--repeat", "2", "--timeout", "5", "--capture", str(cap),
                     "--capture-secrets")
    offline_code, offline = run("analyze", str(cap), "--ca", files["root.pem"])
    assert offline["verdict"] == live["verdict"]
    assert rule_ids(offline) == rule_ids(live)
    assert offline_code == code
    [result] = offline["results"]
    names = sorted(o["attempt"]["name"] for o in result["observations"])
    assert names == sorted(o["attempt"]["name"] for o in live["results"][0]["observations"])
