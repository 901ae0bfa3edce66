"""Agent-configuration discovery (serverinfo.json, registry mapping) and targets files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtlsprobe.model.errors import InputError
from mtlsprobe.run import discovery
from mtlsprobe.run.discovery import (
    AGENT_ROOT_ENV,
    discover,
    from_registry,
    from_serverinfo_data,
    parse_targets_text,
    read_targets_file,
)

# Field names and value shapes as in the community serverinfo.json (reference §1.5).
SERVERINFO = {
    "serverflatname": "ecserver",
    "servername": "ec.corp.example",
    "serveripaddress": "10.1.2.3",
    "serversecipaddress": "ec.corp.example",
    "serverprotocol": "https",
    "serverport": "8020",
    "serversecureport": "8383",
    "enableproxy": "no",
    "enabledistributionserver": "no",
    "remoteofficeid": "4590000000064257",
    "linuxagentversion": "10.0.668.L",
}


def write_agent(root: Path, data: object, sub: str = "conf", raw: bytes | None = None) -> Path:
    folder = root / sub
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "serverinfo.json"
    path.write_bytes(raw if raw is not None else json.dumps(data).encode())
    return path


def test_serverinfo_gives_targets_version_and_port(tmp_path):
    path = write_agent(tmp_path, SERVERINFO)
    d = discover(environ={AGENT_ROOT_ENV: str(tmp_path)}, platform="linux")
    assert [t.host for t in d.targets] == ["ec.corp.example", "10.1.2.3", "ecserver"]
    assert {t.source for t in d.targets} == {f"file:{path}"}
    assert d.agent_version == "10.0.668.L"
    assert d.host_extra == {"agent_version": "10.0.668.L"}
    assert d.https_port == 8383
    assert d.distribution_server is False
    assert d.notes == ()


def test_serverinfo_search_is_bounded_in_depth(tmp_path):
    write_agent(tmp_path, SERVERINFO, sub="a/b/c/d/e")
    d = discover(roots=[tmp_path], platform="linux")
    assert d.targets == ()
    assert "no Endpoint Central agent configuration" in d.notes[0]


def test_no_agent_is_a_note(tmp_path):
    d = discover(roots=[tmp_path / "absent"], platform="darwin")
    assert d.targets == () and d.agent_version is None
    assert str(tmp_path / "absent") in d.notes[0]


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"1" * 5000, "not valid JSON"),  # too long for int(): no JSONDecodeError
        (json.dumps({"serverprotocol": "https"}).encode(), "no server name or address"),
    ],
)
def test_odd_serverinfo_is_a_note_not_a_crash(tmp_path, raw, expect):
    write_agent(tmp_path, None, raw=raw)
    d = discover(roots=[tmp_path], platform="linux")
    assert d.targets == ()
    assert any(expect in n for n in d.notes), d.notes


def test_wrong_types_and_junk_values_are_noted():
    data = dict(SERVERINFO, servername=42, serveripaddress="http://x/",
                serversecureport="eighty", enableproxy="yes", serverprotocol="http")
    d = from_serverinfo_data(data, "/x/serverinfo.json")
    assert [t.host for t in d.targets] == ["ec.corp.example", "ecserver"]
    text = " | ".join(d.notes)
    assert "int value ignored" in text
    assert "'http://x/' is not a host name" in text
    assert "serversecureport 'eighty' is not a port" in text
    assert "enableproxy" in text and "--proxy" in text
    assert "serverprotocol is 'http'" in text
    assert d.https_port is None and d.proxy_configured is True


def test_distribution_server_flag():
    d = from_serverinfo_data(dict(SERVERINFO, enabledistributionserver="yes"), "p")
    assert d.distribution_server is True


def test_two_config_files_merge_without_duplicates(tmp_path):
    write_agent(tmp_path, SERVERINFO, sub="a")
    write_agent(tmp_path, dict(SERVERINFO, servername="other.example",
                               enabledistributionserver="yes"), sub="b")
    d = discover(roots=[tmp_path], platform="linux")
    assert [t.host for t in d.targets] == ["ec.corp.example", "10.1.2.3", "ecserver",
                                           "other.example"]
    assert d.distribution_server is True


# --- registry mapping (a fake reader: CI is Linux) -------------------------------------------

BASE = r"HKLM\SOFTWARE\WOW6432Node\AdventNet\DesktopCentral\DCAgent"


def fake_registry(values: dict[tuple[str, str], object]):
    def read(key: str, name: str) -> object:
        return values.get((key, name))

    return read


def test_registry_maps_to_targets_in_agent_order():
    reader = fake_registry({
        (BASE + r"\ServerInfo", "DCServerName"): "ec.corp.example",
        (BASE + r"\ServerInfo", "DCLastAccessName"): "EC.corp.example.",
        (BASE + r"\ServerInfo", "DCServerIPAddress"): "10.1.2.3",
        (BASE + r"\ServerInfo", "DCServerSecurePort"): 8443,
        (BASE, "DCAgentVersion"): "10.1.2219",
    })
    d = from_registry(reader)
    assert [t.host for t in d.targets] == ["ec.corp.example", "10.1.2.3"]
    assert d.targets[0].source == f"registry:{BASE}\\ServerInfo\\DCLastAccessName"
    assert d.targets[1].source == f"registry:{BASE}\\ServerInfo\\DCServerIPAddress"
    assert d.https_port == 8443
    assert d.agent_version == "10.1.2219"


def test_registry_32bit_layout_and_string_port():
    base = r"HKLM\SOFTWARE\AdventNet\DesktopCentral\DCAgent"
    d = from_registry(fake_registry({
        (base + r"\ServerInfo", "DCServerName"): "ec",
        (base + r"\ServerInfo", "DCHTTPSPort"): "9383",
    }))
    assert [t.host for t in d.targets] == ["ec"] and d.https_port == 9383


def test_registry_missing_or_failing_reader_is_a_note():
    assert "no Endpoint Central agent registry key" in from_registry(fake_registry({})).notes[0]

    def broken(key: str, name: str) -> object:
        raise PermissionError("denied")

    d = discover(platform="win32", registry_reader=broken)
    assert d.targets == () and d.notes


def test_registry_odd_values_are_noted():
    d = from_registry(fake_registry({
        (BASE + r"\ServerInfo", "DCServerName"): b"\x00\x01",
        (BASE + r"\ServerInfo", "DCServerIPAddress"): "10.0.0.9",
        (BASE + r"\ServerInfo", "DCServerSecurePort"): 70000,
    }))
    assert [t.host for t in d.targets] == ["10.0.0.9"]
    assert any("bytes value ignored" in n for n in d.notes)
    assert any("70000 is not a port" in n for n in d.notes)


def test_winreg_is_only_imported_on_windows():
    src = Path(discovery.__file__).read_text()
    assert "\nimport winreg" not in src  # only inside windows_registry_reader()


# --- targets file ------------------------------------------------------------------------


def test_targets_file_lines_comments_ports(tmp_path):
    path = tmp_path / "targets.txt"
    path.write_text("# servers\n\nec.corp.example\n10.0.0.1:8443  # remote control\n"
                    "[::1]:9000\nds.branch.example 8384\n")
    got = read_targets_file(path)
    assert [(t.host, t.port) for t in got] == [
        ("ec.corp.example", None), ("10.0.0.1", 8443), ("::1", 9000),
        ("ds.branch.example", 8384),
    ]
    assert got[1].source == f"targets-file:{path}:4"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ok.example\nbad host name!\n", "t:2: "),
        ("a.example 1 2\n", "t:1: expected"),
        ("a.example:80 81\n", "two ports"),
        ("a.example 0\n", "bad port"),
    ],
)
def test_targets_file_errors_name_the_line(text, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        parse_targets_text(text, "t")


def test_targets_file_unreadable_or_empty(tmp_path):
    with pytest.raises(InputError, match="cannot read targets file"):
        read_targets_file(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(InputError, match="names no target"):
        read_targets_file(empty)
