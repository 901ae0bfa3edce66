"""The command line as an operator meets it: exit-code bands, one-line errors, no secrets,
atomic output, the baseline round trip, and the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from mtlsprobe.cli.main import main
from mtlsprobe.model.certs import cert_info

SCHEMA = json.loads(files("mtlsprobe").joinpath("report/schema/report-v1.json").read_text("utf-8"))


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def files_for(tmp_path: Path, loopback_pki):
    """PEM files of the loopback PKI, as an operator would have them on disk."""

    def write(name: str, data: bytes, mode: int = 0o600) -> str:
        path = tmp_path / name
        path.write_bytes(data)
        path.chmod(mode)
        return str(path)

    out = {
        "root": write("root.pem", loopback_pki.server_root.cert_pem, 0o644),
        "cert": write("agent.pem", loopback_pki.client.cert_pem, 0o644),
        "key": write("agent.key", loopback_pki.client.key_pem()),
        "enc_key": write("agent-enc.key", loopback_pki.client.key_pem(b"s3cret-pw")),
        "other_key": write("other.key", loopback_pki.stranger.key_pem()),
        "pw": write("pw.txt", b"s3cret-pw\n"),
        # JSON whose number is too long for int(): a ValueError that is no JSONDecodeError
        "bigint": write("bigint.json", b"1" * 5000),
        "pin": cert_info(loopback_pki.server.der).spki_pin,
    }
    return out


def target(server) -> str:
    return f"{server.host}:{server.port}"


def expect_args(f) -> list[str]:
    return ["--ca", f["root"], "--pin", f["pin"], "--sni", "localhost", "--no-env-proxy"]


# --- exit-code bands --------------------------------------------------------------------


def test_pass_is_exit_0_and_json_validates(mtls_server, files_for):
    code, out, err = run("probe", target(mtls_server), *expect_args(files_for),
                         "--cert", files_for["cert"], "--key", files_for["key"],
                         "--format", "json", "--repeat", "1")
    assert code == 0, err
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)
    assert report["verdict"] == "pass_end_to_end"
    assert report["inputs"]["agent_subject"] == "CN=agent-01"
    assert err == ""


def test_inspected_is_exit_10(intercepting_proxy, files_for):
    code, out, _ = run("probe", target(intercepting_proxy), *expect_args(files_for))
    assert code == 10
    assert "inspected" in out and "MTLS010" in out


def test_blocked_is_exit_11(make_reference_server, files_for):
    server = make_reference_server(behaviour="reset_after_hello")
    code, out, _ = run("probe", target(server), *expect_args(files_for), "--timeout", "3")
    assert code == 11
    assert "blocked" in out


def test_no_expectations_is_exit_12(mtls_server):
    code, out, _ = run("probe", target(mtls_server), "--no-env-proxy", "--format", "markdown")
    assert code == 12
    assert "MTLS090" in out


# --- bad input: one line, exit 3, no traceback ----------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["--cert", "/nonexistent/agent.pem", "--key", "/nonexistent/agent.key"], "cannot read"),
        (["--cert", "{cert}", "--key", "{other_key}"], "does not match"),
        (["--cert", "{cert}", "--key", "{enc_key}"], "password"),
        (["--ca", "{key}"], "--ca"),
        (["--baseline", "{pw}"], "--baseline"),
        (["--baseline", "{bigint}"], "--baseline"),
    ],
)
def test_bad_input_is_one_line_and_exit_3(mtls_server, files_for, args, words):
    args = [a.format(**files_for) for a in args]
    code, out, err = run("probe", target(mtls_server), "--no-env-proxy", *args)
    assert code == 3, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtlsprobe: error:")
    assert words in lines[0]
    assert "Traceback" not in err and "PRIVATE KEY" not in err


def test_bad_target_or_pin_on_the_command_line_is_a_bad_option_value_exit_2():
    code, _, err = run("probe", "exa mple.com", "--no-env-proxy")
    assert code == 2 and "bad target" in err
    code, _, err = run("probe", "localhost", "--pin", "sha256/not-a-pin", "--no-env-proxy")
    assert code == 2 and "Invalid value for '--pin'" in err


def test_usage_errors_are_exit_2(files_for):
    assert run("probe", "localhost", "--cert", files_for["cert"])[0] == 2
    assert run("probe")[0] == 2
    assert run("no-such-command")[0] == 2


def test_encrypted_key_with_password_file_and_env(mtls_server, files_for):
    common = ["probe", target(mtls_server), *expect_args(files_for), "--repeat", "1",
              "--cert", files_for["cert"], "--key", files_for["enc_key"], "--format", "json"]
    code, out, err = run(*common, "--password-file", files_for["pw"])
    assert code == 0, err
    assert "s3cret-pw" not in out + err
    code, out, err = run(*common, env={"MTLSPROBE_KEY_PASSWORD": "s3cret-pw"})
    assert code == 0, err
    assert "s3cret-pw" not in out + err


def test_proxy_password_never_reaches_the_report(mtls_server, start_service, files_for):
    from mtlsprobe_demo.connect_proxy import ConnectProxy

    proxy = start_service(ConnectProxy(require_auth=("bob", "hunter2-secret")))
    code, out, err = run("probe", target(mtls_server), *expect_args(files_for), "--no-direct",
                         "--proxy", f"http://bob:hunter2-secret@{proxy.host}:{proxy.port}",
                         "--format", "json", "--repeat", "1")
    assert code == 0, err
    assert "hunter2-secret" not in out + err
    report = json.loads(out)
    assert report["results"][0]["route"]["kind"] == "http_proxy"


# --- output -------------------------------------------------------------------------------


def test_output_is_written_atomically(mtls_server, files_for, tmp_path):
    dest = tmp_path / "report.json"
    dest.write_text("old")
    code, out, _ = run("probe", target(mtls_server), *expect_args(files_for),
                       "--format", "json", "--output", str(dest), "--repeat", "1")
    assert code == 0 and out == ""
    assert json.loads(dest.read_text())["schema_version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".report")) == []


def test_unwritable_output_leaves_nothing_behind(mtls_server, files_for, tmp_path):
    dest = tmp_path / "missing-dir" / "report.json"
    code, _, err = run("probe", target(mtls_server), *expect_args(files_for),
                       "--output", str(dest), "--repeat", "1")
    assert code == 3 and "cannot write" in err
    assert not dest.parent.exists()


def test_baseline_round_trip_catches_a_terminator(
    mtls_server, terminating_proxy, files_for, tmp_path
):
    """--save-baseline next to the server, --baseline on the agent: the terminator holds
    a certificate from the server's own root, so only the baseline tells them apart."""
    baseline = tmp_path / "baseline.json"
    code, _, err = run("probe", target(mtls_server), "--no-env-proxy", "--sni", "localhost",
                       "--save-baseline", str(baseline))
    assert code == 12, err  # no expectations on the server's LAN: unknown, but recorded
    jsonschema.validate(json.loads(baseline.read_text()), SCHEMA)
    # the server keeps its port; the terminator listens elsewhere, so judge it as that port
    data = json.loads(baseline.read_text())
    for result in data["results"]:
        result["target"]["port"] = terminating_proxy.port
    baseline.write_text(json.dumps(data))
    code, out, err = run("probe", target(terminating_proxy), "--no-env-proxy",
                         "--sni", "localhost", "--baseline", str(baseline), "--format", "json")
    assert code == 10, err
    fired = {f["rule"] for f in json.loads(out)["results"][0]["findings"]}
    assert {"MTLS012", "MTLS020"} <= fired


