"""End to end through real middleboxes: the live probe runs in the agent namespace, and each
test checks the verdict, the rules that fired and, where the server is reached, what the
server itself logged (did the agent's certificate arrive?).

    agent --- router --- middlebox --- server (nginx mTLS / openssl s_server)
"""

from __future__ import annotations

import subprocess

import pytest

from .daemons import (
    Haproxy,
    Mitmdump,
    NginxServer,
    NginxStream,
    NginxTerminator,
    OpenSSLServer,
    Tinyproxy,
)

pytestmark = pytest.mark.lab


def server(lab, verify: str = "on") -> NginxServer:
    return lab.start(NginxServer(lab.topo, lab.dir("nginx-server"), lab.pki, verify=verify))


def agent_requests(srv: NginxServer, lab) -> list[dict[str, str]]:
    return [r for r in srv.requests() if r["fingerprint"] == lab.pki.agent_sha1]


# --- paths that carry the agent's certificate to the server -----------------------------------


def test_direct_route_passes_and_the_server_sees_the_agent(lab):
    srv = server(lab)
    run = lab.probe(f"{lab.addr.server}:8383")
    assert run.verdict == "pass_end_to_end", run.explain()
    assert {"MTLS001", "MTLS032", "MTLS035"} <= run.rules, run.explain()
    assert run.returncode == 0
    # ground truth: nginx verified the agent's certificate, coming straight from the agent
    hits = agent_requests(srv, lab)
    assert hits and all(r["verify"] == "SUCCESS" and r["remote"] == lab.addr.agent
                        for r in hits), srv.requests()


def test_direct_route_over_ipv6_passes(lab):
    srv = server(lab)
    run = lab.probe(f"[{lab.addr.server6}]:8383")
    assert run.verdict == "pass_end_to_end", run.explain()
    assert "MTLS035" in run.rules
    assert any(r["remote"] == lab.addr.agent6 and r["verify"] == "SUCCESS"
               for r in agent_requests(srv, lab)), srv.requests()


@pytest.mark.parametrize(
    ("verify", "fired"),
    [
        ("optional", {"MTLS001", "MTLS035"}),
        ("optional_no_ca", {"MTLS001", "MTLS031", "MTLS035"}),  # accepts any certificate
        ("off", {"MTLS002"}),  # before enforcement: nothing asked, nothing sent
    ],
)
def test_server_enforcement_variants_pass(lab, verify, fired):
    srv = server(lab, verify)
    run = lab.probe(f"{lab.addr.server}:8443")
    assert run.verdict == "pass_end_to_end", run.explain()
    assert fired <= run.rules, run.explain()
    if verify == "off":
        assert "MTLS001" not in run.rules
        assert not agent_requests(srv, lab)  # never asked, so never sent
    else:
        assert any(r["verify"] == "SUCCESS" for r in agent_requests(srv, lab)), srv.requests()


def test_openssl_s_server_direct_passes(lab):
    s_server = lab.start(OpenSSLServer(lab.topo, lab.dir("s_server"), lab.pki))
    run = lab.probe(f"{lab.addr.server}:8383", http_path="/")
    assert run.verdict == "pass_end_to_end", run.explain()
    assert {"MTLS001", "MTLS032", "MTLS035"} <= run.rules, run.explain()
    # -Verify 1: a handshake without a certificate is refused with an alert
    nocert = [o for o in run.result["observations"] if o["attempt"]["name"] == "tls13-nocert"]
    assert nocert[0]["outcome"] == "rejected_by_server", run.explain()
    # ground truth: s_server's verify callback printed the agent's subject
    assert "lab-agent-01" in s_server.output


def test_haproxy_tcp_passthrough_passes(lab):
    srv = server(lab)
    lab.start(Haproxy(lab.topo, lab.dir("haproxy"), lab.pki, mode="tcp"))
    run = lab.probe(f"{lab.addr.middlebox}:8383")
    assert run.verdict == "pass_end_to_end", run.explain()
    assert {"MTLS001", "MTLS032", "MTLS035"} <= run.rules, run.explain()
    # ground truth: the server verified the agent's certificate on a connection from haproxy
    assert any(r["remote"] == lab.addr.middlebox_server_side and r["verify"] == "SUCCESS"
               for r in agent_requests(srv, lab)), srv.requests()


