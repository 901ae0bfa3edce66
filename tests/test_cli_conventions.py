"""What people expect of every command (issue 16): --help ends with the exit codes, --debug
after the command name, -q prints nothing but errors, -o says where the report went."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mtlsprobe.cli.main import LAZY_COMMANDS, main


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_every_help_ends_with_the_exit_codes_and_takes_debug(name):
    out = CliRunner().invoke(main, [name, "--help"])
    assert out.exit_code == 0
    epilog = out.output.rpartition("Options:")[2]
    assert "Exit codes:" in epilog and "2  usage error" in epilog, (name, epilog)
    options = [ln.strip() for ln in out.output.splitlines() if ln.strip().startswith("-")]
    assert not any(o.startswith("--debug") for o in options)  # accepted, hidden
    after = CliRunner().invoke(main, [name, "--debug", "--help"])
    assert after.exit_code == 0, (name, after.output)


def test_quiet_prints_nothing_and_output_says_where_the_report_went(tmp_path):
    runner = CliRunner()
    quiet = runner.invoke(main, ["demo", "-q"])
    assert quiet.exit_code == 0 and quiet.output == ""
    dest = tmp_path / "demo.md"
    loud = runner.invoke(main, ["demo", "--format", "markdown", "-o", str(dest)])
    assert loud.exit_code == 0 and dest.read_text().startswith("# mtlsprobe")
    assert loud.stderr.strip() == f"mtlsprobe: report written to {dest}: inspected (exit 0)"
    silent = runner.invoke(main, ["demo", "-q", "-o", str(dest)])
    assert silent.exit_code == 0 and silent.output == "" and silent.stderr == ""


def test_unreachable_says_which_step_failed_and_blames_the_proxy_when_it_was():
    import json
    import socket

    with socket.socket() as s:  # two loopback ports nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    runner = CliRunner()
    direct = runner.invoke(main, ["probe", f"127.0.0.1:{closed}", "--no-env-proxy",
                                  "--repeat", "1", "--format", "json"])
    assert direct.exit_code == 11
    reason = json.loads(direct.stdout)["results"][0]["reason"]
    assert "the TCP connection was refused" in reason
    proxied = runner.invoke(main, ["probe", f"127.0.0.1:{closed}", "--no-direct",
                                   "--proxy", f"http://127.0.0.1:{closed}", "--no-env-proxy",
                                   "--repeat", "1", "--format", "json"])
    assert proxied.exit_code == 11
    reason = json.loads(proxied.stdout)["results"][0]["reason"]
    assert f"the TCP connection to the proxy http://127.0.0.1:{closed} was refused" in reason
    assert "the proxy is down or its address is wrong" in reason


def _in_a_terminal(cols: int, *args: str) -> str:
    """Run mtlsprobe with stdout on a pseudo-terminal `cols` wide; what it drew."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    from tools import drain_pty

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    env = {**os.environ, "COLUMNS": str(cols), "LINES": "50"}
    proc = subprocess.Popen([sys.executable, "-m", "mtlsprobe", *args], stdout=slave,
                            stderr=subprocess.DEVNULL, env=env)
    os.close(slave)
    seen = drain_pty(master)
    assert proc.wait(timeout=60) == 0
    return seen.decode("utf-8", "replace").replace("\r\n", "\n")


def test_the_table_fits_the_terminal_and_wide_keeps_every_column():
    narrow = _in_a_terminal(100, "demo")
    assert max(len(line) for line in narrow.splitlines()) <= 100
    assert "Overall: inspected" in narrow
    wide = _in_a_terminal(100, "demo", "--wide")
    assert max(len(line) for line in wide.splitlines()) > 100
    assert "server issuer" in wide and "server issuer" not in narrow


