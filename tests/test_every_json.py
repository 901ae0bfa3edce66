"""Every JSON the tool writes follows the schema that `mtlsprobe schema` prints (issue 16):
reports of every command that makes one, JSON Lines, the saved baseline, the fleet summary,
pins, the rule catalogue and the reflector's echo. Each is made by the real command."""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from mtlsprobe.cli.main import main
from mtlsprobe.live import pki
from mtlsprobe.live.reflector import Reflector, generated_identity
from mtlsprobe.live.reflector_echo import parse_echo

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pcaps"


@pytest.fixture(scope="module")
def schema() -> dict:
    printed = CliRunner().invoke(main, ["schema"])
    assert printed.exit_code == 0
    return json.loads(printed.stdout)


def validator(schema: dict, name: str | None = None) -> jsonschema.Draft202012Validator:
    part = schema if name is None else {"$defs": schema["$defs"], "$ref": f"#/$defs/{name}"}
    return jsonschema.Draft202012Validator(part)


def cli(*args: str, codes: tuple[int, ...] = (0, 10, 11, 12)) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code in codes, res.output
    return res.stdout


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_reports_and_lines_of_demo_probe_analyze_and_check_cert(schema, tmp_path, mtls_server):
    report, line = validator(schema), validator(schema, "jsonl_line")
    target = f"127.0.0.1:{mtls_server.port}"
    probe = ["probe", target, "--no-env-proxy", "--repeat", "1", "--http-path", "/"]
    capture = str(FIXTURES / "intercepting-proxy.pcapng")
    ca = pki.CA("Every JSON Root")
    agent = ca.issue("agent-json", eku=(pki.CLIENT_AUTH,))
    (tmp_path / "agent.pem").write_bytes(agent.cert_pem)
    (tmp_path / "agent.key").write_bytes(agent.key_pem())
    (tmp_path / "agent.key").chmod(0o600)
    check = ["check-cert", "--cert", str(tmp_path / "agent.pem"),
             "--key", str(tmp_path / "agent.key")]
    for command in (["demo"], probe, ["analyze", capture], check):
        report.validate(json.loads(cli(*command, "--format", "json")))
        produced = lines(cli(*command, "--format", "jsonl"))
        assert produced
        for obj in produced:
            line.validate(obj)

    saved = tmp_path / "baseline.json"
    cli(*probe, "--save-baseline", str(saved), "-q")
    report.validate(json.loads(saved.read_text()))


def test_summary_pins_and_rule_catalogue(schema, tmp_path):
    (tmp_path / "r.jsonl").write_text(cli("demo", "--format", "jsonl"))
    validator(schema, "fleet_summary").validate(
        json.loads(cli("summarize", str(tmp_path / "r.jsonl"), "--format", "json")))
    ca = pki.CA("Pin JSON Root")
    (tmp_path / "chain.pem").write_bytes(ca.issue("srv").cert_pem + ca.cert_pem)
    validator(schema, "pin_output").validate(
        json.loads(cli("pin", str(tmp_path / "chain.pem"), "--format", "json")))
    validator(schema, "rules_catalogue").validate(json.loads(cli("rules", "--format", "json")))


def test_the_reflector_echo_raw_and_over_http(schema, start_service):
    chain, key = generated_identity(("localhost",))
    refl = start_service(Reflector(chain_pem=chain, key_pem=key, secret=b"s"))
    echo = validator(schema, "serve_echo")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    for request in (b"hello\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
        with ctx.wrap_socket(socket.create_connection(refl.address, timeout=5),
                             server_hostname="reflector.test") as s:
            s.sendall(request)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        if request.startswith(b"GET"):
            head, _, body = data.partition(b"\r\n\r\n")
            headers = [tuple(h.split(": ", 1)) for h in head.decode().split("\r\n")[1:]]
            status, from_header, _signed, _error = parse_echo(headers, b"s")
            assert status == "ok"
            echo.validate(from_header)
            echo.validate(json.loads(body))
        else:
            echo.validate(json.loads(data.split(b"\n")[0]))
