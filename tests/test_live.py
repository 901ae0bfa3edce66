"""The live adapter against real TLS servers and proxies on loopback.

Asserts on the recorded Transcripts: bytes both ways, key log, OpenSSL's reason, how the
stream ended, CONNECT answers; and on the deadline being one budget for the whole target.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import time
from pathlib import Path

import pytest

from mtlsprobe.live import handshake
from mtlsprobe.live.connect import ConnectFailure, Connection, open_connection
from mtlsprobe.live.credentials import Credentials
from mtlsprobe.live.handshake import run_attempt
from mtlsprobe.live.probe import ProbeOptions, probe_target, probe_targets, untrusted_identity
from mtlsprobe.live.proxy import RoutePlan, parse_proxy_url
from mtlsprobe.model import (
    OTHER_NAME,
    Attempt,
    CertKind,
    Direction,
    Endpoint,
    Stage,
    StreamEnd,
    Transcript,
)
from mtlsprobe_demo.connect_proxy import ConnectProxy
from mtlsprobe_demo.server import NGINX_BAD_CERT

TLS13_NOCERT = Attempt(name="tls13-nocert", max_version="TLSv1.3", min_version="TLSv1.3")
TLS12_NOCERT = Attempt(name="tls12-nocert", max_version="TLSv1.2", min_version="TLSv1.2")
AGENT = Attempt(name="agent-cert", client_cert=CertKind.AGENT)
UNTRUSTED = Attempt(name="untrusted-cert", client_cert=CertKind.UNTRUSTED)


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Redirect tempfile so the test can see what the adapter leaves behind."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.fixture(scope="module")
def agent(request) -> Credentials:
    pki = request.getfixturevalue("loopback_pki")
    return Credentials.from_issued(pki.client)


def _connect(server, deadline: float, plan: RoutePlan | None = None) -> Connection:
    conn = open_connection(
        Endpoint(host=server.host, port=server.port), plan or RoutePlan(), deadline=deadline
    )
    assert isinstance(conn, Connection), conn
    return conn


def _attempt(server, attempt: Attempt, *, creds=None, timeout=5.0, plan=None, **kw) -> Transcript:
    deadline = time.monotonic() + timeout
    return run_attempt(
        _connect(server, deadline, plan),
        attempt,
        sni="localhost",
        credentials=creds,
        untrusted=untrusted_identity(),
        deadline=deadline,
        **kw,
    )


def _sent(t: Transcript, direction: Direction) -> bytes:
    return b"".join(c.data for c in t.chunks if c.direction == direction)


def _assert_recorded_both_ways(t: Transcript) -> None:
    c2s, s2c = _sent(t, Direction.C2S), _sent(t, Direction.S2C)
    assert c2s[:1] == b"\x16" and c2s[5:6] == b"\x01", "first client bytes: a ClientHello"
    assert s2c[:1] == b"\x16" and s2c[5:6] == b"\x02", "first server bytes: a ServerHello"
    times = [c.at for c in t.chunks]
    assert times == sorted(times) and times[0] >= 0
    assert t.server_hello_ms is not None and t.server_hello_ms >= 0
    assert t.tcp is not None and t.tcp.connect_ms is not None


def _observe(t: Transcript):
    observer = pytest.importorskip("mtlsprobe.tls.observer")
    return observer.observe(t)


# --- one attempt ------------------------------------------------------------------------


def test_tls13_nocert_records_the_post_handshake_alert(make_reference_server, private_tmp):
    server = make_reference_server(verify="required")
    t = _attempt(server, TLS13_NOCERT)
    _assert_recorded_both_ways(t)
    assert "CERTIFICATE_REQUIRED" in (t.local_error or "")
    # the client's flight (empty Certificate + Finished) went out, then the server's
    # encrypted alert (one application_data record: 2 + 1 + 16 tag bytes) came back.
    last = t.chunks[-1] if t.chunks[-1].direction == Direction.S2C else t.chunks[-2]
    assert last.direction == Direction.S2C and last.data[:3] == b"\x17\x03\x03"
    assert int.from_bytes(last.data[3:5], "big") == 19
    assert "SERVER_TRAFFIC_SECRET_0" in (t.keylog or "")
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in (t.keylog or "")
    assert list(private_tmp.iterdir()) == [], "key log and its directory must be removed"
    assert t.http is None and t.failed_stage is None
    assert t.route.kind == "direct" and t.attempt == TLS13_NOCERT


def test_observer_decrypts_certificate_required_from_live_transcript(make_reference_server):
    server = make_reference_server(verify="required")
    obs = _observe(_attempt(server, TLS13_NOCERT))
    assert obs.version == "TLSv1.3"
    assert obs.cert_request.seen.value == "yes"
    assert any(
        a.description == "certificate_required" and a.sender == Direction.S2C
        for a in obs.alerts
    )


def test_observer_sees_post_handshake_request_and_our_certificate(make_reference_server, agent):
    server = make_reference_server(behaviour="post_handshake_auth")
    t = _attempt(server, AGENT, creds=agent, http_path="/secure")
    obs = _observe(t)
    assert obs.post_handshake_auth_offered
    assert obs.cert_request.seen.value == "yes" and obs.cert_request.where == "post_handshake"
    assert [c.sha256 for c in obs.client_chain] == [agent.leaf_sha256]
    assert obs.http is not None and obs.http.status == 200


def test_tls12_nocert_rejected_inside_the_handshake(make_reference_server, private_tmp):
    server = make_reference_server(verify="required")
    t = _attempt(server, TLS12_NOCERT)
    _assert_recorded_both_ways(t)
    assert "HANDSHAKE_FAILURE" in (t.local_error or "")
    assert b"\x15\x03\x03\x00\x02\x02\x28" in _sent(t, Direction.S2C)  # fatal handshake_failure
    assert "CLIENT_RANDOM" in (t.keylog or "")
    assert list(private_tmp.iterdir()) == []


def test_agent_cert_gets_the_http_response(make_reference_server, agent):
    server = make_reference_server(verify="required")
    t = _attempt(server, AGENT, creds=agent)
    _assert_recorded_both_ways(t)
    assert t.local_error is None
    assert t.http is not None and t.http.status == 200 and t.http.path == "/"
    assert [n for n, _ in t.http.headers][:2] == ["Server", "Content-Type"]
    seen = json.loads(t.http.body_excerpt)
    assert seen["client_cert_sha256"] == hashlib.sha256(agent.leaf_der).hexdigest()
    assert seen["sni"] == "localhost" and seen["request_line"] == "GET / HTTP/1.1"


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_untrusted_cert_rejected_with_unknown_ca(make_reference_server, version):
    server = make_reference_server(verify="required", max_version=version)
    t = _attempt(server, UNTRUSTED)
    assert "UNKNOWN_CA" in (t.local_error or "")
    assert t.http is None or t.http.status is None


def test_nginx_style_answers_400_for_a_bad_cert(make_reference_server):
    server = make_reference_server(behaviour="nginx")
    t = _attempt(server, UNTRUSTED)
    assert t.local_error is None
    assert t.http.status == 400 and NGINX_BAD_CERT in t.http.body_excerpt
    assert ("Server", "nginx") in t.http.headers


def test_post_handshake_auth_is_answered_transparently(make_reference_server, agent):
    server = make_reference_server(behaviour="post_handshake_auth")
    good = _attempt(server, AGENT, creds=agent, http_path="/secure")
    assert good.http.status == 200, good.http
    assert json.loads(good.http.body_excerpt)["client_cert_sha256"] == agent.leaf_sha256
    bare = _attempt(server, TLS13_NOCERT, http_path="/secure")
    assert "CERTIFICATE_REQUIRED" in (bare.local_error or "")
    assert bare.http is not None and bare.http.status is None


def test_reset_after_hello_is_rst_with_no_server_bytes(make_reference_server):
    server = make_reference_server(behaviour="reset_after_hello")
    t = _attempt(server, TLS13_NOCERT)
    assert t.end == StreamEnd.RST
    assert _sent(t, Direction.S2C) == b""
    assert _sent(t, Direction.C2S)[:1] == b"\x16"
    assert t.server_hello_ms is None


def test_keylog_file_is_private(tmp_path):
    workdir = tmp_path / "w"
    workdir.mkdir(mode=0o700)
    ctx = handshake._context(TLS13_NOCERT, None, workdir, None)
    assert stat.S_IMODE((workdir / "keylog.txt").stat().st_mode) == 0o600
    assert ctx.keylog_filename == str(workdir / "keylog.txt")


# --- connecting -------------------------------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_connection_is_evidence_not_an_exception():
    port = _closed_port()
    got = open_connection(
        Endpoint(host="127.0.0.1", port=port), RoutePlan(), deadline=time.monotonic() + 2
    )
    assert isinstance(got, ConnectFailure)
    t = got.transcript(TLS13_NOCERT, "x")
    assert t.failed_stage == Stage.TCP and t.end == StreamEnd.RST
    assert "ECONNREFUSED" in t.local_error and t.chunks == ()


def test_connect_tunnel_carries_tls(make_reference_server, start_service, agent):
    server = make_reference_server(verify="required")
    proxy = start_service(ConnectProxy())
    plan = RoutePlan(proxy=parse_proxy_url(f"http://{proxy.host}:{proxy.port}"))
    t = _attempt(server, AGENT, creds=agent, plan=plan)
    assert t.route.kind == "http_proxy" and t.route.connect_status == 200
    assert t.http.status == 200
    _assert_recorded_both_ways(t)  # CONNECT bytes are not part of the TLS transcript


def test_connect_407_records_schemes_and_hides_the_password(make_reference_server, start_service):
    server = make_reference_server()
    proxy = start_service(ConnectProxy(require_auth=("alice", "right-pass")))
    url = f"http://alice:wrong-pass@{proxy.host}:{proxy.port}"
    got = open_connection(
        Endpoint(host=server.host, port=server.port),
        RoutePlan(proxy=parse_proxy_url(url)),
        deadline=time.monotonic() + 3,
    )
    assert isinstance(got, ConnectFailure) and got.stage == Stage.PROXY
    t = got.transcript(AGENT, "agent-cert")
    assert t.route.connect_status == 407 and t.route.proxy_auth_schemes == ("Basic",)
    assert "wrong-pass" not in repr(t) and t.route.proxy == f"http://alice@{proxy.host}:{proxy.port}"
    ok = RoutePlan(proxy=parse_proxy_url(f"http://alice:right-pass@{proxy.host}:{proxy.port}"))
    assert _attempt(server, TLS13_NOCERT, plan=ok).route.connect_status == 200


def test_connect_403_from_policy(make_reference_server, start_service):
    server = make_reference_server()
    proxy = start_service(ConnectProxy(deny=["127.0.0.1"]))
    got = open_connection(
        Endpoint(host=server.host, port=server.port),
        RoutePlan(proxy=parse_proxy_url(f"{proxy.host}:{proxy.port}")),
        deadline=time.monotonic() + 3,
    )
    assert isinstance(got, ConnectFailure)
    assert got.route.connect_status == 403 and got.stage == Stage.PROXY


# --- whole probe --------------------------------------------------------------------------


def test_probe_target_runs_every_attempt(make_reference_server, agent, private_tmp):
    server = make_reference_server(verify="required")
    options = ProbeOptions(sni="localhost", timeout=5, credentials=agent, use_env_proxy=False)
    started = time.monotonic()
    [(route, transcripts)] = probe_target(Endpoint(host=server.host, port=server.port), options)
    elapsed = time.monotonic() - started
    assert route.kind == "direct"
    names = [t.attempt.name for t in transcripts]
    assert names == [
        "tls13-nocert", "tls12-nocert", "untrusted-cert", "agent-cert", "repeat-2", "repeat-3",
        "other-name",
    ]
    by = {t.attempt.name: t for t in transcripts}
    assert by["other-name"].attempt.sni == OTHER_NAME
    assert all(t.attempt.sni is None for t in transcripts if t.attempt.name != "other-name")
    assert by["untrusted-cert"].attempt.client_cert == CertKind.UNTRUSTED
    assert by["untrusted-cert"].attempt.client_cert_sha256 == hashlib.sha256(
        untrusted_identity().der
    ).hexdigest()
    assert by["agent-cert"].attempt.client_cert_sha256 == agent.leaf_sha256
    assert by["repeat-2"].attempt.max_version is None
    assert by["agent-cert"].http.status == 200
    assert "CERTIFICATE_REQUIRED" in by["repeat-3"].local_error
    assert all(t.keylog for t in transcripts)
    assert elapsed < 2.0, f"attempts should overlap, took {elapsed:.2f}s"
    assert list(private_tmp.iterdir()) == []


def test_silent_server_bounded_by_one_deadline(make_reference_server):
    server = make_reference_server(behaviour="silent_after_hello")
    options = ProbeOptions(timeout=1.0, use_env_proxy=False, http_path="/")
    started = time.monotonic()
    [(_, transcripts)] = probe_target(Endpoint(host=server.host, port=server.port), options)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 1.6, elapsed
    assert {t.end for t in transcripts} == {StreamEnd.TIMEOUT}
    assert all(_sent(t, Direction.S2C) == b"" for t in transcripts)


def test_env_proxy_route_and_no_proxy(make_reference_server, start_service):
    server = make_reference_server(verify="optional")
    proxy = start_service(ConnectProxy())
    target = Endpoint(host=server.host, port=server.port)
    env = {"HTTPS_PROXY": f"http://u:envsecret@{proxy.host}:{proxy.port}"}
    options = ProbeOptions(timeout=5, repeat=1, environ=env)
    routes = probe_target(target, options)
    assert [r.kind for r, _ in routes] == ["direct", "http_proxy"]
    proxied_route, proxied = routes[1]
    assert proxied_route.source == "env:HTTPS_PROXY" and proxied_route.connect_status == 200
    assert "envsecret" not in repr(routes)
    assert all(t.route.connect_status == 200 and t.chunks for t in proxied)
    env_no = {**env, "NO_PROXY": "127.0.0.0/8"}
    assert len(probe_target(target, ProbeOptions(timeout=5, repeat=1, environ=env_no))) == 1


def test_probe_targets_keeps_order(make_reference_server):
    a = make_reference_server(verify="none")
    b = make_reference_server(behaviour="reset_after_hello")
    closed = _closed_port()
    targets = [Endpoint(host="127.0.0.1", port=p) for p in (a.port, b.port, closed)]
    results = probe_targets(targets, ProbeOptions(timeout=3, repeat=1, use_env_proxy=False,
                                                  concurrency=2))
    assert [r[0][1][0].server.port for r in results] == [a.port, b.port, closed]
    assert results[0][0][1][0].local_error is None
    assert results[1][0][1][0].end == StreamEnd.RST
    assert results[2][0][1][0].failed_stage == Stage.TCP


def test_no_secret_files_survive(make_reference_server, agent, private_tmp):
    server = make_reference_server(verify="required")
    probe_target(
        Endpoint(host=server.host, port=server.port),
        ProbeOptions(timeout=3, repeat=1, credentials=agent, use_env_proxy=False),
    )
    leftovers = [p for p in private_tmp.rglob("*")]
    assert leftovers == [], leftovers
    assert not any(n.startswith("mtlsprobe-") for n in os.listdir(private_tmp))


def test_non_tls_answer_is_recorded():
    """A banner instead of a ServerHello: OpenSSL's reason and the bytes are both kept."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 3
        conn = open_connection(Endpoint(host="127.0.0.1", port=port), RoutePlan(),
                               deadline=deadline)
        t = run_attempt(conn, TLS13_NOCERT, sni=None, deadline=deadline)
    finally:
        worker.join(3)
        listener.close()
    assert _sent(t, Direction.S2C) == b"SSH-2.0-OpenSSH_9.6\r\n"
    assert t.local_error == "WRONG_VERSION_NUMBER"
