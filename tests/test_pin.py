"""`mtlsprobe pin` and curl's pin form for --pin (issue 16)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from mtlsprobe.cli.main import main
from mtlsprobe.live import pki
from mtlsprobe.model.errors import InputError
from mtlsprobe.run.expectations import check_pins


def spki_pin(issued: pki.Issued) -> str:
    """The pin computed independently of mtlsprobe's own code."""
    spki = issued.cert.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_pins_of_a_certificate_file(tmp_path):
    ca = pki.CA("Pin Test Root")
    leaf = ca.issue("srv.example")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(leaf.cert_pem + ca.cert_pem)
    out = CliRunner().invoke(main, ["pin", str(bundle), "--format", "json"])
    assert out.exit_code == 0, out.output
    [doc] = json.loads(out.output)
    assert [c["pin"] for c in doc["certificates"]] == [spki_pin(leaf), spki_pin(ca)]


def test_pins_of_what_a_live_server_presents(mtls_server, loopback_pki):
    out = CliRunner().invoke(main, ["pin", f"127.0.0.1:{mtls_server.port}", "--sni", "localhost"])
    assert out.exit_code == 0, out.output
    assert f"{spki_pin(loopback_pki.server)}  leaf: CN=localhost" in out.output
    assert "check it is the real server" in out.output


def test_an_unreachable_server_is_exit_11_and_junk_is_exit_3(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = CliRunner().invoke(main, ["pin", f"127.0.0.1:{port}"])
    assert out.exit_code == 11 and "ECONNREFUSED" in out.output
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    assert CliRunner().invoke(main, ["pin", str(junk)]).exit_code == 3


def test_curl_s_pin_form_and_lists_are_accepted():
    pin = spki_pin(pki.CA("Curl Form").issue("x"))
    b64 = pin.removeprefix("sha256/")
    assert check_pins([f"sha256//{b64}"]) == (pin,)
    assert check_pins([f"sha256//{b64};sha256//{b64}"]) == (pin, pin)
    with pytest.raises(InputError, match="curl's sha256//"):
        check_pins(["sha256//short"])


def test_a_pin_whose_base64_starts_with_a_slash_is_not_taken_for_curl_s_form():
    """One key in 64 has a SHA-256 whose base64 starts with "/": "sha256//..." is then our
    own form (CI met one in a random test key), and curl's form of it has three slashes."""
    ours = "sha256//" + "A" * 42 + "="
    assert check_pins([ours]) == (ours,)
    assert check_pins(["sha256//" + ours.removeprefix("sha256/")]) == (ours,)


@pytest.mark.parametrize("name", ["missing.pem", "certs/server", "agent.CRT"])
def test_a_missing_file_is_said_to_be_missing_not_a_bad_host(tmp_path, name):
    out = CliRunner().invoke(main, ["pin", str(tmp_path / name) if "/" in name else name])
    assert out.exit_code == 3, out.output
    assert out.stderr.startswith("mtlsprobe: error: cannot read certificate file ")
    assert out.stderr.endswith("No such file or directory\n") and "bad target" not in out.stderr


def test_the_table_shows_the_leaf_s_pin_under_each_result(mtls_server, loopback_pki):
    out = CliRunner().invoke(main, ["probe", f"127.0.0.1:{mtls_server.port}", "--sni",
                                    "localhost", "--no-env-proxy", "--repeat", "1"])
    assert out.exit_code == 12, out.output
    assert f"  server leaf {spki_pin(loopback_pki.server)}  CN=localhost" in out.stdout
    demo = CliRunner().invoke(main, ["demo"]).stdout
    assert "(demo:direct) via direct: pass_end_to_end" in demo  # one line, no "\n" shown
    assert "\\n(demo:" not in demo
