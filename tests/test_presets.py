"""Presets and the target plan: ports, overrides, sources, discovery fallback."""

from __future__ import annotations

import pytest

from mtlsprobe.model.errors import InputError
from mtlsprobe.run.discovery import DiscoveredTarget, Discovery
from mtlsprobe.run.presets import ENDPOINT_CENTRAL, get_preset, plan_targets


def found(**kw) -> Discovery:
    base = dict(
        targets=(DiscoveredTarget(host="ec.corp.example", port=None,
                                  source="file:/x/serverinfo.json"),),
        agent_version="10.0.668.L",
    )
    return Discovery(**{**base, **kw})


def plan(*args, **kw):
    discovered = kw.pop("discovered", found())
    return plan_targets(args, discover_fn=lambda: discovered, **kw)


def ports(p) -> list[int]:
    return [e.port for e, _ in p.targets]


def test_endpoint_central_ports_without_ds():
    assert ENDPOINT_CENTRAL.ports_for() == [8383, 8027, 8443, 8031]
    assert ENDPOINT_CENTRAL.ports_for(distribution_server=True)[-1] == 8384


def test_preset_uses_discovered_targets_and_reports_source_and_version():
    p = plan(preset="endpoint-central")
    assert ports(p) == [8383, 8027, 8443, 8031]
    assert {s for _, s in p.targets} == {"file:/x/serverinfo.json"}
    assert p.host_extra == {"agent_version": "10.0.668.L"}


def test_ds_in_config_adds_8384_with_a_note():
    p = plan(preset="endpoint-central", discovered=found(distribution_server=True))
    assert 8384 in ports(p)
    assert any("distribution server" in n for n in p.notes)


def test_configured_https_port_replaces_8383():
    p = plan(preset="endpoint-central", discovered=found(https_port=443))
    assert ports(p) == [443, 8027, 8443, 8031]
    assert any("configured HTTPS port is 443" in n for n in p.notes)


def test_port_flag_replaces_preset_ports():
    p = plan(preset="endpoint-central", ports=(9000, 9001),
             discovered=found(distribution_server=True))
    assert ports(p) == [9000, 9001]


def test_explicit_targets_win_over_discovery_with_a_note():
    p = plan("a.example", "b.example:7000", preset="endpoint-central")
    assert [(e.host, e.port) for e, _ in p.targets][:2] == [("a.example", 8383),
                                                            ("a.example", 8027)]
    assert ("b.example", 7000) in [(e.host, e.port) for e, _ in p.targets]
    assert all(s == "flag" for _, s in p.targets)
    assert any("ec.corp.example" in n and "not added" in n for n in p.notes)
    assert p.host_extra == {"agent_version": "10.0.668.L"}  # still read for the version


def test_targets_file_sources_and_dedup(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("a.example\na.example:8383\nc.example 9\n")
    p = plan("a.example", targets_file=f)
    assert [(e.host, e.port, s) for e, s in p.targets] == [
        ("a.example", 8383, "flag"),
        ("c.example", 9, f"targets-file:{f}:3"),
    ]


def test_no_preset_no_discovery():
    def boom() -> Discovery:
        raise AssertionError("discovery must not run without --preset")

    p = plan_targets(["x.example"], discover_fn=boom)
    assert ports(p) == [8383] and p.host_extra == {}


def test_nothing_found_returns_no_targets_and_the_notes():
    p = plan(preset="endpoint-central", discovered=Discovery(notes=("no config here",)))
    assert p.targets == () and p.notes == ("no config here",)


def test_unknown_preset():
    with pytest.raises(InputError, match="unknown preset"):
        get_preset("sccm")


# --- the probe command with --preset / --targets (real loopback server) ---------------------


def cli(*args: str, env: dict[str, str] | None = None):
    import json as _json

    from click.testing import CliRunner

    from mtlsprobe.cli.main import main

    res = CliRunner().invoke(main, ["probe", "--no-env-proxy", "--repeat", "1", "--timeout",
                                    "4", *args], env=env)
    try:
        return res, _json.loads(res.output)
    except ValueError:
        return res, None


def test_probe_preset_reads_the_agent_config(tmp_path, mtls_server):
    import json as _json

    folder = tmp_path / "agent" / "data"
    folder.mkdir(parents=True)
    info = folder / "serverinfo.json"
    info.write_text(_json.dumps({"servername": "127.0.0.1", "serversecureport": "8383",
                                 "linuxagentversion": "11.3.2400.L"}))
    res, report = cli("--preset", "endpoint-central", "--port", str(mtls_server.port),
                      "--format", "json", env={"MTLSPROBE_AGENT_ROOT": str(tmp_path / "agent")})
    assert report is not None, res.output
    assert report["host"]["agent_version"] == "11.3.2400.L"
    (result,) = report["results"]
    assert result["source"] == f"file:{info}"
    assert result["target"]["port"] == mtls_server.port
    assert report["inputs"]["preset"] == "endpoint-central"


def test_probe_preset_without_agent_config_is_a_usage_error(tmp_path):
    res, _ = cli("--preset", "endpoint-central",
                 env={"MTLSPROBE_AGENT_ROOT": str(tmp_path / "none")})
    assert res.exit_code == 2
    assert "nothing to probe" in res.output and "no Endpoint Central agent" in res.output


def test_probe_targets_file_shows_the_source(tmp_path, mtls_server):
    f = tmp_path / "targets.txt"
    f.write_text(f"# lab\n127.0.0.1 {mtls_server.port}\n")
    res, _ = cli("--targets", str(f))
    assert f"targets-file:{f}:2" in res.output  # the table names where the target came from
