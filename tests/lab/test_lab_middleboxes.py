"""More real middleboxes between the agent and the server, each probed live from the agent
namespace with everything a careful admin gives: the server root (--ca), the server's SPKI
pin (--pin), a baseline saved on the server's side of the middlebox (--baseline), the agent's
own credentials (--cert/--key or --pkcs12) and --http-path /, on both agent ports (8383 and
8443) where the box serves both.

Each test states the CORRECT result (verdict per port, exit code, and the product: the right
one or none, never another). Some of them fail against rules that do not tell these boxes
apart yet; the test is the specification, the rules are fixed elsewhere.

    agent --- router --- middlebox --- server (nginx, ssl_verify_client on, 8383 + 8443)

Set MTLSLAB_REPORT_DIR to keep every probe's JSON report there (for comparing the wire).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from .daemons import Haproxy, NginxServer, NginxStream, ProbeRun, Tinyproxy
from .daemons_more import (
    BOTH_PORTS,
    ApacheTerminator,
    CaddyTerminator,
    HaproxyOffload,
    HaproxyPool,
    NginxHeaderTerminator,
    Squid,
    Sslsplit,
    Stunnel,
    agent_pkcs12,
    pool_member,
)

pytestmark = pytest.mark.lab

EXIT_PASS, EXIT_BREAKS = 0, 10
SQUID = {"Squid", "Squid ssl-bump"}  # one product, two names in signatures.json


# --- helpers ----------------------------------------------------------------------------------


def server(lab) -> NginxServer:
    return lab.start(NginxServer(lab.topo, lab.dir("nginx-server"), lab.pki))


def save_baseline(lab) -> Path:
    """The baseline, taken from the middlebox namespace straight at the server's address (the
    server's side of the middlebox; nothing is running there yet), both ports."""
    path = lab.dir("baseline") / "baseline.json"
    base = lab.probe(lab.addr.server, role="middlebox", save_baseline=path,
                     extra=ports_args(BOTH_PORTS))
    record(base, "baseline")
    assert base.returncode == EXIT_PASS, explain(base)
    return path


def ports_args(ports: Iterable[int]) -> tuple[str, ...]:
    return tuple(a for p in ports for a in ("--port", str(p)))


def probe_all(lab, host: str, baseline: Path, *, name: str, ports=BOTH_PORTS,
              pkcs12: bool = False, **kw: Any) -> ProbeRun:
    """Probe `host` on `ports` from the agent with every expectation: --ca, --pin (probe_from's
    defaults), --baseline, the agent's credentials and --http-path / ."""
    extra = ports_args(ports)
    if pkcs12:
        p12, password = agent_pkcs12(lab.pki, lab.dir("p12"))
        extra += ("--pkcs12", str(p12), "--password-file", str(password))
    run = lab.probe(host, baseline=baseline, agent=not pkcs12, http_path="/", extra=extra, **kw)
    record(run, name)
    return run