def test_nginx_stream_ssl_preread_passthrough_passes(lab):
    srv = server(lab)
    stream = lab.start(NginxStream(lab.topo, lab.dir("nginx-stream")))
    run = lab.probe(f"{lab.addr.middlebox}:8383")
    assert run.verdict == "pass_end_to_end", run.explain()
    assert {"MTLS001", "MTLS035"} <= run.rules, run.explain()
    assert any(r["remote"] == lab.addr.middlebox_server_side and r["verify"] == "SUCCESS"
               for r in agent_requests(srv, lab)), srv.requests()
    # it really routed by SNI
    assert any("sni=server.lab" in line for line in stream.access_log), stream.access_log


def test_tinyproxy_connect_tunnel_passes(lab):
    srv = server(lab)
    proxy = lab.start(Tinyproxy(lab.topo, lab.dir("tinyproxy")))
    run = lab.probe(f"{lab.addr.server}:8383", proxy=proxy.url)
    assert run.verdict == "pass_end_to_end", run.explain()
    assert run.result["route"]["kind"] == "http_proxy"
    assert run.result["route"]["connect_status"] == 200
    assert {"MTLS001", "MTLS035"} <= run.rules, run.explain()
    assert any(r["remote"] == lab.addr.middlebox_server_side and r["verify"] == "SUCCESS"
               for r in agent_requests(srv, lab)), srv.requests()


# --- paths that break it --------------------------------------------------------------------


def assert_agent_cert_never_arrived(srv: NginxServer, lab, since: int = 0) -> None:
    """The server was reached (by the middlebox), but never saw the agent's certificate
    (in its access log from entry `since` on)."""
    seen = srv.requests()[since:]
    assert seen, "the middlebox never reached the server"
    assert not [r for r in seen if r["fingerprint"] == lab.pki.agent_sha1], seen
    assert all(r["remote"] == lab.addr.middlebox_server_side for r in seen), seen


def test_mitmproxy_explicit_proxy_is_inspected_and_named(lab):
    srv = server(lab)
    mitm = lab.start(Mitmdump(lab.topo, lab.dir("mitmdump"), mode="regular"))
    run = lab.probe(f"{lab.addr.server}:8383", proxy=mitm.url, timeout=10)
    assert run.verdict == "inspected", run.explain()
    assert {"MTLS010", "MTLS011", "MTLS013", "MTLS014"} <= run.rules, run.explain()
    assert run.product == "mitmproxy"
    assert run.returncode == 10
    assert_agent_cert_never_arrived(srv, lab)


def test_mitmproxy_transparent_redirect_is_inspected_and_named(lab):
    srv = server(lab)
    mitm = lab.start(Mitmdump(lab.topo, lab.dir("mitmdump"), mode="transparent"))
    lab.nft("middlebox", "nft-transparent.nft", port=8383, proxy_port=mitm.port)
    run = lab.probe(f"{lab.addr.server}:8383", timeout=10)  # the agent aims at the server
    assert run.result["route"]["kind"] == "direct"
    assert run.verdict == "inspected", run.explain()
    assert {"MTLS010", "MTLS011", "MTLS013", "MTLS014"} <= run.rules, run.explain()
    assert run.product == "mitmproxy"
    assert_agent_cert_never_arrived(srv, lab)


def test_haproxy_terminating_tls_is_a_load_balancer(lab):
    """Judged with --ca: the cookie names the balancer, so its foreign certificate is not
    read as an interception product's re-signing (MTLS010 stands aside for MTLS018)."""
    run = haproxy_terminating(lab, ca=True)
    assert run.verdict == "terminated_by_lb", run.explain()
    assert "MTLS010" not in run.rules


def test_haproxy_terminating_tls_with_a_pin_is_a_load_balancer(lab):
    """Same box, judged with --pin only: the foreign chain (MTLS011) plus HAProxy's cookie
    (MTLS018) make it a terminating load balancer, named."""
    run = haproxy_terminating(lab, ca=False)
    assert {"MTLS011", "MTLS018"} <= run.rules, run.explain()
    assert "MTLS013" not in run.rules  # no interception product
    assert run.verdict == "terminated_by_lb", run.explain()
    assert run.product == "HAProxy"


def haproxy_terminating(lab, *, ca: bool):
    srv = server(lab)
    lab.start(Haproxy(lab.topo, lab.dir("haproxy"), lab.pki, mode="http"))
    run = lab.probe(f"{lab.addr.middlebox}:8443", ca=ca)
    cookies = [h for o in run.result["observations"] if o.get("http")
               for h in o["http"]["headers"] if h[0].lower() == "set-cookie"]
    assert any(c[1].startswith("SERVERID=") for c in cookies), run.explain()
    assert "MTLS018" in run.rules, run.explain()
    assert run.product == "HAProxy"
    assert_agent_cert_never_arrived(srv, lab)
    return run