def test_schema_and_rules_commands():
    code, out, _ = run("schema")
    assert code == 0 and json.loads(out)["properties"]["schema_version"]["const"] == 1
    code, out, _ = run("rules")
    assert code == 0 and "MTLS010" in out and "MTLS063" in out


def test_help_documents_exit_codes():
    code, out, _ = run("probe", "--help")
    assert code == 0
    codes = {line.split()[0] for line in out.splitlines() if line.strip()[:2].strip().isdigit()}
    assert {"0", "1", "2", "3", "4", "10", "11", "12"} <= codes


# --- demo: the README's first command ----------------------------------------------------------


def test_demo_runs_fast_and_leaves_nothing_behind(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mtlsprobe", "demo", "--format", "json"],
                          capture_output=True, text=True, timeout=60, env=env)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 10
    report = json.loads(proc.stdout)
    verdicts = {r["source"]: r["verdict"] for r in report["results"]}
    assert verdicts == {
        "demo:direct": "pass_end_to_end",
        "demo:tcp-relay": "pass_end_to_end",
        "demo:intercepting-proxy": "inspected",
        "demo:terminating-proxy": "terminated_by_lb",
    }
    jsonschema.validate(report, SCHEMA)
    assert report["exit_code"] == 0  # the report says what the command exits with
    assert list(tmp_path.iterdir()) == []  # no key log, no temp file left behind


def test_demo_table_names_the_paths():
    code, out, _ = run("demo")
    assert code == 0
    for name in ("demo:direct", "demo:tcp-relay", "demo:intercepting-proxy",
                 "demo:terminating-proxy"):
        assert name in out


def test_module_entry_point_version():
    proc = subprocess.run([sys.executable, "-m", "mtlsprobe", "--version"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "mtlsprobe" in proc.stdout


def test_cli_import_stays_light():
    """Importing the CLI pulls in neither scapy (~1 s) nor the live adapter."""
    code = (
        "import sys, mtlsprobe.cli.main; "
        "print('scapy' in sys.modules, 'mtlsprobe.live.probe' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30).stdout.split()
    assert out == ["False", "False"]
