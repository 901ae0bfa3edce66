"""check-cert: one real defect per test, made with mtlsprobe.live.pki (SHA-1 with openssl), judged
through the command line exactly as an operator runs it: finding ids, verdict, exit band."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from mtlsprobe.cli.main import main
from mtlsprobe.live import pki
from mtlsprobe.rules.agent_cert import CRED_RULES

SCHEMA = json.loads(files("mtlsprobe").joinpath("report/schema/report-v1.json").read_text("utf-8"))
LINE_SCHEMA = {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/jsonl_line"}
PASSWORD = b"k3y-pass\xc3\xa9"
NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture(scope="module")
def ca() -> pki.CA:
    return pki.CA("Check Client Root", org="mtlsprobe tests")


@pytest.fixture(scope="module")
def good(ca: pki.CA) -> pki.Issued:
    return ca.issue("agent-07", eku=(pki.CLIENT_AUTH,))


def write(tmp: Path, name: str, data: bytes, mode: int = 0o600) -> str:
    path = tmp / name
    path.write_bytes(data)
    path.chmod(mode)
    return str(path)


def creds(tmp: Path, issued: pki.Issued, *, mode: int = 0o600, password: bytes | None = None,
          chain: bool = True) -> list[str]:
    cert = write(tmp, "agent.pem", issued.chain_pem if chain else issued.cert_pem, 0o644)
    return ["--cert", cert, "--key", write(tmp, "agent.key", issued.key_pem(password), mode)]


def check(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict, str]:
    """Run check-cert with --format json; (exit code, report, stderr)."""
    result = CliRunner().invoke(main, ["check-cert", *args, "--format", "json"], env=env,
                                catch_exceptions=False)
    report = json.loads(result.stdout) if result.stdout.strip() else {}
    if report:
        jsonschema.validate(report, SCHEMA)
    return result.exit_code, report, result.stderr


def rule_ids(report: dict) -> set[str]:
    return {f["rule"] for f in report["results"][0]["findings"]}


def ca_arg(tmp: Path, ca: pki.CA) -> list[str]:
    return ["--ca", write(tmp, "ca.pem", ca.cert_pem, 0o644)]


# --- fit credentials ----------------------------------------------------------------------------


def test_fit_certificate_passes_with_its_ca(tmp_path, ca, good):
    code, report, _ = check(*creds(tmp_path, good), *ca_arg(tmp_path, ca))
    assert code == 0
    [result] = report["results"]
    assert result["verdict"] == "pass_end_to_end"
    assert result["target"] == {"host": "<agent credentials>", "port": 0, "ip": None}
    assert result["route"]["kind"] == "local"
    assert rule_ids(report) == {"MTLS112", "MTLS113"}
    assert report["command"] == "check-cert"
    assert report["inputs"]["agent_subject"] == "CN=agent-07"
    assert report["inputs"]["agent_cert"] == good.cert.fingerprint(hashes.SHA256()).hex()


def test_without_ca_trust_is_unknown(tmp_path, good):
    code, report, _ = check(*creds(tmp_path, good))
    assert code == 12
    assert report["verdict"] == "unknown"
    assert "MTLS111" in rule_ids(report)


def test_intermediate_chain_builds_to_the_root(tmp_path, ca):
    leaf = ca.intermediate("Check Issuing CA").issue("agent-i", eku=(pki.CLIENT_AUTH,))
    code, report, _ = check(*creds(tmp_path, leaf), *ca_arg(tmp_path, ca))
    assert code == 0, report["results"][0]["reason"]
    # without the intermediate the chain cannot be built, and the summary says what is missing
    code, report, _ = check(*creds(tmp_path, leaf, chain=False), *ca_arg(tmp_path, ca))
    assert code == 10 and "MTLS110" in rule_ids(report)
    assert "Check Issuing CA" in report["results"][0]["reason"]


# --- one defect each -----------------------------------------------------------------------------

DAY = dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("kwargs", "rule", "code"),
    [
        ({"not_before": NOW - 30 * DAY, "not_after": NOW - DAY}, "MTLS101", 10),
        ({"not_before": NOW + 2 * DAY, "not_after": NOW + 90 * DAY}, "MTLS102", 10),
        ({"not_after": NOW + 10 * DAY + dt.timedelta(hours=1)}, "MTLS103", 0),
        ({"eku": (pki.SERVER_AUTH,)}, "MTLS104", 10),
        ({"key_kind": "rsa1024"}, "MTLS105", 10),
        ({"is_ca": True}, "MTLS107", 0),
    ],
    ids=["expired", "not-yet-valid", "expires-in-10-days", "serverAuth-only", "rsa1024",
         "ca-true-leaf"],
)
def test_defect_is_found_with_its_band(tmp_path, ca, kwargs, rule, code):
    issued = ca.issue("agent-defect", **{"eku": (pki.CLIENT_AUTH,), **kwargs})
    got, report, _ = check(*creds(tmp_path, issued), *ca_arg(tmp_path, ca))
    assert rule in rule_ids(report)
    assert got == code
    finding = next(f for f in report["results"][0]["findings"] if f["rule"] == rule)
    assert finding["remediation"] and finding["evidence"]
    if rule == "MTLS103":
        assert "expires in 10 days" in finding["summary"]
    if code == 10:
        assert report["results"][0]["verdict"] == "client_cert_rejected"
        assert report["results"][0]["reason"] == finding["summary"]


def test_no_eku_is_any_usage(tmp_path, ca):
    issued = ca.issue("agent-noeku", eku=None)
    code, report, _ = check(*creds(tmp_path, issued), *ca_arg(tmp_path, ca))
    assert code == 0 and "MTLS104" not in rule_ids(report)


def test_wrong_ca(tmp_path, good):
    other = pki.CA("Some Other Root")
    code, report, _ = check(*creds(tmp_path, good), *ca_arg(tmp_path, other))
    assert code == 10
    assert "MTLS110" in rule_ids(report)


def test_key_mismatch_is_a_finding_not_an_input_error(tmp_path, ca, good):
    other = ca.issue("someone-else", eku=(pki.CLIENT_AUTH,))
    cert = write(tmp_path, "agent.pem", good.cert_pem, 0o644)
    key = write(tmp_path, "other.key", other.key_pem())
    code, report, _ = check("--cert", cert, "--key", key, *ca_arg(tmp_path, ca))
    assert code == 10
    assert "MTLS100" in rule_ids(report)
    assert "MTLS112" in rule_ids(report)  # the other checks still ran


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(("mode", "flagged"), [(0o644, True), (0o640, True), (0o600, False),
                                               (0o400, False)])
def test_key_file_permissions(tmp_path, ca, good, mode, flagged):
    code, report, _ = check(*creds(tmp_path, good, mode=mode), *ca_arg(tmp_path, ca))
    assert ("MTLS109" in rule_ids(report)) is flagged
    assert code == 0  # a warning: the server does not see file modes


def test_empty_subject_without_san(tmp_path, ca):
    key = pki.new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 100 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    code, report, _ = check(*creds(tmp_path, pki.Issued(cert=cert, key=key)),
                            *ca_arg(tmp_path, ca))
    assert "MTLS108" in rule_ids(report)
    assert code == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_sha1_signature(tmp_path, ca):
    """cryptography refuses to sign with SHA-1 nowadays, so openssl x509 -sha1 signs it."""
    leaf_key = pki.new_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "agent-sha1")]))
           .sign(leaf_key, hashes.SHA256()))
    work = tmp_path / "openssl"
    work.mkdir(mode=0o700)
    csr_path = write(work, "leaf.csr", csr.public_bytes(serialization.Encoding.PEM))
    ca_key = write(work, "ca.key", pki.key_pem(ca.key))
    ca_pem = write(work, "ca.pem", ca.cert_pem)
    ext = write(work, "ext.cnf", b"basicConstraints=critical,CA:FALSE\n"
                b"extendedKeyUsage=clientAuth\n")
    out = work / "leaf.pem"
    subprocess.run(["openssl", "x509", "-req", "-in", csr_path, "-CA", ca_pem, "-CAkey", ca_key,
                    "-CAcreateserial", "-sha1", "-days", "30", "-extfile", ext, "-out", str(out)],
                   check=True, capture_output=True, timeout=30)
    issued = pki.Issued(cert=x509.load_pem_x509_certificate(out.read_bytes()), key=leaf_key)
    code, report, _ = check(*creds(tmp_path, issued), *ca_arg(tmp_path, ca))
    assert "MTLS106" in rule_ids(report)
    assert code == 10
    leaf = next(f for f in report["results"][0]["findings"] if f["rule"] == "MTLS106")
    assert "SHA1" in leaf["summary"]


# --- encrypted keys and PKCS#12 ---------------------------------------------------------------


def test_encrypted_key_with_password_file(tmp_path, ca, good):
    pw = write(tmp_path, "pw.txt", PASSWORD + b"\n")
    code, report, err = check(*creds(tmp_path, good, password=PASSWORD), "--password-file", pw,
                              *ca_arg(tmp_path, ca))
    assert code == 0, err
    assert PASSWORD.decode() not in json.dumps(report)


def test_encrypted_key_with_environment_password(tmp_path, ca, good):
    env = {"MTLSPROBE_KEY_PASSWORD": PASSWORD.decode()}
    code, _, err = check(*creds(tmp_path, good, password=PASSWORD), *ca_arg(tmp_path, ca),
                         env=env)
    assert code == 0, err


def test_encrypted_key_with_wrong_password_is_input_error(tmp_path, ca, good):
    env = {"MTLSPROBE_KEY_PASSWORD": "nope"}
    code, report, err = check(*creds(tmp_path, good, password=PASSWORD), env=env)
    assert code == 3 and not report
    assert err.startswith("mtlsprobe: error:") and "wrong password" in err
    assert len(err.strip().splitlines()) == 1


def p12(tmp: Path, issued: pki.Issued, *, with_key: bool = True, mode: int = 0o600) -> str:
    data = pkcs12.serialize_key_and_certificates(
        b"agent", issued.key if with_key else None, issued.cert, list(issued.chain),
        serialization.BestAvailableEncryption(PASSWORD),
    )
    return write(tmp, "agent.p12", data, mode)


def test_pkcs12_with_password_file(tmp_path, ca, good):
    pw = write(tmp_path, "pw.txt", PASSWORD)
    code, report, err = check("--pkcs12", p12(tmp_path, good, mode=0o644), "--password-file",
                              pw, *ca_arg(tmp_path, ca))
    assert code == 0, err
    assert "MTLS109" in rule_ids(report)  # a PKCS#12 file holds the key too


def test_pkcs12_wrong_password(tmp_path, good):
    pw = write(tmp_path, "pw.txt", b"wrong")
    code, report, err = check("--pkcs12", p12(tmp_path, good), "--password-file", pw)
    assert code == 3 and not report
    assert "wrong password" in err and len(err.strip().splitlines()) == 1


def test_pkcs12_without_key(tmp_path, good):
    pw = write(tmp_path, "pw.txt", PASSWORD)
    code, _, err = check("--pkcs12", p12(tmp_path, good, with_key=False), "--password-file", pw)
    assert code == 3
    assert "no private key" in err


def test_usage_errors(tmp_path, good):
    args = creds(tmp_path, good)
    result = CliRunner().invoke(main, ["check-cert", "--cert", args[1]])
    assert result.exit_code == 2
    result = CliRunner().invoke(main, ["check-cert", *args, "--pkcs12", args[1]])
    assert result.exit_code == 2


# --- other formats ---------------------------------------------------------------------------


def test_jsonl_and_markdown_outputs(tmp_path, ca):
    issued = ca.issue("agent-md", eku=(pki.SERVER_AUTH,))
    args = ["check-cert", *creds(tmp_path, issued, mode=0o644), *ca_arg(tmp_path, ca)]
    res = CliRunner().invoke(main, [*args, "--format", "jsonl"])
    assert res.exit_code == 10
    [line] = res.stdout.splitlines()
    obj = json.loads(line)
    jsonschema.validate(obj, LINE_SCHEMA)
    assert obj["cause"] == "MTLS104" and obj["verdict"] == "client_cert_rejected"
    assert obj["agent_subject"] == "CN=agent-md"
    assert {f["rule"] for f in obj["findings"]} >= {"MTLS104", "MTLS109", "MTLS112"}
    md = CliRunner().invoke(main, [*args, "--format", "markdown"]).stdout
    assert md.startswith("# mtlsprobe: client_cert_rejected")
    assert "| &lt;agent credentials&gt;:0 | local | client_cert_rejected |" in md  # results table
    assert "**MTLS104** (rejects)" in md
    assert "Remediation: Reissue the certificate with extendedKeyUsage clientAuth" in md
    assert "PRIVATE KEY" not in md + res.stdout


def test_expired_intermediate_is_named_and_self_signed_root_signature_ignored():
    from mtlsprobe.model.certs import cert_info
    from mtlsprobe.rules.agent_cert import CredentialFacts, check_credentials

    root = pki.CA("Pure Root")
    inter = root.intermediate("Pure Issuing CA")
    leaf = inter.issue("agent-p", eku=(pki.CLIENT_AUTH,))
    chain = (cert_info(leaf.der), cert_info(inter.der), cert_info(root.der))
    later = NOW + dt.timedelta(days=3651)  # the CAs expire after ten years, the leaf after one
    found = check_credentials(CredentialFacts(chain=chain, key_matches=True,
                                              roots=(cert_info(root.der),)), later)
    expired = [f.summary for f in found if f.rule == "MTLS101"]
    assert any("Pure Issuing CA" in s for s in expired)
    assert any(s.startswith("The agent certificate expired") for s in expired)
    assert "MTLS112" in {f.rule for f in found}


def test_rule_table_is_well_formed():
    ids = [r.id for r in CRED_RULES]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i.startswith("MTLS1") for i in ids)
    for r in CRED_RULES:
        assert r.title
        assert r.remediation or r.severity.value == "info", r.id
