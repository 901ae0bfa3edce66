"""Zeek logs through `mtlsprobe analyze`: how they are found, and hostile ones.

Found by content wherever a capture is accepted (rotation names, gzip, folders, beside a
capture), with the same report and exit codes. Hostile logs (a wrong header, missing
columns, no ssl_history, a 1 MB line, bad escapes, mixed versions, a truncated gzip, binary
junk) give one note or one clear error line and the documented exit code, never a traceback.
The reader's round trip and its calm on any bytes are hypothesis properties.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlsprobe.capture.zeek.zeek_format import MAX_LINE, ZeekReader, text_stream
from mtlsprobe.capture.zeek.zeek_observations import TLS13_NOTE
from mtlsprobe.model import Seen


def _words(text: str) -> list[str]:
    return text.split()


SCHEMA = json.loads(files("mtlsprobe").joinpath("report/schema/report-v1.json").read_text("utf-8"))
FIELDS = _words("ts uid id.orig_h id.orig_p id.resp_h id.resp_p version cipher curve server_name "
          "resumed last_alert next_protocol established ssl_history cert_chain_fps "
          "client_cert_chain_fps sni_matches_cert")
TYPES = _words("time string addr port addr port string string string string bool string "
               "string bool string vector[string] vector[string] bool")
X509_FIELDS = _words("ts fingerprint certificate.version certificate.serial certificate.subject "
               "certificate.issuer certificate.not_valid_before certificate.not_valid_after "
               "certificate.key_alg certificate.sig_alg certificate.key_type "
               "certificate.key_length certificate.exponent certificate.curve san.dns san.uri "
               "san.email san.ip basic_constraints.ca basic_constraints.path_len host_cert "
               "client_cert")
X509_TYPES = _words("time string count string string string time time string string string count "
              "string string vector[string] vector[string] vector[string] vector[addr] bool "
              "count bool bool")
LEAF, ROOT, AGENT = "a" * 64, "b" * 64, "c" * 64


def header(fields=FIELDS, types=TYPES, path="ssl") -> str:
    return ("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
            f"#path\t{path}\n#open\t2026-12-01-00-00-00\n#fields\t" + "\t".join(fields)
            + "\n#types\t" + "\t".join(types) + "\n")


def ssl_row(port: int = 50000, history: str = "CsxkrnXGYIi", version: str = "TLSv12",
            established: str = "T", client_fps: str = AGENT, alert: str = "-",
            server: str = "10.0.0.1", sni: str = "ec.corp.example") -> str:
    return "\t".join([
        "1764979200.000000", f"C{port}", "10.9.0.5", str(port), server, "8383", version,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "x25519", sni, "F", alert, "-",
        established, history, f"{LEAF},{ROOT}", client_fps, "T"]) + "\n"


def x509_rows() -> str:
    def row(fp: str, subject: str, issuer: str, ca: str, host: str) -> str:
        return "\t".join(["1764979200.000000", fp, "3", "0A", subject, issuer,
                          "1735689600.000000", "1893456000.000000", "rsaEncryption",
                          "sha256WithRSAEncryption", "rsa", "2048", "65537", "-",
                          "ec.corp.example" if host == "T" else "-", "-", "-", "-", ca, "-",
                          host, "F"]) + "\n"
    return (header(X509_FIELDS, X509_TYPES, "x509")
            + row(LEAF, "CN=ec.corp.example,O=Corp", "CN=Corp Root,O=Corp", "F", "T")
            + row(ROOT, "CN=Corp Root,O=Corp", "CN=Corp Root,O=Corp", "T", "F"))


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mtlsprobe", "analyze", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


# --- found by content, judged as a capture is --------------------------------------------


def test_a_days_rotated_gzip_logs_in_a_folder_give_a_schema_valid_report(tmp_path):
    logs = tmp_path / "zeek" / "2026-12-01"
    logs.mkdir(parents=True)
    with gzip.open(logs / "ssl.00:00:00-01:00:00.log.gz", "wt") as f:
        f.write(header() + ssl_row(50000) + ssl_row(50001))
    with gzip.open(logs / "x509.00:00:00-01:00:00.log.gz", "wt") as f:
        f.write(x509_rows())
    (logs / "conn.00:00:00-01:00:00.log").write_text(header(["ts", "uid"], ["time", "string"],
                                                            "conn") + "1\tC1\n")
    result = analyze(str(tmp_path / "zeek"), "--format", "json", cwd=tmp_path)
    report = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    [case] = report["results"]
    assert case["target"]["host"] == "ec.corp.example" and case["target"]["port"] == 8383
    assert sum(o.get("repeats", 1) for o in case["observations"]) == 2
    obs = case["observations"][0]
    assert obs["cert_request"]["seen"] == "yes" and obs["client_chain_seen"] == "yes"
    assert obs["cert_request"]["authorities_seen"] is False
    assert [c["known_by"] for c in obs["server_chain"]] == ["names", "names"]
    assert any("conn." in n and "skipped" in n for n in report["notes"])
    assert result.returncode == 12  # no expectations: unknown


def test_ca_by_name_and_a_foreign_chain_break_as_for_a_capture(tmp_path):
    from cryptography import x509 as cx
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    (tmp_path / "ssl.log").write_text(header() + ssl_row())
    (tmp_path / "x509.log").write_text(x509_rows())
    key = ec.generate_private_key(ec.SECP256R1())

    def root(cn: str) -> Path:
        name = cx.Name([cx.NameAttribute(NameOID.ORGANIZATION_NAME, "Corp"),
                        cx.NameAttribute(NameOID.COMMON_NAME, cn)])  # "CN=...,O=Corp"
        from datetime import datetime
        cert = (cx.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(7)
                .not_valid_before(datetime(2020, 1, 1)).not_valid_after(datetime(2040, 1, 1))
                .sign(key, hashes.SHA256()))
        path = tmp_path / f"{cn.replace(' ', '_')}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    ours = analyze("ssl.log", "x509.log", "--ca", str(root("Corp Root")), "--format", "json",
                   cwd=tmp_path)
    assert json.loads(ours.stdout)["results"][0]["verdict"] == "unknown"  # --ca alone
    assert ours.returncode == 12
    foreign = analyze("ssl.log", "x509.log", "--ca", str(root("Other Root")), "--format",
                      "json", cwd=tmp_path)
    case = json.loads(foreign.stdout)["results"][0]
    assert case["verdict"] in ("inspected", "terminated_by_lb")
    assert "MTLS010" in {f["rule"] for f in case["findings"]}
    assert foreign.returncode == 10


def test_a_pin_without_certificates_in_x509_log_is_a_note_naming_the_policy(tmp_path):
    (tmp_path / "ssl.log").write_text(header() + ssl_row())
    (tmp_path / "x509.log").write_text(x509_rows())
    pin = "sha256/" + "A" * 43 + "="
    result = analyze("ssl.log", "x509.log", "--pin", pin, "--format", "json", cwd=tmp_path)
    report = json.loads(result.stdout)
    assert report["results"][0]["verdict"] == "unknown"  # never "inspected" for an unseen key
    assert any("log-certs-base64" in n for n in report["notes"])


def test_tls13_rows_are_unknown_and_say_why(tmp_path):
    from zeek_tools import zeek_observations

    (tmp_path / "ssl.log").write_text(
        header() + ssl_row(history="CsiI", version="TLSv13", client_fps="-"))
    [obs], _ = zeek_observations([tmp_path / "ssl.log"])
    assert obs.cert_request.seen is Seen.UNKNOWN
    assert obs.client_chain_seen is Seen.UNKNOWN
    assert obs.server_chain_seen is Seen.UNKNOWN
    assert TLS13_NOTE in obs.notes


def test_a_failed_row_without_fingerprints_is_unknown_not_an_empty_certificate(tmp_path):
    from zeek_tools import zeek_observations

    row = ssl_row(history="CsxkrnXGl", established="F", client_fps="(empty)",
                  alert="handshake_failure")
    (tmp_path / "ssl.log").write_text(header() + row.replace(f"{LEAF},{ROOT}", "(empty)"))
    [obs], _ = zeek_observations([tmp_path / "ssl.log"])
    assert obs.client_chain_seen is Seen.UNKNOWN and obs.server_chain_seen is Seen.UNKNOWN
    with_fps = ssl_row(history="CsxkrnXGl", established="F", client_fps="(empty)",
                       alert="handshake_failure")
    (tmp_path / "ssl.log").write_text(header() + with_fps)
    [obs], _ = zeek_observations([tmp_path / "ssl.log"])
    assert obs.client_chain_seen is Seen.YES and obs.client_chain == ()  # empty Certificate


# --- hostile logs ------------------------------------------------------------------------


def test_an_ssl_log_without_ssl_history_is_refused_in_one_line(tmp_path):
    fields = [f for f in FIELDS if f != "ssl_history"]
    types = [t for f, t in zip(FIELDS, TYPES, strict=True) if f != "ssl_history"]
    row = ssl_row().split("\t")
    del row[FIELDS.index("ssl_history")]
    (tmp_path / "ssl.log").write_text(header(fields, types) + "\t".join(row))
    one_line_error(analyze("ssl.log", cwd=tmp_path), 3, "ssl_history", "4.1")


def test_missing_address_columns_are_one_error_line(tmp_path):
    fields = [f for f in FIELDS if not f.startswith("id.resp")]
    types = [t for f, t in zip(FIELDS, TYPES, strict=True) if not f.startswith("id.resp")]
    (tmp_path / "ssl.log").write_text(header(fields, types) + "\t".join(["x"] * len(fields)))
    one_line_error(analyze("ssl.log", cwd=tmp_path), 3, "id.resp_h")


def test_a_wrong_header_and_binary_junk_are_exit_3(tmp_path):
    (tmp_path / "ssl.log").write_text("#fields\tts\tuid\nnot a zeek log\n")
    one_line_error(analyze("ssl.log", cwd=tmp_path), 3)
    (tmp_path / "junk.log").write_bytes(bytes(range(256)) * 64)
    one_line_error(analyze("junk.log", cwd=tmp_path), 3)
    (tmp_path / "conn.log").write_text(header(["ts", "uid"], ["time", "string"], "conn"))
    one_line_error(analyze("conn.log", cwd=tmp_path), 3, "conn", "ssl.log")


def test_damage_inside_a_log_is_a_note_and_the_rest_is_read(tmp_path):
    good = ssl_row(50000)
    text = (header() + good
            + "x" * (1024 * 1024) + "\n"  # a 1 MB line
            + "only\tthree\tfields\n"  # the wrong width
            + ssl_row(50001).replace("ec.corp.example", "ec.corp\\xZZexample")  # bad escape
            + header([*FIELDS, "requested_client_certificate_authorities"],
                     [*TYPES, "vector[string]"])  # a second block, another Zeek version
            + ssl_row(50002).replace("\n", "\tCN=Agents\\x2cO=Corp\n"))
    (tmp_path / "ssl.log").write_text(text)
    gz = gzip.compress((header() + ssl_row(50003) + ssl_row(50004)).encode())
    (tmp_path / "ssl.1.log.gz").write_bytes(gz[: len(gz) - 20])  # truncated gzip
    result = analyze("ssl.log", "ssl.1.log.gz", "--format", "json", cwd=tmp_path)
    assert "Traceback" not in result.stderr and result.returncode == 12, result.stderr
    report = json.loads(result.stdout)
    notes = "\n".join(report["notes"])
    assert f"over {MAX_LINE // 1024} KiB skipped" in notes
    assert "wrong number of fields" in notes
    assert "bad \\x escape" in notes
    assert "ends early or is damaged" in notes
    rows = sum(o.get("repeats", 1) for r in report["results"] for o in r["observations"])
    assert rows >= 3
    authorities = [o["cert_request"]["authorities"] for r in report["results"]
                   for o in r["observations"] if o["cert_request"]["authorities"]]
    assert ["CN=Agents,O=Corp"] in authorities


def test_json_lines_with_junk_lines(tmp_path):
    row = {"ts": 1764979200.0, "uid": "C1", "id.orig_h": "10.9.0.5", "id.orig_p": 50000,
           "id.resp_h": "10.0.0.1", "id.resp_p": 8383, "version": "TLSv12",
           "established": True, "ssl_history": "CsxkrnXGYIi", "cert_chain_fps": [LEAF],
           "client_cert_chain_fps": [AGENT], "resumed": False}
    (tmp_path / "ssl.json").write_text(json.dumps(row) + "\n[1,2]\n{broken\n"
                                       + json.dumps(row | {"uid": "C2"}) + "\n")
    result = analyze("ssl.json", "--format", "json", cwd=tmp_path)
    report = json.loads(result.stdout)
    assert sum(o.get("repeats", 1) for o in report["results"][0]["observations"]) == 2
    assert any("not a JSON object" in n for n in report["notes"])


# --- the reader's properties --------------------------------------------------------------

_VALUE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


def _escape(text: str, separators: str) -> str:
    """Zeek's ASCII writer's escaping: backslash, the separators and non-printables."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch == "\\":
            out.append("\\\\")
        elif ch in separators or byte < 0x20 or byte == 0x7F:
            out.append(f"\\x{byte:02x}")
        else:
            out.append(ch)
    return bytes("".join(out), "latin-1").decode("latin-1")


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(_VALUE, st.lists(_VALUE, max_size=3)), max_size=5))
def test_tsv_values_round_trip_through_zeeks_escaping(rows):
    lines = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)",
             "#unset_field\t-", "#fields\tname\tlist", "#types\tstring\tvector[string]"]
    expected = []
    for text, items in rows:
        if text in ("-", "(empty)") or any(i in ("-", "(empty)") for i in items):
            continue  # Zeek writes those escaped too; left out of the round trip
        cell = _escape(text, "\t,")
        if cell.startswith("#"):
            cell = "\\x23" + cell[1:]  # Zeek's writer escapes a '#' that would start a line
        listed = ",".join(_escape(i, "\t,") for i in items) if items else "(empty)"
        if items == [""]:
            continue  # one empty element and an empty vector are written alike
        lines.append(f"{cell}\t{listed}")
        expected.append({"name": text, "list": items})
    data = ("\n".join(lines) + "\n").encode("latin-1")
    got = list(ZeekReader("t", text_stream(data), "tsv"))
    assert got == expected