def test_results_are_tallied_and_problems_only_hides_the_passing_ones():
    runner = CliRunner()
    full = runner.invoke(main, ["demo", "--wide"]).stdout
    assert "Results: 1 inspected, 1 terminated_by_lb, 2 pass_end_to_end" in full
    problems = runner.invoke(main, ["demo", "--wide", "--problems-only"])
    assert problems.exit_code == 0
    assert "pass_end_to_end" not in problems.stdout.split("Results:")[0].split("note:")[0]
    assert "2 target(s) that pass end to end are not shown" in problems.stdout
    assert "Results: 1 inspected, 1 terminated_by_lb" in problems.stdout


def _schema_of(name: str) -> dict:
    import json
    from importlib.resources import files

    schema = json.loads(files("mtlsprobe").joinpath("report/schema/report-v1.json")
                        .read_text("utf-8"))
    return {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{name}"}


def test_the_summary_and_pin_json_follow_the_shipped_schema(tmp_path):
    import json

    import jsonschema

    from mtlsprobe.live import pki

    runner = CliRunner()
    (tmp_path / "r.jsonl").write_text(runner.invoke(main, ["demo", "--format", "jsonl"]).stdout)
    summary = runner.invoke(main, ["summarize", str(tmp_path / "r.jsonl"), "--format", "json"])
    jsonschema.validate(json.loads(summary.stdout), _schema_of("fleet_summary"))
    bundle = tmp_path / "ca.pem"
    ca = pki.CA("Schema Root")
    bundle.write_bytes(ca.issue("x.example").cert_pem + ca.cert_pem)
    pins = runner.invoke(main, ["pin", str(bundle), "--format", "json"])
    jsonschema.validate(json.loads(pins.stdout), _schema_of("pin_output"))
    with __import__("pytest").raises(jsonschema.ValidationError):
        jsonschema.validate([{"source": "x", "note": None, "certificates": [
            {"pin": "sha256/short", "subject": "", "issuer": "", "not_after": ""}]}],
            _schema_of("pin_output"))


BAD_VALUES = [
    ["probe", "localhost", "--timeout", "abc"],
    ["probe", "localhost", "--pin", "sha256/not-a-pin"],
    ["probe", "localhost", "--proxy", "ftp://proxy.example"],
    ["probe", "exa mple.com"],
    ["probe", "--reflector", "localhost:99999"],
    ["analyze", "x.pcap", "--server", "host:99999"],
    ["analyze", "x.pcap", "--pin", "sha256//AAAA"],
    ["trace", "exa mple.com"],
    ["pin", "exa mple.com"],
    ["serve", "--listen", "127.0.0.1:99999"],
    ["summarize", "x.json", "--stale-after", "abc"],
    ["rules", "MTLS999"],
    ["demo", "--format", "xml"],
]


@pytest.mark.parametrize("args", BAD_VALUES, ids=lambda a: " ".join(a[:3]))
def test_a_bad_value_on_the_command_line_is_exit_2_everywhere(args):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output


MISSING = "/nonexistent/mtlsprobe-test"
UNREADABLE = [
    ["probe", "localhost", "--ca", MISSING],
    ["probe", "localhost", "--baseline", MISSING],
    ["probe", "--targets", MISSING],
    ["probe", "localhost", "--cert", MISSING, "--key", MISSING],
    ["probe", "--reflector", "localhost", "--reflector-secret-file", MISSING],
    ["analyze", MISSING],
    ["summarize", MISSING],
    ["check-cert", "--pkcs12", MISSING],
    ["serve", "--cert", MISSING, "--key", MISSING],
    ["pin", MISSING + ".pem"],
]


@pytest.mark.parametrize("args", UNREADABLE, ids=lambda a: " ".join(a[:3]))
def test_an_unreadable_file_is_exit_3_with_one_line_everywhere(args):
    res = CliRunner().invoke(main, [*args, "--no-env-proxy"] if args[0] == "probe" else args)
    assert res.exit_code == 3, res.output
    assert res.stderr.startswith("mtlsprobe: error: ") and res.stderr.count("\n") == 1


def test_the_same_value_from_a_file_or_the_environment_is_bad_input_exit_3(tmp_path):
    targets = tmp_path / "targets.txt"
    targets.write_text("exa mple.com\n")
    res = CliRunner().invoke(main, ["probe", "--targets", str(targets), "--no-env-proxy"])
    assert res.exit_code == 3 and f"{targets}:1:" in res.stderr
    res = CliRunner().invoke(main, ["probe", "localhost", "--timeout", "1"],
                             env={"HTTPS_PROXY": "ftp://proxy.example"})
    assert res.exit_code == 3 and "(env:HTTPS_PROXY)" in res.stderr


#: Other tools' options the messages and the README name on purpose.
FOREIGN_OPTIONS = {"--pinnedpubkey": "curl", "--inject-secrets": "editcap"}


def test_no_message_or_readme_names_an_option_that_does_not_exist():
    import re

    import click

    root = Path(__file__).resolve().parents[1]
    ctx = click.Context(main)
    real = {"--help", "--version", *(o for p in main.params for o in p.opts)}
    for name in LAZY_COMMANDS:
        command = main.get_command(ctx, name)
        assert command is not None
        real.update(o for p in command.params for o in (*p.opts, *p.secondary_opts))
    texts = [*(root / "mtlsprobe").rglob("*.py"), *(root / "mtlsprobe").rglob("*.json"),
             root / "README.md"]
    named = {(m.group(0), path.name) for path in texts
             for m in re.finditer(r"(?<![\w-])--[a-z][a-z0-9-]+", path.read_text("utf-8"))}
    unknown = {(o, f) for o, f in named if o not in real and o not in FOREIGN_OPTIONS}
    assert not unknown, unknown


def test_no_warning_reaches_stderr_in_any_format(tmp_path):
    """Python's default warning filter shows DeprecationWarnings from our own modules (the
    FFDH one cryptography raised in every json, jsonl and markdown output, or click's)."""
    import os
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-W", "default", "-m", "mtlsprobe", *args],
                              capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, "PYTHONWARNINGS": "default"})

    jsonl = run("demo", "--format", "jsonl")
    assert jsonl.returncode == 0 and jsonl.stderr == ""
    (tmp_path / "r.jsonl").write_text(jsonl.stdout)
    for args in (["demo", "--format", "json"], ["demo", "--format", "markdown"],
                 ["summarize", str(tmp_path / "r.jsonl"), "--format", "json"],
                 ["summarize", str(tmp_path / "r.jsonl"), "--format", "markdown"]):
        done = run(*args)
        assert done.returncode in (0, 10) and done.stderr == "", (args, done.stderr)


