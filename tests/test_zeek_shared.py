"""Zeek's own logs of public traces against the capture path on the same traces.

../shared/zeek-logs holds the ssl.log/x509.log Zeek wrote for 10 of its regression tests;
the traces are in ../shared/pcaps. Per connection (rows matched by addresses and ports; Zeek
masks ``ts`` in these baselines, so each row takes its capture connection's time), every fact
Zeek shows equals the capture path's, a fact Zeek cannot see is unknown and says why (never
"no" where the capture saw it), and each server gets the same verdict with no expectations
and with a --ca that is not the server's. JSON forms of the same logs, made by the small
converter in tests/zeek_tools.py (derived, not Zeek's output), give the same observations.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from zeek_tools import (
    TRACES,
    ZEEK_LOGS,
    assert_same_facts,
    key,
    tsv_to_json_lines,
    zeek_observations,
)

from mtlsprobe.model import Expectations, Observation
from mtlsprobe.model.certs import cert_info, to_der
from mtlsprobe.run.captures import read_capture
from mtlsprobe.run.pipeline import judge
from mtlsprobe.run.tallies import group_by_server

pytestmark = pytest.mark.skipif(not ZEEK_LOGS.is_dir(), reason="../shared/zeek-logs is absent")

#: folder -> the traces Zeek read for it (../shared/zeek-logs/README.md)
FOLDERS = {
    "scripts.base.protocols.ftp.gridftp": ["globus-url-copy.pcap"],
    "scripts.base.protocols.xmpp.server-dialback-dpd": ["tls/xmpp-dialback-starttls.pcap"],
    "scripts.policy.protocols.ssl.certificate-request-info": [
        "tls/certificate-request-failed.pcap"],
    "scripts.base.protocols.mysql.encrypted": ["mysql/encrypted.pcap"],
    "scripts.base.protocols.pop3.starttls": ["tls/pop3-starttls.pcap"],
    "scripts.base.protocols.ssl.tls-1.2-handshake-failure": [
        "tls/tls-1.2-handshake-failure.pcap"],
    "scripts.base.protocols.ssl.tls13": [
        "tls/tls13draft16-chrome55.0.2879.0-canary-aborted.pcap",
        "tls/tls13draft16-chrome55.0.2879.0-canary.pcap",
        "tls/tls13draft16-ff52.a01-aborted.pcap", "tls/tls13draft16-ff52.a01.pcap",
        "tls/tls13_psk_succesfull.pcap", "tls/hrr.pcap",
        "tls/chrome-1250-tls-x25519-kyber.pcap"],
    "scripts.base.protocols.mysql.encrypted-aws-rds": [
        "mysql/tls-12-amazon-rds.pcap", "mysql/tls-13-amazon-rds.pcap"],
    "scripts.policy.protocols.ssl.validate-certs-no-cache": ["tls/missing-intermediate.pcap"],
    "scripts.base.protocols.ssl.ecdhe": ["tls/ecdhe.pcap"],
}


def capture_side(folder: str) -> dict[tuple[object, ...], Observation]:
    out = {}
    for trace in FOLDERS[folder]:
        for obs in read_capture(TRACES / trace).observations:
            out[key(obs)] = obs
    return out


def zeek_side(folder: str, json_dir: Path | None = None) -> list[Observation]:
    files = sorted((ZEEK_LOGS / folder).glob("*.log"))
    if json_dir is not None:
        for f in files:
            (json_dir / f.name).write_text(tsv_to_json_lines(f.read_text()))
        files = sorted(json_dir.glob("*.log"))
    observations, _notes = zeek_observations(files)
    return observations


@pytest.fixture(scope="module")
def foreign_root() -> Expectations:
    """A --ca that is no server's: a capture with a complete chain calls it foreign."""
    key_ = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Not The Server's Root")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key_.public_key()).serial_number(1)
            .not_valid_before(datetime(2000, 1, 1))
            .not_valid_after(datetime(2100, 1, 1))
            .sign(key_, hashes.SHA256()))
    return Expectations(roots=(cert_info(to_der(cert)),))