@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=600), kind=st.sampled_from(["tsv", "json"]))
def test_the_reader_never_raises_on_any_bytes(data, kind):
    reader = ZeekReader("t", text_stream(b"#separator \\x09\n#fields\ta\tb\n" + data), kind)
    for row in reader:
        assert isinstance(row, dict)
    assert all(isinstance(n, str) for n in reader.notes)


@pytest.mark.parametrize("escape", ["\\x", "\\xZ", "\\", "\\\\x41"])
def test_bad_escapes_are_kept_as_written(escape):
    data = f"#separator \\x09\n#fields\ta\n#types\tstring\nv{escape}w\n".encode()
    reader = ZeekReader("t", text_stream(data), "tsv")
    [row] = list(reader)
    assert isinstance(row["a"], str) and row["a"].startswith("v")


def test_ssl_logs_own_subject_and_issuer_name_the_leaf_without_x509_log(tmp_path):
    """``SSL::log_include_server_certificate_subject_issuer`` (files.zeek) puts the leaf's
    names in ssl.log: without an x509.log row the leaf is then known by them."""
    from zeek_tools import zeek_observations

    row = ssl_row().rstrip("\n") + "\tCN=ec.corp.example,O=Corp\tCN=Corp Root,O=Corp\n"
    (tmp_path / "ssl.log").write_text(
        header([*FIELDS, "subject", "issuer"], [*TYPES, "string", "string"]) + row)
    [obs], _ = zeek_observations([tmp_path / "ssl.log"])
    leaf, root = obs.server_chain
    assert (leaf.known_by, leaf.subject, leaf.issuer) == (
        "names", "CN=ec.corp.example,O=Corp", "CN=Corp Root,O=Corp")
    assert root.known_by == "fingerprint"


