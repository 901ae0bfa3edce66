"""The kind of middlebox (MTLS025/026) and the behaviour baseline (MTLS027/028/093/094)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import factories as f

from mtlsprobe.model import OTHER_NAME, HttpExchange, TcpFacts, Verdict
from mtlsprobe.report.build import build_report
from mtlsprobe.report.jsonout import to_jsonable
from mtlsprobe.rules.behaviour_facts import behaviour_facts
from mtlsprobe.rules.engine import evaluate
from mtlsprobe.run.baseline import load_baseline


def rules_of(result) -> set[str]:
    return {x.rule for x in result.findings}


def saved_baseline(*observations, sni: str | None = None):
    """A baseline the way --save-baseline makes it: a report, as JSON, read back."""
    obs = [dataclasses.replace(o, sni=sni) for o in observations]
    report = build_report("probe", [evaluate(f.case(*obs, expect=f.NOTHING))], {}, {}, ())
    return load_baseline(json.loads(json.dumps(to_jsonable(report))))


HEADERS = (("Server", "nginx"), ("Date", "x"), ("Content-Type", "text/html"))
HTTP_OK = HttpExchange(path="/", status=200, reason="OK", headers=HEADERS)


def real_server(**changes):
    """What the real server shows: ALPN http/1.1, nginx's header case, TTL 64."""
    base = dict(alpn="http/1.1", http=HTTP_OK, tcp=TcpFacts(synack_ttl=64))
    base.update(changes)
    return (f.rejected(f.untrusted(http=None), "unknown_ca"), f.observation(**base))


def with_baseline(baseline, expect=f.PINNED):
    return dataclasses.replace(expect, baseline=baseline)


# --- the kind of box -----------------------------------------------------------------


def test_one_fixed_certificate_for_every_name_is_a_terminator():
    fixed = f.foreign_chain("Corp LB CA")
    case = dataclasses.replace(f.case(f.observation(server_chain=fixed), expect=f.ROOTS_ONLY),
                               other_name=(f.other_name(fixed),))
    res = evaluate(case)
    assert res.verdict is Verdict.TERMINATED_BY_LB, res.reason
    assert "MTLS026" in rules_of(res) and "MTLS025" not in rules_of(res)
    # the remediation follows the kind, on every finding about this chain
    for x in res.findings:
        if x.rule in ("MTLS010", "MTLS026"):
            assert "pass-through" in x.remediation.lower(), x.rule


def test_without_kind_evidence_a_foreign_ca_stays_inspected():
    res = evaluate(f.case(f.intercepted("Corp LB CA"), expect=f.ROOTS_ONLY))
    assert res.verdict is Verdict.INSPECTED
    assert not rules_of(res) & {"MTLS025", "MTLS026"}


def test_a_certificate_minted_for_the_unrelated_name_is_an_interceptor():
    ca = f.foreign_ca("Minting Proxy CA")
    for_other = ca.issue(OTHER_NAME, sans=(OTHER_NAME,), not_before=f.MONTH_AGO)
    minted = (f.info(for_other), f.info(ca))
    case = dataclasses.replace(f.case(f.intercepted(), expect=f.ROOTS_ONLY),
                               other_name=(f.other_name(minted),))
    res = evaluate(case)
    assert res.verdict is Verdict.INSPECTED
    assert "MTLS025" in rules_of(res)
    assert any(e.value == OTHER_NAME for x in res.findings for e in x.evidence)


def test_minting_proof_outweighs_the_same_fixed_leaf_elsewhere_and_the_corporate_root():
    """An inspection CA under the corporate root mints: proof of minting wins."""
    inspection_ca = f.SERVER_ISSUING_CA  # issued under the corporate root
    minted = inspection_ca.issue("ec.example.com", key=inspection_ca.key, not_before=f.MONTH_AGO)
    chain = (f.info(minted), *f.REAL_CHAIN[1:])
    res = evaluate(f.case(f.observation(server_chain=chain)))
    assert res.verdict is Verdict.INSPECTED
    assert "MTLS025" in rules_of(res)


def test_a_certificate_request_beside_a_foreign_chain_is_a_terminator():
    """Apache, Caddy, nginx in front of the server ask for the agent's certificate; an
    interceptor cannot use it, so it does not ask."""
    fresh = f.foreign_chain("Lab LB CA", not_before=f.OBSERVED_AT - dt.timedelta(hours=1))
    res = evaluate(f.case(f.observation(server_chain=fresh), expect=f.ROOTS_ONLY))
    assert res.verdict is Verdict.TERMINATED_BY_LB
    (x,) = [x for x in res.findings if x.rule == "MTLS026"]
    assert any(e.field == "cert_request.seen" for e in x.evidence)


def test_a_self_signed_leaf_is_a_terminator():
    lone = f.pki.CA("server.lab")
    leaf = dataclasses.replace(f.info(lone), is_ca=False)
    res = evaluate(f.case(f.intercepted(server_chain=(leaf,)), expect=f.ROOTS_ONLY))
    assert res.verdict is Verdict.TERMINATED_BY_LB and "MTLS026" in rules_of(res)


