"""Every file option reads with a bound (issue 17) and reads Windows files right (issue 16):
/dev/zero, a silent FIFO, a directory, UTF-8 BOM, UTF-16 and CRLF. The hostile runs are
real commands under a memory cap set by the test: one line, exit 3, never killed."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mtlsprobe.live import files
from mtlsprobe.live.credentials import password_from
from mtlsprobe.model.errors import InputError
from mtlsprobe.run.discovery import read_targets_file

CAP = 1536 * 1024 * 1024  # address space for one mtlsprobe process


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))


def run_capped(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mtlsprobe", *args], capture_output=True,
                          text=True, timeout=120, preexec_fn=_capped, cwd=cwd)


@pytest.mark.parametrize(("option", "args"), [
    ("--ca", ["probe", "127.0.0.1:9", "--ca", "/dev/zero"]),
    ("--baseline", ["probe", "127.0.0.1:9", "--baseline", "/dev/zero"]),
    ("--targets", ["probe", "--targets", "/dev/zero"]),
    ("--cert", ["check-cert", "--cert", "/dev/zero", "--key", "/dev/zero"]),
    ("--pkcs12", ["check-cert", "--pkcs12", "/dev/zero"]),
    ("--reflector-secret-file", ["probe", "--reflector", "127.0.0.1:9",
                                 "--reflector-secret-file", "/dev/zero"]),
    ("--site-map", ["summarize", "EMPTY", "--site-map", "/dev/zero"]),
])
def test_dev_zero_is_too_large_not_a_killed_process(option, args, tmp_path):
    (tmp_path / "EMPTY").mkdir()
    done = run_capped(*args, cwd=tmp_path)
    assert done.returncode == 3, (option, done.returncode, done.stderr[-500:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "larger than" in lines[0] and "Traceback" not in done.stderr


def test_a_password_file_of_zeros_is_refused(tmp_path):
    with pytest.raises(InputError, match="larger than 64 KiB"):
        password_from(Path("/dev/zero"))


def test_a_key_log_of_zeros_is_refused():
    with pytest.raises(InputError, match="not a key log file"):
        files.read_limited("/dev/zero", "key log", limit=4 * files.MiB)


def test_a_large_regular_file_is_refused_before_it_is_read(tmp_path):
    sparse = tmp_path / "huge.pem"
    with open(sparse, "wb") as fh:
        fh.truncate(64 * 1024 * files.MiB)  # 64 GiB, sparse: nothing is written
    with pytest.raises(InputError, match="larger than 4 MiB"):
        files.read_limited(sparse, "certificate")


def test_a_silent_fifo_is_given_up_on(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "IDLE_TIMEOUT", 0.2)
    fifo = tmp_path / "silent"
    os.mkfifo(fifo)
    writer_open = threading.Event()
    release = threading.Event()

    def writer() -> None:
        with open(fifo, "wb"):
            writer_open.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    try:
        with pytest.raises(InputError, match="nothing arrived"):
            files.read_limited(fifo, "password")
    finally:
        release.set()
        t.join(10)


def test_a_fifo_with_data_is_read_like_process_substitution(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    t = threading.Thread(target=lambda: fifo.write_bytes(b"secret\n"))
    t.start()
    assert files.read_limited(fifo, "password") == b"secret\n"
    t.join(10)


def test_a_directory_is_one_clear_line(tmp_path):
    with pytest.raises(InputError, match="it is a directory"):
        files.read_limited(tmp_path, "certificate")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_windows_password_and_targets_files(tmp_path, encoding, newline):
    pw = tmp_path / "pw.txt"
    pw.write_bytes(f"s3cr3t{newline}".encode(encoding))
    assert password_from(pw) == b"s3cr3t"
    targets = tmp_path / "targets.txt"
    targets.write_bytes(newline.join(["ec1.example.com", "ec2.example.com:8443", ""])
                        .encode(encoding))
    found = read_targets_file(targets)
    assert [(t.host, t.port) for t in found] == [("ec1.example.com", None),
                                                 ("ec2.example.com", 8443)]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_windows_site_map_and_reflector_secret_files(tmp_path, encoding, newline):
    from mtlsprobe.live.reflector_echo import read_secret
    from mtlsprobe.run.summarize import load_site_map

    sites = tmp_path / "sites.csv"  # the first row must not be lost to a BOM
    sites.write_bytes(newline.join(["agent-01,HQ", "10.1.0.0/16,Branch", ""]).encode(encoding))
    found = load_site_map(sites)
    assert found.site_of("AGENT-01", []) == "HQ"
    assert found.site_of("other", ["10.1.2.3"]) == "Branch"
    secret = tmp_path / "secret"
    secret.write_bytes(f"s3cret{newline}".encode(encoding))
    assert read_secret(secret) == b"s3cret"


# --- summarize: agents' reports are untrusted input (issue 17) ------------------------


def test_hostile_reports_are_counted_never_fatal(tmp_path):
    from click.testing import CliRunner

    from mtlsprobe.cli.main import main

    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    (folder / "deep2.jsonl").write_text('{"a":' * 70 + "1" + "}" * 70 + "\n")
    good = CliRunner().invoke(main, ["demo", "--format", "jsonl"]).output
    (folder / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + good.encode())
    os.mkfifo(folder / "pipe.json")  # nobody will ever write to it
    out = CliRunner().invoke(main, ["summarize", str(folder), "--format", "json"])
    assert out.exit_code == 10, out.output  # the demo's inspected path: exit 10
    summary = json.loads(out.stdout)
    inputs = summary["input"]
    assert inputs["malformed"] == 2 and any("deeper than 64" in e
                                            for e in inputs["malformed_examples"])
    assert any("pipe.json: not a regular file" in u for u in inputs["unreadable"])
    assert summary["agents"] >= 1  # the BOM report was read


@pytest.mark.parametrize("encoding", ["ascii", "utf-8-sig", "utf-16"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_windows_certificate_files_for_ca_and_pin(tmp_path, encoding, newline):
    """`certutil ... | Out-File ca.pem` in Windows PowerShell 5 writes UTF-16 with a BOM."""
    from click.testing import CliRunner

    from mtlsprobe.cli.main import main
    from mtlsprobe.live import pki
    from mtlsprobe.model.certs import cert_info
    from mtlsprobe.run.expectations import load_roots

    ca = pki.CA("Windows Saved Root")
    pem = tmp_path / "ca.pem"
    pem.write_bytes(ca.cert_pem.decode().replace("\n", newline).encode(encoding))
    assert [r.sha256 for r in load_roots([pem])] == [cert_info(ca.der).sha256]
    out = CliRunner().invoke(main, ["pin", str(pem)])
    assert out.exit_code == 0 and cert_info(ca.der).spki_pin in out.stdout


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_windows_saved_agent_certificate_and_key_are_read(tmp_path, encoding):
    """The agent's --cert and --key saved as UTF-16 (PowerShell 5 Out-File) or with a UTF-8
    BOM (Notepad) load as the same credentials as the plain PEM files."""
    from mtlsprobe.live import pki
    from mtlsprobe.live.credentials import load_credentials

    ca = pki.CA("Windows Agent Root")
    agent = ca.issue("agent-01")
    cert, key = tmp_path / "agent.pem", tmp_path / "agent.key"
    cert.write_bytes(agent.cert_pem.decode().replace("\n", "\r\n").encode(encoding))
    key.write_bytes(agent.key_pem().decode().replace("\n", "\r\n").encode(encoding))
    creds = load_credentials(cert, key)
    assert creds.leaf_der == agent.der and creds.key_matches