def test_a_chain_known_by_fingerprints_alone_builds_to_a_root_it_holds():
    """ssl.log without x509.log: --ca can still match the root by its fingerprint."""
    from datetime import datetime

    from cryptography import x509 as cx
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from mtlsprobe.capture.zeek.zeek_x509 import fingerprint_only
    from mtlsprobe.model.certs import anchor_of, cert_info, to_der

    key = ec.generate_private_key(ec.SECP256R1())
    name = cx.Name([cx.NameAttribute(NameOID.COMMON_NAME, "Corp Root")])
    cert = (cx.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(datetime(2020, 1, 1)).not_valid_after(datetime(2040, 1, 1))
            .sign(key, hashes.SHA256()))
    root = cert_info(to_der(cert))
    assert anchor_of((fingerprint_only(LEAF), fingerprint_only(root.sha256)), [root]) == root
    assert anchor_of((fingerprint_only(LEAF), fingerprint_only(ROOT)), [root]) is None


def test_a_flipped_history_makes_the_responder_the_client(tmp_path):
    """``^`` (main.zeek): the ClientHello came from the connection's responder."""
    from zeek_tools import zeek_observations

    (tmp_path / "ssl.log").write_text(header() + ssl_row(history="^CsxkrnXGYIi"))
    [obs], notes = zeek_observations([tmp_path / "ssl.log"])
    assert (obs.client.ip, obs.server.ip, obs.server.port) == ("10.0.0.1", "10.9.0.5", 50000)
    assert obs.history == "CsxkrnXGYIi" and obs.client_chain_seen is Seen.YES
    assert any("certificate-request-info" in n for n in notes)


