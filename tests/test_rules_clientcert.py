"""What the far end does with client certificates: MTLS030-MTLS035."""

from __future__ import annotations

import factories as f
from factories import found

from mtlsprobe.model import HttpExchange, Outcome, Seen, Severity, Stage, Verdict
from mtlsprobe.rules.engine import evaluate

NGINX_400 = HttpExchange(path="/", status=400, reason="Bad Request",
                         body_excerpt="<center>No required SSL certificate was sent</center>")


def test_mtls030_untrusted_accepted_but_baseline_rejects():
    c = f.case(f.untrusted(), f.observation(), expect=f.with_baseline())
    (x,) = found(c, "MTLS030")
    assert "throwaway certificate" in x.summary
    assert not found(c, "MTLS031")
    assert evaluate(c).verdict is Verdict.TERMINATED_BY_LB


def test_mtls030_not_asked_at_all_is_said_so():
    obs = f.untrusted(cert_request=f.NO_CERT_REQUEST, client_chain=(), client_chain_seen=Seen.NO)
    (x,) = found(f.case(obs, expect=f.with_baseline()), "MTLS030")
    assert "without asking" in x.summary


def test_mtls031_untrusted_accepted_without_baseline_is_info():
    c = f.case(f.untrusted())
    (x,) = found(c, "MTLS031")
    assert x.severity is Severity.INFO
    assert not found(c, "MTLS030")


def test_mtls031_http_400_is_not_acceptance():
    c = f.case(f.untrusted(http=HttpExchange(path="/", status=400, body_excerpt="bad")))
    assert not found(c, "MTLS031") and not found(c, "MTLS032")


def test_mtls032_untrusted_rejected_by_alert():
    (x,) = found(f.case(f.rejected(f.untrusted(), "unknown_ca")), "MTLS032")
    assert "unknown_ca" in x.summary


def test_mtls032_untrusted_rejected_nginx_style():
    (x,) = found(f.case(f.untrusted(http=NGINX_400)), "MTLS032")
    assert "No required SSL certificate was sent" in x.summary


def test_mtls032_untrusted_rejected_status_496_and_late_eof():
    assert found(f.case(f.untrusted(http=HttpExchange(path="/", status=496))), "MTLS032")
    # The observer calls a handshake that ended before any data ESTABLISHED at FIRST_READ.
    eof = f.untrusted(outcome=Outcome.ESTABLISHED, stage=Stage.FIRST_READ, http=None)
    c = f.case(eof)
    assert found(c, "MTLS032") and not found(c, "MTLS031")


def test_encrypted_alert_after_handshake_is_not_a_rejection():
    from mtlsprobe.model import AlertInfo, Direction

    hidden = AlertInfo(sender=Direction.S2C, level="unknown", description="encrypted",
                       after_handshake=True)
    c = f.case(f.untrusted(alerts=(hidden,)))
    assert not found(c, "MTLS032") and found(c, "MTLS031")


def test_tls13_alert_with_warning_level_byte_still_rejects():
    from mtlsprobe.model import AlertInfo, Direction

    odd = AlertInfo(sender=Direction.S2C, level="warning", description="certificate_required",
                    code=116, after_handshake=True, decrypted=True)
    assert found(f.case(f.untrusted(alerts=(odd,), stage=Stage.HTTP)), "MTLS032")


def test_mtls033_agent_rejected_by_alert():
    c = f.case(f.rejected(f.observation(), "bad_certificate"))
    (x,) = found(c, "MTLS033")
    assert x.severity is Severity.REJECTS
    assert "bad_certificate" in x.summary
    assert evaluate(c).verdict is Verdict.CLIENT_CERT_REJECTED


def test_mtls033_agent_rejected_nginx_style():
    assert found(f.case(f.observation(http=NGINX_400)), "MTLS033")


def test_mtls033_not_claimed_when_no_certificate_was_sent():
    obs = f.rejected(f.observation(client_chain=(), client_chain_seen=Seen.NO,
                                   cert_request=f.NO_CERT_REQUEST), "handshake_failure")
    assert not found(f.case(obs), "MTLS033")


def test_mtls034_empty_certificate_from_agent():
    obs = f.rejected(f.observation(client_chain=(), client_chain_seen=Seen.YES),
                     "certificate_required")
    c = f.case(obs)
    (x,) = found(c, "MTLS034")
    assert "Example Agent CA" in x.summary
    assert not found(c, "MTLS033")
    assert evaluate(c).verdict is Verdict.CLIENT_CERT_REJECTED


def test_mtls035_agent_accepted():
    (x,) = found(f.case(f.observation()), "MTLS035")
    assert x.severity is Severity.INFO


def test_mtls035_quiet_when_rejected():
    assert not found(f.case(f.rejected(f.observation())), "MTLS035")


def test_interceptor_that_rejects_the_agent_is_still_inspected():
    obs = f.rejected(f.intercepted(client_chain=(f.AGENT_CERT,), client_chain_seen=Seen.YES))
    res = evaluate(f.case(obs))
    assert res.verdict is Verdict.INSPECTED
    assert "MTLS033" in {x.rule for x in res.findings}


# --- MTLS024: the server behind the path asks over HTTP for what the path never asked ---------


def test_mtls024_server_page_without_a_request_is_a_terminator():
    obs = f.observation(cert_request=f.NO_CERT_REQUEST, client_chain=(),
                        client_chain_seen=Seen.NO, http=NGINX_400)
    c = f.case(obs, expect=f.ROOTS_ONLY)
    (x,) = found(c, "MTLS024")
    assert x.severity is Severity.BREAKS
    assert not found(c, "MTLS033")  # nothing was sent, so nothing was rejected
    assert evaluate(c).verdict is Verdict.TERMINATED_BY_LB


def test_mtls024_silent_when_the_request_arrived_or_we_had_no_cert():
    asked = f.observation(http=NGINX_400)  # CertificateRequest seen: MTLS033's business
    assert not found(f.case(asked), "MTLS024")
    no_cert = f.nocert(cert_request=f.NO_CERT_REQUEST, http=NGINX_400)
    assert not found(f.case(no_cert), "MTLS024")
    other_400 = f.observation(cert_request=f.NO_CERT_REQUEST, client_chain=(),
                              client_chain_seen=Seen.NO,
                              http=HttpExchange(path="/", status=400, body_excerpt="bad"))
    assert not found(f.case(other_400), "MTLS024")