def test_a_pool_with_one_terminating_member_is_terminated_by_lb():
    lb = f.foreign_chain("Lab LB CA")
    member = [f.intercepted(label=f"repeat-{i}", server_chain=lb) for i in (2, 3)]
    res = evaluate(f.case(f.observation(), *member))
    assert res.verdict is Verdict.TERMINATED_BY_LB
    assert "MTLS026" in rules_of(res)


def test_a_pool_member_seen_on_repeated_equal_connections_is_terminated_by_lb():
    """A capture keeps one observation per behaviour: two equal handshakes to the member
    are one observation with repeats=2, the same evidence as two observations."""
    lb = f.foreign_chain("Lab LB CA")
    member = f.intercepted(label="x.pcap flow 1", attempt=None, server_chain=lb, repeats=2,
                           last_observed_at=f.OBSERVED_AT)
    real = f.observation(label="x.pcap flow 0", attempt=None)
    res = evaluate(f.case(real, member))
    assert res.verdict is Verdict.TERMINATED_BY_LB
    assert "MTLS026" in rules_of(res)
    once = dataclasses.replace(member, repeats=1, last_observed_at=None)
    assert "MTLS026" not in rules_of(evaluate(f.case(real, once)))


def test_other_name_handshakes_never_count_as_the_server_s_identity():
    """The real server's default certificate for an unknown name is no foreign chain."""
    other_cert = f.SERVER_ISSUING_CA.issue("default.example.com", not_before=f.MONTH_AGO)
    case = dataclasses.replace(f.case(*f.probe_set()),
                               other_name=(f.other_name(f.chain_of(other_cert)),))
    res = evaluate(case)
    assert res.verdict is Verdict.PASS_END_TO_END, res.reason
    assert any(o.label == "other-name" for o in res.observations)


# --- the behaviour baseline ----------------------------------------------------------


def test_the_same_behaviour_passes_and_takes_nothing_from_tcp_alone():
    base = saved_baseline(*real_server())
    assert evaluate(f.case(*real_server(), expect=with_baseline(base))).verdict is (
        Verdict.PASS_END_TO_END)
    # an L4 load balancer answers TCP itself: noted, never a break
    res = evaluate(f.case(*real_server(tcp=TcpFacts(synack_ttl=255)), expect=with_baseline(base)))
    assert res.verdict is Verdict.PASS_END_TO_END
    assert "MTLS028" in rules_of(res)


def test_ssl_offload_with_the_server_s_own_key_is_terminated_by_lb():
    """Pin and baseline chain match; ALPN and the untrusted-certificate answer do not."""
    base = saved_baseline(*real_server())
    lb_http = dataclasses.replace(HTTP_OK, headers=tuple((n.lower(), v) for n, v in HEADERS))
    offload = (
        f.untrusted(http=dataclasses.replace(HTTP_OK, status=400)),
        f.observation(alpn=None, http=lb_http, tcp=TcpFacts(synack_ttl=64)),
    )
    res = evaluate(f.case(*offload, expect=with_baseline(base)))
    assert res.verdict is Verdict.TERMINATED_BY_LB, res.reason
    (diff,) = [x for x in res.findings if x.rule == "MTLS027"]
    fields = {e.field.split("[")[0] for e in diff.evidence}
    assert {"tls.alpn", "tls.answer_to_untrusted_cert", "http.header_names"} <= fields


def test_only_the_http_head_differs_is_unknown_naming_the_fact():
    base = saved_baseline(*real_server())
    other_head = dataclasses.replace(HTTP_OK, headers=(("server", "nginx"), ("date", "x")))
    res = evaluate(f.case(*real_server(http=other_head), expect=with_baseline(base)))
    assert res.verdict is Verdict.UNKNOWN
    assert "MTLS027" not in rules_of(res)
    (diff,) = [x for x in res.findings if x.rule == "MTLS029"]
    assert "http.header_names" in diff.summary


def test_a_port_or_name_missing_from_the_baseline_is_never_a_pass():
    base = saved_baseline(*real_server(), sni="ec.example.com")
    assert base[0].server_name == "ec.example.com"
    other_port = dataclasses.replace(f.TARGET, port=443)
    res = evaluate(f.case(*(dataclasses.replace(o, server=other_port) for o in real_server()),
                          target=other_port, expect=with_baseline(base)))
    assert res.verdict is Verdict.UNKNOWN and "MTLS093" in rules_of(res)
    other_name = [dataclasses.replace(o, sni="intranet.example.com") for o in real_server()]
    res = evaluate(f.case(*other_name, expect=with_baseline(base)))
    assert res.verdict is Verdict.UNKNOWN and "MTLS093" in rules_of(res)
    same = [dataclasses.replace(o, sni="EC.example.com") for o in real_server()]
    assert evaluate(f.case(*same, expect=with_baseline(base))).verdict is (
        Verdict.PASS_END_TO_END)