_JSON_VALUE = st.one_of(st.booleans(), _VALUE, st.lists(_VALUE, max_size=3))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.dictionaries(st.sampled_from(["a", "b.c", "d"]), _JSON_VALUE,
                                     min_size=1), max_size=5))
def test_json_lines_round_trip(rows):
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    assert list(ZeekReader("t", text_stream(data), "json")) == rows


def test_a_history_of_the_clients_side_alone_is_unknown_not_blocked(tmp_path):
    """Asymmetric routing: Zeek saw only the client's messages. That is no server silence."""
    from zeek_tools import zeek_observations

    from mtlsprobe.capture.zeek.zeek_observations import ONE_SIDED_NOTE
    from mtlsprobe.model import Outcome

    one_sided = ssl_row(50000, history="CXGYI", version="-", established="F")
    silenced = ssl_row(50001, history="C", version="-", established="F")
    (tmp_path / "ssl.log").write_text(header() + one_sided + silenced)
    first, second = zeek_observations([tmp_path / "ssl.log"])[0]
    assert first.outcome is Outcome.INCOMPLETE and ONE_SIDED_NOTE in first.notes
    assert second.outcome is Outcome.ABORTED and ONE_SIDED_NOTE not in second.notes


@pytest.mark.parametrize("zipped", [False, True])
def test_a_zeek_log_on_stdin_is_told_by_content(tmp_path, zipped):
    data = (header() + ssl_row(50000) + ssl_row(50001)).encode()
    result = subprocess.run(
        [sys.executable, "-m", "mtlsprobe", "analyze", "-", "--format", "json"],
        input=gzip.compress(data) if zipped else data, capture_output=True, timeout=120,
        cwd=tmp_path)
    assert result.returncode == 12, result.stderr
    report = json.loads(result.stdout)
    assert sum(o.get("repeats", 1) for o in report["results"][0]["observations"]) == 2
    assert any(n.startswith("stdin: 2 ssl.log row") for n in report["notes"])


def test_server_and_port_filters_apply_to_zeek_rows(tmp_path):
    from mtlsprobe.model import Expectations
    from mtlsprobe.run.analyze import ServerFilter, analyze

    (tmp_path / "ssl.log").write_text(
        header() + ssl_row(50000) + ssl_row(50001, server="10.0.0.9", sni="other.example"))
    both = analyze([str(tmp_path / "ssl.log")], Expectations())
    assert {r.target.host for r in both.results} == {"ec.corp.example", "other.example"}
    one = analyze([str(tmp_path / "ssl.log")], Expectations(),
                  servers=[ServerFilter.parse("other.example:8383")])
    assert [r.target.host for r in one.results] == ["other.example"]
    none = analyze([str(tmp_path / "ssl.log")], Expectations(), ports=[443])
    assert not none.results and any("--port" in n for n in none.notes)