@pytest.mark.parametrize("folder", list(FOLDERS))
def test_zeek_facts_equal_the_capture_facts_where_zeek_can_see(folder):
    captured = capture_side(folder)
    rows = zeek_side(folder)
    assert rows, folder
    matched = 0
    for z in rows:
        c = captured.get(key(z))
        if c is None:  # STARTTLS or TLS inside FTP ADAT: the capture path sees no TLS there
            continue
        matched += 1
        assert_same_facts(z, c, f"{folder} {z.label}")
    expected_unmatched = {"scripts.base.protocols.xmpp.server-dialback-dpd",
                          "scripts.base.protocols.mysql.encrypted",
                          "scripts.base.protocols.pop3.starttls",
                          "scripts.base.protocols.mysql.encrypted-aws-rds"}
    assert matched or folder in expected_unmatched, folder


def _timed(rows: list[Observation], captured: dict) -> list[Observation]:
    """Each row at its capture connection's time (Zeek's test baselines mask ts)."""
    return [dataclasses.replace(z, observed_at=captured[key(z)].observed_at)
            for z in rows if key(z) in captured]


def _results(observations: list[Observation], expect: Expectations) -> dict[object, object]:
    out = {}
    for target, route, members in group_by_server(observations):
        out[(target.ip, target.port)] = judge(target, route, members, expect, "capture")
    return out


def _blind(result) -> bool:
    """Some server certificate of this server is known by its fingerprint only (the folder
    has no x509.log row for it): its chain cannot be checked against --ca."""
    return any(c.known_by == "fingerprint" for o in result.observations
               for c in o.server_chain)


@pytest.mark.parametrize("folder", list(FOLDERS))
def test_zeek_and_capture_give_the_same_verdicts(folder, foreign_root):
    captured = capture_side(folder)
    rows = _timed(zeek_side(folder), captured)
    for expect in (Expectations(), foreign_root):
        zeek = _results(rows, expect)
        capture = _results([captured[key(z)] for z in rows], expect)
        assert zeek.keys() == capture.keys()
        for server, result in zeek.items():
            if expect.roots and _blind(result):  # Zeek cannot see it: unknown, and says why
                assert "MTLS023" in {f.rule for f in result.findings}, (folder, server)
                assert result.verdict.value != "pass_end_to_end"
                continue
            assert result.verdict == capture[server].verdict, (folder, server, expect.any)


def test_a_foreign_ca_is_caught_from_x509_names_alone(foreign_root):
    """globus-url-copy.pcap's x509.log holds the server's whole chain (leaf and self-signed
    root): a --ca that is not its root breaks it from the log as from the capture (a
    CertificateRequest beside a foreign chain: a terminator), and its real root, matched by
    name, does not."""
    folder = "scripts.base.protocols.ftp.gridftp"
    captured = capture_side(folder)
    rows = _timed(zeek_side(folder), captured)
    assert {r.verdict.value for r in _results(rows, foreign_root).values()} == {
        "terminated_by_lb"}
    real_root = next(iter(captured.values())).server_chain[-1]
    assert real_root.self_issued
    verdicts = {r.verdict.value for r in _results(rows, Expectations(roots=(real_root,))).values()}
    assert not verdicts & {"inspected", "terminated_by_lb"}


def test_the_real_root_by_fingerprint_or_name_anchors_the_chain():
    from mtlsprobe.model.certs import anchor_of

    folder = "scripts.base.protocols.ssl.ecdhe"
    captured = capture_side(folder)
    [z] = zeek_side(folder)
    top = captured[key(z)].server_chain[-1]  # GeoTrust Global CA, with its DER
    assert anchor_of(z.server_chain, [top]) is not None
    assert [c.known_by for c in z.server_chain] == ["names"] * 3


@pytest.mark.parametrize("folder", list(FOLDERS))
def test_derived_json_logs_give_the_same_observations(folder, tmp_path):
    """JSON lines made from the TSV logs by tests/zeek_tools.py (derived, not Zeek's own)."""
    tsv = zeek_side(folder)
    js = zeek_side(folder, json_dir=tmp_path)

    def facts(o: Observation) -> Observation:
        return dataclasses.replace(o, label="")

    assert [facts(o) for o in js] == [facts(o) for o in tsv]
