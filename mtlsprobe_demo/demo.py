"""`mtlsprobe demo`: four paths to one mTLS server on loopback, probed and judged.

Everything is made on the fly in memory (PKI, servers, proxies) and torn down before
returning; the only network traffic is to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

from mtlsprobe.live.pki import CA
from mtlsprobe.model import CaseResult, Endpoint, Expectations, Report, Verdict
from mtlsprobe.model.certs import cert_info, chain_pins
from mtlsprobe.model.errors import EXIT_BUG, EXIT_PASS
from mtlsprobe.run import pipeline

#: path name -> the verdict it must get
EXPECTED = {
    "direct": Verdict.PASS_END_TO_END,
    "tcp-relay": Verdict.PASS_END_TO_END,
    "intercepting-proxy": Verdict.INSPECTED,
    "terminating-proxy": Verdict.TERMINATED_BY_LB,
}


def run_demo(timeout: float = 5.0) -> tuple[Report, bool]:
    """Run the demo; return its report and whether every path got its expected verdict."""
    from mtlsprobe.live.credentials import Credentials
    from mtlsprobe.live.probe import ProbeOptions
    from mtlsprobe_demo.intercepting_proxy import InterceptingProxy
    from mtlsprobe_demo.server import ReferenceServer
    from mtlsprobe_demo.tcp_relay import TcpRelay
    from mtlsprobe_demo.terminating_proxy import TerminatingProxy

    root = CA("mtlsprobe Demo Server Root", org="Demo Corp")
    server_id = root.issue("ec-server.demo.test", sans=("ec-server.demo.test", "127.0.0.1"))
    agent_id = root.issue("agent-0001.demo.test", eku=None)
    inspection_ca = CA("mtlsprobe Demo Inspection CA", org="Demo Inspection Appliance")
    lb_id = root.issue("ec-server.demo.test", sans=("ec-server.demo.test",))

    credentials = Credentials(chain_der=(agent_id.der,), key=agent_id.key)
    server_chain = (cert_info(server_id.der),)
    expect = Expectations(
        roots=(cert_info(root.der),),
        pins=tuple(sorted(chain_pins(server_chain))),
        agent_cert=cert_info(agent_id.der),
        agent_chain=(cert_info(agent_id.der),),
    )

    with contextlib.ExitStack() as stack:
        server = stack.enter_context(
            ReferenceServer(server_id, client_ca=root, verify="required", behaviour="http")
        )
        upstream = (server.host, server.port)
        relay = stack.enter_context(TcpRelay(upstream))
        bump = stack.enter_context(InterceptingProxy(inspection_ca, upstream=upstream))
        lb = stack.enter_context(TerminatingProxy(lb_id, upstream))
        paths = {
            "direct": server,
            "tcp-relay": relay,
            "intercepting-proxy": bump,
            "terminating-proxy": lb,
        }
        targets = [
            (Endpoint(host=p.host, port=p.port), f"demo:{name}") for name, p in paths.items()
        ]
        options = ProbeOptions(
            sni="ec-server.demo.test",
            timeout=timeout,
            repeat=2,
            http_path="/",
            proxies=(),
            use_env_proxy=False,
            direct=True,
            credentials=credentials,
            concurrency=len(targets),
        )
        results = pipeline.probe(targets, options, expect)

    ok = all(_expected(r) for r in results) and len(results) == len(EXPECTED)
    inputs: dict[str, object] = {
        "targets": [f"{s} {e}" for e, s in targets],
        "ca": ["<demo root>"],
        "pins": list(expect.pins),
        "agent_subject": expect.agent_cert.subject if expect.agent_cert else None,
    }
    notes = (
        "demo: a reference mTLS server on loopback requiring client certificates from "
        "'mtlsprobe Demo Server Root', reached four ways: directly, through a plain TCP "
        "relay, through a re-signing intercepting proxy, and through a TLS-terminating "
        "proxy that holds a certificate from the server's own root.",
    )
    outcome = (
        "demo: every path got the verdict it should (direct and relay pass; the intercepting "
        "proxy is inspected; the terminating proxy is terminated_by_lb), so the demo exits 0"
        if ok else "demo: a path did not get its expected verdict (this is a bug)"
    )
    report = pipeline.make_report("demo", results, inputs, (*notes, outcome))
    # The report's exit code is the command's: 0 when the story came out as it should.
    return replace(report, exit_code=EXIT_PASS if ok else EXIT_BUG), ok


def _expected(result: CaseResult) -> bool:
    name = (result.source or "").removeprefix("demo:")
    return EXPECTED.get(name) == result.verdict