def same_root_terminator(lab) -> NginxServer:
    srv = server(lab)
    lab.start(NginxTerminator(lab.topo, lab.dir("nginx-terminator"), lab.pki))
    return srv


def test_same_root_terminator_with_pin_is_terminated_by_lb(lab):
    srv = same_root_terminator(lab)
    run = lab.probe(f"{lab.addr.middlebox}:8443")
    assert run.verdict == "terminated_by_lb", run.explain()
    assert "MTLS016" in run.rules, run.explain()
    assert_agent_cert_never_arrived(srv, lab)


def test_same_root_terminator_with_baseline_is_terminated_by_lb(lab):
    srv = same_root_terminator(lab)
    baseline = lab.dir("baseline") / "baseline.json"
    # the baseline is taken next to the server (the middlebox namespace's server-side link)
    base = lab.probe(f"{lab.addr.server}:8443", role="middlebox", pin=False,
                     save_baseline=baseline)
    assert "MTLS001" in base.rules, base.explain()  # the real server asks for a certificate
    assert baseline.exists()
    before = len(srv.requests())
    run = lab.probe(f"{lab.addr.middlebox}:8443", pin=False, baseline=baseline)
    assert run.verdict == "terminated_by_lb", run.explain()
    assert {"MTLS016", "MTLS020"} <= run.rules, run.explain()
    assert_agent_cert_never_arrived(srv, lab, since=before)


def same_root_terminator_before_enforcement(lab) -> NginxServer:
    srv = server(lab, "off")
    lab.start(NginxTerminator(lab.topo, lab.dir("nginx-terminator"), lab.pki))
    return srv


def test_same_root_terminator_with_only_the_ca_is_unknown(lab):
    """Before enforcement nothing but a pin or a baseline tells the terminator apart."""
    same_root_terminator_before_enforcement(lab)
    run = lab.probe(f"{lab.addr.middlebox}:8443", pin=False)
    assert run.verdict == "unknown", run.explain()
    assert "MTLS017" in run.rules, run.explain()
    assert "pin" in run.result["reason"] or "baseline" in run.result["reason"]
    assert run.returncode == 12


def test_same_root_terminator_in_front_of_an_enforcing_server_is_caught_without_pins(lab):
    """Once the server enforces, its own 'No required SSL certificate was sent' page,
    relayed by the terminator while no CertificateRequest reached the agent, proves it."""
    srv = same_root_terminator(lab)
    run = lab.probe(f"{lab.addr.middlebox}:8443", pin=False)
    assert run.verdict == "terminated_by_lb", run.explain()
    assert "MTLS024" in run.rules and "MTLS033" not in run.rules, run.explain()
    assert run.returncode == 10
    assert_agent_cert_never_arrived(srv, lab)


# --- paths that carry nothing -----------------------------------------------------------------


@pytest.mark.parametrize("action", ["reject with tcp reset", "drop"])
def test_firewall_killing_the_client_hello_is_blocked(lab, action):
    srv = server(lab)
    lab.nft("router", "nft-block-hello.nft", port=8383, action=action)
    run = lab.probe(f"{lab.addr.server}:8383", timeout=3, http_path=None)
    assert run.verdict == "blocked", run.explain()
    assert "MTLS063" in run.rules, run.explain()
    assert run.returncode == 11
    outcomes = {o["outcome"] for o in run.result["observations"]}
    assert outcomes == ({"aborted"} if action.startswith("reject") else {"no_answer"}), outcomes
    assert not srv.requests()  # ground truth: nothing reached the server's HTTP layer


# --- the lab itself ---------------------------------------------------------------------------


def test_a_topology_leaves_nothing_behind(topology):
    """Build a second topology with a daemon in it, tear it down, and find no trace: no
    namespace, no process in it, no veth in the host's namespace, nothing in nft."""
    from .netns import Topology, lab_namespaces, run

    host_links = run(["ip", "-o", "link"]).stdout
    topo = Topology("leak").create()
    try:
        assert set(lab_namespaces(topo.prefix)) == set(topo.names.values())
        topo.nft("router", "table inet probe { chain c { type filter hook forward priority 0; }; }")
        proc = subprocess.Popen(topo.argv("server", ["sh", "-c", "echo in; exec sleep 60"]),
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "in\n"  # inside the namespace now
        assert topo.pids("server") == [proc.pid]
    finally:
        problems = topo.destroy()
    proc.wait(5)
    proc.stdout.close()
    assert problems == [f"processes left in {topo.ns('server')}: [{proc.pid}]"]
    assert not lab_namespaces(topo.prefix)
    assert run(["ip", "-o", "link"]).stdout.count("to-") == host_links.count("to-")
