"""The reflector (`mtlsprobe serve`) with the real probe: direct, through a TCP relay and
through re-signing middleboxes; signing; limits; the serve and probe --reflector commands."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from mtlsprobe.cli.main import main
from mtlsprobe.live import pki
from mtlsprobe.live.credentials import Credentials
from mtlsprobe.live.probe import ProbeOptions, untrusted_identity
from mtlsprobe.live.reflector import Reflector, generated_identity
from mtlsprobe.live.reflector_echo import (
    ECHO_HEADER,
    HMAC_HEADER,
    first_client_hello,
    parse_echo,
    sign,
)
from mtlsprobe.model import CaseResult, Endpoint, Expectations, Verdict
from mtlsprobe.model.certs import cert_info
from mtlsprobe.run.reflector import probe_reflector
from mtlsprobe_demo.intercepting_proxy import InterceptingProxy
from mtlsprobe_demo.tcp_relay import TcpRelay

SECRET = b"shared-test-secret"


@pytest.fixture(scope="module")
def identity() -> tuple[bytes, bytes]:
    return generated_identity(("localhost", "127.0.0.1"))


@pytest.fixture
def make_reflector(identity, start_service):
    def make(**kw) -> Reflector:
        chain, key = identity
        return start_service(Reflector(chain_pem=chain, key_pem=key, **kw))

    return make


@pytest.fixture
def reflector(make_reflector) -> Reflector:
    return make_reflector(secret=SECRET)


def run(address: tuple[str, int], secret: bytes | None = SECRET, **kw) -> CaseResult:
    options = ProbeOptions(timeout=kw.pop("timeout", 6.0), use_env_proxy=False, repeat=2, **kw)
    results = probe_reflector(Endpoint(host=address[0], port=address[1]), options,
                              Expectations(), secret)
    assert len(results) == 1
    return results[0]


def ids(result: CaseResult) -> set[str]:
    return {f.rule for f in result.findings}


def test_direct_reflector_confirms_end_to_end(reflector):
    result = run(reflector.address)
    assert result.verdict is Verdict.PASS_END_TO_END, result.reason
    assert "MTLS083" in ids(result) and not ids(result) & {"MTLS080", "MTLS081", "MTLS082"}
    untrusted_sha = hashlib.sha256(untrusted_identity().der).hexdigest()
    for obs in result.observations:
        echo = obs.reflected
        assert echo is not None and echo.status == "ok" and echo.signed
        assert echo.ja3 == obs.ja3  # the far end computed JA3 from the bytes we sent
        assert echo.hello_sha256 == echo.sent_hello_sha256
        assert echo.server_chain_sha256[0] == obs.server_chain[0].sha256
        assert echo.peer is not None and echo.peer.startswith("127.0.0.1:")
        assert echo.version == obs.version and echo.cipher_suite
        assert echo.alpn_offered == ("http/1.1",)
        expected = (untrusted_sha,) if obs.attempt.name == "untrusted-cert" else ()
        assert echo.client_chain_sha256 == expected, obs.label


def test_agent_certificate_arrives_and_client_ca_names_are_requested(make_reflector):
    ca = pki.CA("Example Agent CA", org="Example Corp")
    agent = ca.issue("agent-7", eku=(pki.CLIENT_AUTH,))
    refl = make_reflector(client_ca_pem=ca.cert_pem)
    result = run(refl.address, secret=None, credentials=Credentials.from_issued(agent))
    assert result.verdict is Verdict.PASS_END_TO_END
    agent_obs = next(o for o in result.observations if o.attempt.name == "agent-cert")
    assert agent_obs.reflected.client_chain_sha256[0] == hashlib.sha256(agent.der).hexdigest()
    assert not agent_obs.reflected.signed
    assert agent_obs.cert_request.authorities == (cert_info(ca.der).subject,)
    assert "unsigned echo" in next(f.summary for f in result.findings if f.rule == "MTLS083")


def test_plain_tcp_relay_is_transparent(reflector, start_service):
    relay = start_service(TcpRelay(reflector.address))
    result = run(relay.address)
    assert result.verdict is Verdict.PASS_END_TO_END
    assert "MTLS083" in ids(result)


def test_resigning_proxy_is_caught(reflector, start_service, loopback_pki):
    proxy = start_service(InterceptingProxy(loopback_pki.inspection_ca,
                                            upstream=reflector.address))
    result = run(proxy.address)
    assert result.verdict is Verdict.INSPECTED
    assert {"MTLS080", "MTLS081", "MTLS082"} <= ids(result)
    assert "MTLS083" not in ids(result)
    lost = next(f for f in result.findings if f.rule == "MTLS081")
    assert "did not arrive" in lost.summary


@pytest.mark.tools
def test_mitmproxy_in_regular_mode_is_caught(reflector, mitmdump):
    result = run(reflector.address, direct=False, timeout=8.0,
                 proxies=(f"http://{mitmdump.host}:{mitmdump.port}",))
    assert result.verdict is Verdict.INSPECTED
    assert {"MTLS080", "MTLS081", "MTLS082"} <= ids(result)


def test_wrong_secret_is_unknown_not_pass(reflector):
    result = run(reflector.address, secret=b"another secret")
    assert result.verdict is Verdict.UNKNOWN
    assert "MTLS084" in ids(result) and "MTLS083" not in ids(result)
    assert all(o.reflected.status == "bad_signature" for o in result.observations)


def test_a_server_that_is_not_a_reflector_is_unknown(make_reference_server):
    server = make_reference_server(verify="none")  # answers HTTP, but without an echo
    result = run(server.address)
    assert "MTLS084" in ids(result)
    assert result.verdict is Verdict.UNKNOWN
    assert {o.reflected.status for o in result.observations} == {"missing"}


# --- the echo itself ---------------------------------------------------------------------


def tls_client(address, *, alpn=None) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx.wrap_socket(socket.create_connection(address, timeout=5),
                           server_hostname="reflector.test")


def test_raw_client_gets_a_signed_json_line(reflector):
    with tls_client(reflector.address) as s:
        s.sendall(b"hello\n")
        data = b""
        while data.count(b"\n") < 2:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    line, mac = data.split(b"\n")[:2]
    echo = json.loads(line)
    assert echo["client_hello"]["sni"] == "reflector.test"
    assert echo["client_chain_sha256"] == []
    assert mac.decode() == f"hmac={sign(line, SECRET)}"


def test_http_answer_carries_header_and_readable_body(reflector):
    with tls_client(reflector.address, alpn=["http/1.1"]) as s:
        s.sendall(b"GET /anything HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = [tuple(h.split(": ", 1)) for h in head.decode().split("\r\n")[1:]]
    status, echo, signed, error = parse_echo(headers, SECRET)
    assert (status, signed, error) == ("ok", True, None)
    assert json.loads(body) == echo
    assert echo["request"] == "GET /anything HTTP/1.1"
    assert echo["client_hello"]["alpn"] == ["http/1.1"]


def test_parse_echo_rejects_tampering_and_junk():
    raw = json.dumps({"mtlsprobe_reflector": 1, "peer": "x"}).encode()
    enc = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    good = [(ECHO_HEADER, enc), (HMAC_HEADER, sign(raw, SECRET))]
    assert parse_echo(good, SECRET)[0] == "ok"
    forged = json.dumps({"mtlsprobe_reflector": 1, "peer": "y"}).encode()
    enc2 = base64.urlsafe_b64encode(forged).decode()
    assert parse_echo([(ECHO_HEADER, enc2), good[1]], SECRET)[0] == "bad_signature"
    assert parse_echo([(ECHO_HEADER, enc)], SECRET)[0] == "bad_signature"  # HMAC stripped
    assert parse_echo([(ECHO_HEADER, enc)], None)[:3] == ("ok", {"mtlsprobe_reflector": 1,
                                                                 "peer": "x"}, False)
    assert parse_echo([(ECHO_HEADER, "!!!")], None)[0] == "malformed"
    other = base64.urlsafe_b64encode(b'{"x": 1}').decode()
    assert parse_echo([(ECHO_HEADER, other)], None)[0] == "malformed"
    assert parse_echo([("Server", "nginx")], None)[0] == "missing"


def test_first_client_hello_needs_a_client_hello():
    assert first_client_hello(b"GET / HTTP/1.1\r\n\r\n") is None
    assert first_client_hello(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00") is None
    assert first_client_hello(b"") is None


# --- limits ------------------------------------------------------------------------------


def test_connection_limit_closes_extra_connections(make_reflector):
    refl = make_reflector(max_connections=2, timeout=5.0)
    # Accepts are handled in order, so by the time the third is accepted the first two
    # handlers exist, waiting (up to 5 s) for a ClientHello that never comes.
    held = [socket.create_connection(refl.address, timeout=5) for _ in range(2)]
    try:
        with socket.create_connection(refl.address, timeout=5) as extra:
            assert extra.recv(1) == b""  # closed on accept
        assert refl.live_threads == 2
    finally:
        for s in held:
            s.close()


def test_silent_client_is_dropped_at_the_deadline(make_reflector):
    import time

    refl = make_reflector(timeout=0.3)
    with socket.create_connection(refl.address, timeout=5) as s:
        t0 = time.monotonic()
        assert s.recv(1) == b""
        assert time.monotonic() - t0 < 4.0


def test_plain_http_gets_a_hint_not_a_hang(reflector):
    with socket.create_connection(reflector.address, timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 400")


def test_bad_identity_is_input_error():
    from mtlsprobe.model.errors import InputError

    with pytest.raises(InputError):
        Reflector(chain_pem=b"not a cert", key_pem=b"")


# --- the commands ------------------------------------------------------------------------


def test_serve_refuses_privileged_port_without_flag():
    res = CliRunner().invoke(main, ["serve", "--listen", "127.0.0.1:443"])
    assert res.exit_code == 2
    assert "--allow-privileged" in res.output


def test_serve_rejects_bad_listen_and_half_identity(tmp_path):
    assert CliRunner().invoke(main, ["serve", "--listen", "nowhere"]).exit_code == 2
    cert = tmp_path / "c.pem"
    cert.write_bytes(b"x")
    assert CliRunner().invoke(main, ["serve", "--cert", str(cert)]).exit_code == 2


@pytest.fixture
def serve_process(tmp_path) -> Iterator[tuple[subprocess.Popen, int]]:
    secret = tmp_path / "secret"
    secret.write_text("cli-secret\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtlsprobe", "serve", "--listen", "127.0.0.1:0",
         "--secret-file", str(secret), "--stop-after", "3", "--timeout", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        line = proc.stdout.readline()  # readiness: the listening line
        assert "listening on 127.0.0.1:" in line, line + proc.stderr.read()
        yield proc, int(line.rsplit(":", 1)[1])
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def test_serve_command_and_probe_reflector_command(serve_process, tmp_path):
    proc, port = serve_process
    secret = tmp_path / "secret"  # same content, written by the fixture
    res = CliRunner().invoke(main, [
        "probe", "--reflector", f"127.0.0.1:{port}", "--reflector-secret-file", str(secret),
        "--no-env-proxy", "--repeat", "1", "--timeout", "6", "--format", "json",
    ])
    report = json.loads(res.output)
    jsonschema.validate(report, json.loads(
        files("mtlsprobe").joinpath("report/schema/report-v1.json").read_text("utf-8")))
    assert res.exit_code == 0, res.output
    (result,) = report["results"]
    assert result["source"] == "reflector" and result["verdict"] == "pass_end_to_end"
    assert report["inputs"]["reflectors"] == [f"127.0.0.1:{port}"]
    out, _ = proc.communicate(timeout=15)  # --stop-after 3: it exits by itself
    assert proc.returncode == 0
    assert out.count(" ja3=") == 3 and "stopped after 3 answered" in out


@pytest.fixture
def pinned_world(tmp_path, make_reference_server) -> Iterator[dict]:
    """`mtlsprobe serve` with a certificate from a known root (as when it runs with the real
    server's certificate), an ordinary server with the same one, the root and the pins."""
    root, stranger = pki.CA("Reflector Test Root"), pki.CA("Some Other Root")
    leaf = root.issue("localhost", sans=("localhost", "127.0.0.1"), eku=(pki.SERVER_AUTH,))
    (tmp_path / "chain.pem").write_bytes(leaf.chain_pem + root.cert_pem)
    (tmp_path / "key.pem").write_bytes(leaf.key_pem())
    (tmp_path / "root.pem").write_bytes(root.cert_pem)
    (tmp_path / "other-root.pem").write_bytes(stranger.cert_pem)
    (tmp_path / "secret").write_text("cli-secret\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtlsprobe", "serve", "--listen", "127.0.0.1:0",
         "--cert", str(tmp_path / "chain.pem"), "--key", str(tmp_path / "key.pem"),
         "--secret-file", str(tmp_path / "secret"), "--timeout", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        line = proc.stdout.readline()  # readiness: the listening line
        assert "listening on 127.0.0.1:" in line, line + proc.stderr.read()
        yield {
            "reflector": f"127.0.0.1:{int(line.rsplit(':', 1)[1])}",
            "server": make_reference_server(identity=leaf),
            "dir": tmp_path,
            "right_pin": cert_info(leaf.der).spki_pin,
            "wrong_pin": cert_info(stranger.issue("x").der).spki_pin,
        }
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def _probe_json(*args: str) -> tuple[int, dict]:
    res = CliRunner().invoke(main, ["probe", *args, "--no-env-proxy", "--repeat", "1",
                                    "--timeout", "6", "--format", "json"])
    return res.exit_code, json.loads(res.stdout)


def _reflector_args(world: dict) -> list[str]:
    return ["--reflector", world["reflector"], "--reflector-secret-file",
            str(world["dir"] / "secret")]


def test_pin_and_ca_judge_a_reflector_target_as_any_other(pinned_world):
    w = pinned_world
    code, report = _probe_json(*_reflector_args(w), "--pin", w["right_pin"],
                               "--ca", str(w["dir"] / "root.pem"))
    (result,) = report["results"]
    rules = {f["rule"] for f in result["findings"]}
    assert code == 0 and result["verdict"] == "pass_end_to_end", result["reason"]
    assert "MTLS083" in rules and not rules & {"MTLS010", "MTLS011", "MTLS090"}
    assert not any("reflector" in n for n in report["notes"])  # no "not applied" note

    for wrong in (["--pin", w["wrong_pin"]], ["--ca", str(w["dir"] / "other-root.pem")]):
        rule = "MTLS011" if wrong[0] == "--pin" else "MTLS010"
        code, report = _probe_json(*_reflector_args(w), *wrong)
        (refl,) = report["results"]
        ordinary_code, ordinary = _probe_json(f"127.0.0.1:{w['server'].port}", *wrong)
        (plain,) = ordinary["results"]
        # fails the way an ordinary target fails: the same rule, verdict and exit code
        assert rule in {f["rule"] for f in refl["findings"]}, (wrong, refl["reason"])
        assert rule in {f["rule"] for f in plain["findings"]}
        assert (code, refl["verdict"]) == (ordinary_code, plain["verdict"]) == (
            10, "terminated_by_lb"), (wrong, refl["reason"], plain["reason"])


def test_baseline_is_not_applied_to_a_reflector_target_and_the_report_says_so(
        pinned_world, tmp_path):
    w = pinned_world
    baseline = tmp_path / "baseline.json"
    code, _ = _probe_json(f"127.0.0.1:{w['server'].port}", "--save-baseline", str(baseline))
    code, report = _probe_json(*_reflector_args(w), "--baseline", str(baseline))
    (result,) = report["results"]
    assert code == 0 and result["verdict"] == "pass_end_to_end", result["reason"]
    assert any(n.startswith("--baseline describes the real server's behaviour")
               for n in report["notes"])
