"""--save-baseline is just a report: report -> JSON -> load_baseline -> expectations."""

from __future__ import annotations

import dataclasses
import json

import factories as f
import pytest

from mtlsprobe.model import Expectations, HttpExchange, Outcome, Seen, Verdict
from mtlsprobe.report.build import build_report
from mtlsprobe.report.jsonout import dumps
from mtlsprobe.rules.engine import evaluate
from mtlsprobe.run.baseline import load_baseline


def saved(*cases) -> dict:
    """What --save-baseline writes, read back as JSON."""
    results = [evaluate(c) for c in cases]
    return json.loads(dumps(build_report("probe", results, {}, {"hostname": "server-lan"})))


def test_round_trip_extracts_the_real_servers_facts():
    (port,) = load_baseline(saved(f.case(*f.probe_set(), expect=f.NOTHING)))
    assert port.port == f.TARGET.port
    assert port.chain_sha256 == (tuple(c.sha256 for c in f.REAL_CHAIN),)
    assert port.leaf_pins == (f.REAL_PIN,)
    assert port.cert_request is Seen.YES
    assert port.cert_request_authorities == (f.AGENT_CA_INFO.subject,)
    assert port.versions == ("TLSv1.3", "TLSv1.2")
    assert port.cipher_suites == ("TLS_AES_256_GCM_SHA384",)
    assert port.rejects_untrusted_cert is Seen.YES


def test_baseline_from_the_server_lan_judges_the_agent_path():
    baseline = load_baseline(saved(f.case(*f.probe_set(), expect=f.NOTHING)))
    expect = Expectations(baseline=baseline)
    assert evaluate(f.case(*f.probe_set(), expect=expect)).verdict is Verdict.PASS_END_TO_END
    # A foreign chain and no CertificateRequest: with a baseline alone the table cannot
    # tell an unnamed interceptor from a terminator; the LB row comes first (brief's order),
    # and its remediation names both fixes.
    res = evaluate(f.case(f.intercepted(), expect=expect))
    assert res.verdict is Verdict.TERMINATED_BY_LB
    assert {"MTLS012", "MTLS020"} <= {x.rule for x in res.findings}
    assert "TLS inspection" in res.findings[0].remediation
    # With the server's CA as well, the re-signed chain decides: inspected.
    with_ca = Expectations(baseline=baseline, roots=(f.SERVER_ROOT,))
    assert evaluate(f.case(f.intercepted(), expect=with_ca)).verdict is Verdict.INSPECTED
    # Through a terminator holding the server's key that accepts any certificate.
    lb = f.untrusted(cert_request=f.NO_CERT_REQUEST, client_chain=(), client_chain_seen=Seen.NO)
    assert evaluate(f.case(lb, expect=expect)).verdict is Verdict.TERMINATED_BY_LB


def test_untrusted_accepted_means_not_rejecting():
    (port,) = load_baseline(saved(f.case(f.untrusted(), f.observation(), expect=f.NOTHING)))
    assert port.rejects_untrusted_cert is Seen.NO


def test_nginx_style_rejection_counts_from_observations_alone():
    http = HttpExchange(path="/", status=400, body_excerpt="No required SSL certificate was sent")
    doc = saved(f.case(f.untrusted(http=http), expect=f.NOTHING))
    for r in doc["results"]:
        r["findings"] = []  # facts are read from the observations too
    (port,) = load_baseline(doc)
    assert port.rejects_untrusted_cert is Seen.YES


def test_distinct_chains_and_ports_are_kept_apart():
    second = f.SERVER_ISSUING_CA.issue("ec.example.com", not_before=f.MONTH_AGO)
    other_port = dataclasses.replace(f.TARGET, port=443)
    doc = saved(
        f.case(f.observation(), f.observation(label="repeat-2",
                                              server_chain=f.chain_of(second))),
        f.case(f.observation(server=other_port), target=other_port),
    )
    ports = load_baseline(doc)
    assert [p.port for p in ports] == [443, 8443]
    assert len(ports[1].chain_sha256) == 2
    assert ports[1].rejects_untrusted_cert is Seen.UNKNOWN


def test_ports_without_any_completed_handshake_are_left_out():
    blocked = f.scenarios()[Verdict.UNREACHABLE]
    assert load_baseline(saved(blocked)) == ()
    rejected = f.rejected(f.observation(outcome=Outcome.REJECTED_BY_SERVER))
    assert load_baseline(saved(f.case(rejected)))  # chain seen: still a baseline


@pytest.mark.parametrize(
    ("doc", "error"),
    [([], TypeError), ({"schema_version": 2, "results": []}, ValueError),
     ({"schema_version": 1}, KeyError)],
)
def test_not_a_report(doc, error):
    with pytest.raises(error):
        load_baseline(doc)