def record(run: ProbeRun, name: str) -> None:
    folder = os.environ.get("MTLSLAB_REPORT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(run.report, indent=1))


def by_port(run: ProbeRun) -> dict[int, dict[str, Any]]:
    return {r["target"]["port"]: r for r in run.results}


def explain(run: ProbeRun) -> str:
    lines = [f"exit {run.returncode}, overall {run.report['verdict']}"]
    for r in run.results:
        lines.append(f"port {r['target']['port']} route {r['route']['kind']}: {r['verdict']} "
                     f"product={r.get('product')} reason={r['reason']}")
        lines += [f"  {f['rule']} {f['severity']}: {f['summary']}" for f in r["findings"]]
        for o in r["observations"]:
            http = o.get("http") or {}
            lines.append(f"  obs {o['label']}: {o['outcome']}/{o['stage']} "
                         f"certreq={o['cert_request']['seen']} http={http.get('status')}")
    return "\n".join(lines)


def assert_product(result: dict[str, Any], allowed: set[str]) -> None:
    """The product is one of `allowed` (names of the right product) or not named: never
    another product's name."""
    product = result.get("product")
    assert product is None or product in allowed, (
        f"product {product!r} named; only {sorted(allowed)} or none is right here")


def expect(run: ProbeRun, verdicts: dict[int, str], exit_code: int,
           products: Iterable[str] = ()) -> None:
    """Each port's verdict, the exit code, and the product (one of `products` or none)."""
    got = {port: r["verdict"] for port, r in by_port(run).items()}
    assert got == verdicts, explain(run)
    assert run.returncode == exit_code, explain(run)
    for result in run.results:
        assert_product(result, set(products))


def assert_no_break(run: ProbeRun) -> None:
    """A passing path must not carry a single finding that says it breaks client auth."""
    breaks = [(r["target"]["port"], f["rule"]) for r in run.results for f in r["findings"]
              if f["severity"] in ("breaks", "rejects", "blocks")]
    assert not breaks, explain(run)


def redirect_to(lab, port: int) -> None:
    """Transparent interception: the middlebox sends the agent ports to its local `port`."""
    lab.nft("middlebox", "nft-transparent.nft", port="{ 8383, 8443 }", proxy_port=port)


def squid_route(lab, squid: Squid, mode: str) -> dict[str, Any]:
    """The agent's way to squid: "explicit" (--proxy) or "transparent" (an nft redirect
    to its intercepting port; the agent aims at the server)."""
    if mode == "explicit":
        return {"proxy": squid.url}
    redirect_to(lab, squid.intercept_port)
    return {}


def agent_hits(srv: NginxServer, lab, since: int, port: int | None = None) -> list[dict]:
    return [r for r in srv.requests()[since:]
            if r["fingerprint"] == lab.pki.agent_sha1 and r["verify"] == "SUCCESS"
            and (port is None or r["port"] == str(port))]


def assert_agent_cert_never_arrived(srv: NginxServer, lab, since: int,
                                    port: int | None = None) -> None:
    """The box reached the server, but the agent's certificate never did."""
    seen = [r for r in srv.requests()[since:] if port is None or r["port"] == str(port)]
    assert seen, "the middlebox never reached the server"
    assert not agent_hits(srv, lab, since, port), seen


# --- paths that carry the agent's certificate: they stay passing with a baseline ---------------


def test_direct_with_every_expectation_passes(lab):
    srv = server(lab)
    baseline = save_baseline(lab)
    before = len(srv.requests())
    run = probe_all(lab, lab.addr.server, baseline, name="direct", pkcs12=True)
    expect(run, {8383: "pass_end_to_end", 8443: "pass_end_to_end"}, EXIT_PASS)
    assert_no_break(run)
    for port in BOTH_PORTS:
        assert any(r["remote"] == lab.addr.agent for r in agent_hits(srv, lab, before, port))


def test_haproxy_tcp_passthrough_with_a_baseline_passes(lab):
    srv = server(lab)
    baseline = save_baseline(lab)
    lab.start(Haproxy(lab.topo, lab.dir("haproxy"), lab.pki, mode="tcp"))
    before = len(srv.requests())
    run = probe_all(lab, lab.addr.middlebox, baseline, name="haproxy-tcp")
    expect(run, {8383: "pass_end_to_end", 8443: "pass_end_to_end"}, EXIT_PASS)
    assert_no_break(run)
    for port in BOTH_PORTS:
        assert agent_hits(srv, lab, before, port), srv.requests()[before:]


def test_tinyproxy_connect_tunnel_with_a_baseline_passes(lab):
    srv = server(lab)
    baseline = save_baseline(lab)
    proxy = lab.start(Tinyproxy(lab.topo, lab.dir("tinyproxy")))
    before = len(srv.requests())
    run = probe_all(lab, lab.addr.server, baseline, name="tinyproxy", proxy=proxy.url)
    expect(run, {8383: "pass_end_to_end", 8443: "pass_end_to_end"}, EXIT_PASS)
    assert_no_break(run)
    assert {r["route"]["kind"] for r in run.results} == {"http_proxy"}
    for port in BOTH_PORTS:
        assert agent_hits(srv, lab, before, port), srv.requests()[before:]


def test_nginx_stream_ssl_preread_with_a_baseline_passes(lab):
    srv = server(lab)
    baseline = save_baseline(lab)
    lab.start(NginxStream(lab.topo, lab.dir("nginx-stream")))
    before = len(srv.requests())
    run = probe_all(lab, lab.addr.middlebox, baseline, name="nginx-stream")
    expect(run, {8383: "pass_end_to_end", 8443: "pass_end_to_end"}, EXIT_PASS)
    assert_no_break(run)
    for port in BOTH_PORTS:
        assert agent_hits(srv, lab, before, port), srv.requests()[before:]


@pytest.mark.parametrize("mode", ["explicit", "transparent"])
def test_squid_peek_and_splice_passes(lab, mode):
    """peek at step 1, splice all: squid reads the ClientHello and lets TLS through untouched."""
    srv = server(lab)
    baseline = save_baseline(lab)
    squid = lab.start(Squid(lab.topo, lab.dir("squid"), lab.pki, rules="splice"))
    before = len(srv.requests())
    run = probe_all(lab, lab.addr.server, baseline, name=f"squid-splice-{mode}", timeout=12,
                    **squid_route(lab, squid, mode))
    expect(run, {8383: "pass_end_to_end", 8443: "pass_end_to_end"}, EXIT_PASS, SQUID)
    assert_no_break(run)
    for port in BOTH_PORTS:
        assert agent_hits(srv, lab, before, port), srv.requests()[before:]


# --- terminators: a box that holds a certificate for the name ends TLS -------------------------


@pytest.mark.parametrize("ca", ["server-root", "server-root+client-ca"])
def test_haproxy_offload_with_the_servers_own_key_is_terminated_by_lb(lab, ca):
    """The pin and the baseline both match the leaf (it IS the server's certificate and key):
    only the behaviour differs (CertificateRequest CA names, how an untrusted certificate is
    refused, the HTTP layer), and the server sees haproxy's client certificate, never the
    agent's. With "server-root+client-ca" haproxy accepts the agent: nothing fails at all."""
    srv = server(lab)
    baseline = save_baseline(lab)
    lab.start(HaproxyOffload(lab.topo, lab.dir("haproxy-offload"), lab.pki, ca=ca))
    before = len(srv.requests())
    run = probe_all(lab, lab.addr.middlebox, baseline, name=f"haproxy-offload-{ca}")
    if ca == "server-root+client-ca":
        assert_agent_cert_never_arrived(srv, lab, before)
    else:  # haproxy refuses the agent's certificate: nothing gets through to the server
        assert not srv.requests()[before:], srv.requests()[before:]
    expect(run, {8383: "terminated_by_lb", 8443: "terminated_by_lb"}, EXIT_BREAKS,
           {"HAProxy"})


def test_apache_httpd_terminator_is_terminated_by_lb(lab):
    srv = server(lab)
    baseline = save_baseline(lab)
    lab.start(ApacheTerminator(lab.topo, lab.dir("apache2"), lab.pki))
    before = len(srv.requests())
    run = probe_all(lab, lab.addr.middlebox, baseline, name="apache", pkcs12=True)
    assert_agent_cert_never_arrived(srv, lab, before)
    expect(run, {8383: "terminated_by_lb", 8443: "terminated_by_lb"}, EXIT_BREAKS,
           {"Apache httpd"})


def test_caddy_tls_internal_terminator_is_terminated_by_lb(lab):
    srv = server(lab)
    baseline = save_baseline(lab)
    lab.start(CaddyTerminator(lab.topo, lab.dir("caddy"), lab.pki))
    before = len(srv.requests())
    run = probe_all(lab, lab.addr.middlebox, baseline, name="caddy", timeout=10)
    assert_agent_cert_never_arrived(srv, lab, before)
    expect(run, {8383: "terminated_by_lb", 8443: "terminated_by_lb"}, EXIT_BREAKS, {"Caddy"})


def test_stunnel_self_signed_terminator_is_terminated_by_lb(lab):
    """A fixed (self-signed) certificate for the name is a terminator, not an interceptor:
    `inspected` is wrong here."""
    srv = server(lab)
    baseline = save_baseline(lab)
    lab.start(Stunnel(lab.topo, lab.dir("stunnel")))
    before = len(srv.requests())
    run = probe_all(lab, lab.addr.middlebox, baseline, name="stunnel")
    assert_agent_cert_never_arrived(srv, lab, before)
    expect(run, {8383: "terminated_by_lb", 8443: "terminated_by_lb"}, EXIT_BREAKS,
           {"stunnel"})


def test_nginx_terminator_passing_the_cert_in_headers_is_terminated_by_lb(lab):
    srv = server(lab)
    baseline = save_baseline(lab)
    lab.start(NginxHeaderTerminator(lab.topo, "middlebox", lab.dir("nginx-headers"), lab.pki,
                                    ports={8383: 8383, 8443: 8443}))
    before = len(srv.requests())
    run = probe_all(lab, lab.addr.middlebox, baseline, name="nginx-headers")
    assert_agent_cert_never_arrived(srv, lab, before)
    expect(run, {8383: "terminated_by_lb", 8443: "terminated_by_lb"}, EXIT_BREAKS, {"nginx"})


def test_l4_pool_with_one_terminating_member_is_terminated_by_lb(lab):
    """haproxy mode tcp, roundrobin over the real server and an nginx terminating with its
    own CA: half the connections end at the terminator. Repeats make sure both are met."""
    srv = server(lab)
    baseline = save_baseline(lab)
    lab.start(pool_member(lab.topo, lab.dir("pool-member"), lab.pki))
    lab.start(HaproxyPool(lab.topo, lab.dir("haproxy-pool")))
    before = len(srv.requests())
    run = probe_all(lab, lab.addr.middlebox, baseline, name="l4-pool", repeat=6, timeout=10)
    # ground truth: both members were met (the member connects from the server's address)
    remotes = {r["remote"] for r in srv.requests()[before:]}
    assert {lab.addr.middlebox_server_side, lab.addr.server} <= remotes, remotes
    expect(run, {8383: "terminated_by_lb", 8443: "terminated_by_lb"}, EXIT_BREAKS,
           {"HAProxy", "nginx"})


# --- interceptors: TLS re-signed on the path --------------------------------------------------


def test_sslsplit_transparent_is_inspected(lab):
    srv = server(lab)
    baseline = save_baseline(lab)
    split = lab.start(Sslsplit(lab.topo, lab.dir("sslsplit")))
    redirect_to(lab, split.port)
    before = len(srv.requests())
    run = probe_all(lab, lab.addr.server, baseline, name="sslsplit", timeout=10)
    assert {r["route"]["kind"] for r in run.results} == {"direct"}
    assert_agent_cert_never_arrived(srv, lab, before)
    expect(run, {8383: "inspected", 8443: "inspected"}, EXIT_BREAKS, {"sslsplit"})


@pytest.mark.parametrize("mode", ["explicit", "transparent"])
def test_squid_ssl_bump_is_inspected(lab, mode):
    srv = server(lab)
    baseline = save_baseline(lab)
    squid = lab.start(Squid(lab.topo, lab.dir("squid"), lab.pki, rules="bump"))
    before = len(srv.requests())
    run = probe_all(lab, lab.addr.server, baseline, name=f"squid-bump-{mode}", timeout=12,
                    **squid_route(lab, squid, mode))
    assert_agent_cert_never_arrived(srv, lab, before)
    expect(run, {8383: "inspected", 8443: "inspected"}, EXIT_BREAKS, SQUID)


def test_squid_bumping_only_8443_breaks_8443_alone(lab):
    srv = server(lab)
    baseline = save_baseline(lab)
    squid = lab.start(Squid(lab.topo, lab.dir("squid"), lab.pki, rules="bump-8443"))
    before = len(srv.requests())
    run = probe_all(lab, lab.addr.server, baseline, name="squid-bump-8443", proxy=squid.url,
                    timeout=12)
    assert agent_hits(srv, lab, before, 8383), srv.requests()[before:]
    assert_agent_cert_never_arrived(srv, lab, before, port=8443)
    expect(run, {8383: "pass_end_to_end", 8443: "inspected"}, EXIT_BREAKS, SQUID)