def test_analyze_of_many_servers_ends_with_the_tally_per_verdict():
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "pcaps"
    out = CliRunner().invoke(main, ["analyze", str(fixtures), "--wide"])
    assert out.exit_code == 10, out.output
    tally = next(line for line in out.stdout.splitlines() if line.startswith("Results: "))
    counts = {v: int(n) for n, v in (p.split(" ") for p in tally[9:].split(", "))}
    import json

    lines = CliRunner().invoke(main, ["analyze", str(fixtures), "--format", "jsonl"]).stdout
    verdicts = [json.loads(line)["verdict"] for line in lines.splitlines()]
    assert counts == {v: verdicts.count(v) for v in set(verdicts)} and len(counts) > 2


def test_the_cryptography_floor_is_one_number_in_pyproject_the_code_and_the_readme():
    import re

    from mtlsprobe import MIN_CRYPTOGRAPHY

    root = Path(__file__).resolve().parents[1]
    stated = re.findall(r'"cryptography>=(\d+)"', (root / "pyproject.toml").read_text())
    assert stated == [str(MIN_CRYPTOGRAPHY[0])]
    assert f"`cryptography` {MIN_CRYPTOGRAPHY[0]} or newer" in (root / "README.md").read_text()


def test_a_port_in_use_is_the_environment_exit_4():
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        res = CliRunner().invoke(main, ["serve", "--listen", f"127.0.0.1:{port}"])
    assert res.exit_code == 4, res.output
    assert res.stderr == (f"mtlsprobe: error: cannot listen on 127.0.0.1:{port}: "
                          "Address already in use\n")