def test_a_pin_without_a_baseline_passes_with_a_warning_that_offload_is_not_ruled_out():
    res = evaluate(f.case(*real_server(), expect=f.PINNED))
    assert res.verdict is Verdict.PASS_END_TO_END, res.reason
    (warn,) = [x for x in res.findings if x.rule == "MTLS094"]
    assert "SSL offload" in warn.summary and "--save-baseline" in warn.remediation
    # with the baseline, or with a chain that is not the pinned one, it is not said
    base = saved_baseline(*real_server())
    assert "MTLS094" not in rules_of(evaluate(f.case(*real_server(),
                                                     expect=with_baseline(base))))
    foreign = f.observation(server_chain=f.foreign_chain("Corp LB CA"))
    assert "MTLS094" not in rules_of(evaluate(f.case(foreign, expect=f.PINNED)))


def test_behaviour_facts_leave_out_what_a_connection_could_not_show():
    resumed = f.observation(resumed=True, alpn="http/1.1")
    assert not [k for k in behaviour_facts(resumed) if k.startswith("tls.")]
    hidden = f.observation(version="TLSv1.3", decrypted=False, history="CSOXYF")
    assert not [k for k in behaviour_facts(hidden) if k.startswith("tls.session_tickets")]


# --- products, never wrong -----------------------------------------------------------

SQUID_VIA = ("Via", "1.1 mbox (squid/5.7)")


def bumped(*headers):
    http = dataclasses.replace(HTTP_OK, headers=(*HEADERS, *headers))
    return f.intercepted(http=http)


def test_a_squid_via_header_names_squid_and_key_sharing_alone_names_nothing():
    res = evaluate(f.case(bumped(SQUID_VIA), expect=f.ROOTS_ONLY))
    assert res.verdict is Verdict.INSPECTED
    assert res.product == "Squid"
    ca = f.foreign_ca("Squid Bump CA")
    same_key = ca.issue("ec.example.com", key=ca.key, not_before=f.MONTH_AGO)
    res = evaluate(f.case(f.observation(server_chain=(f.info(same_key), f.info(ca))),
                          expect=f.ROOTS_ONLY))
    assert res.verdict is Verdict.INSPECTED and res.product is None


def test_the_real_server_s_own_server_header_never_names_the_box_in_front():
    """haproxy in front of nginx: the Server: nginx header is the backend's."""
    res = evaluate(f.case(bumped(), expect=f.ROOTS_ONLY))
    assert res.product is None  # no baseline: a Server header may be the real server's
    base = saved_baseline(*real_server())  # the real server says "Server: nginx" too
    res = evaluate(f.case(bumped(), expect=with_baseline(base, f.ROOTS_ONLY)))
    assert res.product is None
    apache = dataclasses.replace(HTTP_OK, headers=(("Server", "Apache/2.4.62 (Debian)"),))
    res = evaluate(f.case(f.intercepted(http=apache), expect=with_baseline(base, f.ROOTS_ONLY)))
    assert res.product == "Apache httpd"


def test_tells_that_disagree_name_no_product():
    base = saved_baseline(*real_server())
    http = dataclasses.replace(HTTP_OK, headers=(("Server", "Caddy"), SQUID_VIA))
    res = evaluate(f.case(f.intercepted(http=http), expect=with_baseline(base, f.ROOTS_ONLY)))
    assert res.verdict is Verdict.INSPECTED and res.product is None


def test_a_caddy_local_ca_names_caddy_as_a_terminator():
    caddy = f.foreign_ca("Caddy Local Authority - ECC Intermediate")
    leaf = caddy.issue("ec.example.com", sans=("ec.example.com",), not_before=f.MONTH_AGO)
    res = evaluate(f.case(f.observation(server_chain=(f.info(leaf), f.info(caddy))),
                          expect=f.ROOTS_ONLY))
    assert res.verdict is Verdict.TERMINATED_BY_LB and res.product == "Caddy"


def test_the_real_server_s_nginx_header_is_no_proxy_warning():
    base = saved_baseline(*real_server())
    res = evaluate(f.case(*real_server(), expect=with_baseline(base)))
    assert "MTLS065" not in rules_of(res)
    res = evaluate(f.case(*real_server(http=dataclasses.replace(
        HTTP_OK, headers=(*HEADERS, SQUID_VIA))), expect=with_baseline(base)))
    assert "MTLS065" in rules_of(res)


def test_the_server_hello_s_extensions_are_a_fact_and_captures_fill_them():
    from pathlib import Path

    from mtlsprobe.run.captures import read_capture

    fixture = Path(__file__).resolve().parents[1] / "fixtures/pcaps/direct-tls12.pcap"
    result = read_capture(fixture)
    assert all(o.server_extensions for o in result.observations if o.version)
    base = saved_baseline(*real_server(server_extensions=(43, 51)))
    res = evaluate(f.case(*real_server(server_extensions=(51, 43)), expect=with_baseline(base)))
    assert res.verdict is Verdict.TERMINATED_BY_LB
    (x,) = [x for x in res.findings if x.rule == "MTLS027"]
    assert any(e.field.startswith("tls.server_extensions[") for e in x.evidence)
