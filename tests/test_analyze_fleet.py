"""Issue 13: a server's connections from a fleet of agents, each with its own client
certificate, are every one judged, in bounded memory (run.tallies folds them into verdict
shapes past MAX_BEHAVIOURS), with the verdict and counts the uncapped tally gives, in any
order of arrival and however the connections were shared out between readers.

Hand-made Observations (tests/factories.py); tests/test_analyze_shares.py reads a real
capture of such a fleet with one reader and in shares.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from datetime import timedelta

import factories as f
import pytest

from mtlsprobe.model import CertInfo, Direction, Endpoint, Observation, TcpFacts, Verdict
from mtlsprobe.rules.engine import evaluate
from mtlsprobe.run import analyze as analyze_mod
from mtlsprobe.run import tallies
from mtlsprobe.run.pipeline import judge
from mtlsprobe.run.tallies import ServerTallies, ServerTally, verdict_shape

FLEET = 100


def agent_cert(i: int) -> CertInfo:
    """Agent i's own certificate (the rules read what the chain says, not its signature)."""
    return dataclasses.replace(f.AGENT_CERT, sha256=hashlib.sha256(b"agent %d" % i).hexdigest(),
                               subject=f"CN=agent-{i:03d}", serial=str(i + 1))


def fleet(n: int = FLEET, refused: int = 3) -> list[Observation]:
    """Connection i from agent i (its certificate, address, port and distance); every
    `refused`-th one, from the first, refused by the server with a certificate alert (none
    when 0), the others accepted."""
    out = []
    for i in range(n):
        ttl = 64 - i % 9
        obs = f.observation(
            label=f"fleet.pcap flow {i}", attempt=None, http=None,
            client=Endpoint(host=f"10.1.{i // 200}.{i % 200 + 1}", port=40000 + i),
            observed_at=f.OBSERVED_AT + timedelta(seconds=i),
            client_chain=(agent_cert(i),),
            tcp=TcpFacts(syn_ttl=ttl, synack_ttl=57, client_ttls=(ttl,), server_ttls=(57,),
                         rst_from=(Direction.C2S,), rst_ttls=(ttl,),
                         synack_options=(f"mss={1400 - i % 3}", "sack_perm")),
        )
        out.append(f.rejected(obs, "unknown_ca") if refused and i % refused == 0 else obs)
    return out


def tally_of(observations: list[Observation]) -> ServerTallies:
    out = ServerTallies()
    for obs in observations:
        out.add(obs)
    return out


def judged(observations: list[Observation]):
    [group] = tally_of(observations).groups()
    return group, judge(group.target, group.route, group.observations, f.PINNED, "capture")


def summary(result, rule: str) -> str:
    [x] = [x for x in result.findings if x.rule == rule]
    return x.summary


def uncapped(monkeypatch: pytest.MonkeyPatch, observations: list[Observation]):
    with monkeypatch.context() as m:
        m.setattr(tallies, "MAX_BEHAVIOURS", 10**6)
        group, result = judged(observations)
    assert not group.folded and len(group.observations) == len(observations)
    return result


def test_every_connection_of_a_fleet_is_judged_with_exact_counts():
    conns = fleet()
    group, result = judged(conns)
    assert group.folded and group.overflow == 0 and group.connections == FLEET
    assert group.client_certs == FLEET
    assert sum(o.repeats for o in group.observations) == FLEET
    # one refused and one accepted shape: agents differ in certificate, port and TTLs only
    refused, accepted = group.observations
    assert (refused.label, refused.repeats) == ("fleet.pcap flow 0", 34)
    assert (accepted.label, accepted.repeats) == ("fleet.pcap flow 1", 66)
    assert refused.last_observed_at == conns[99].observed_at
    assert accepted.last_observed_at == conns[98].observed_at
    assert "100 TLS connection(s)" in summary(result, "MTLS071")
    assert "client certificate sent on 100 (accepted on 66)" in summary(result, "MTLS071")


def test_a_folded_fleet_gets_the_uncapped_judgement(monkeypatch):
    for conns in (fleet(), fleet(refused=1)):
        reference = uncapped(monkeypatch, conns)
        group, result = judged(conns)
        assert group.folded
        assert result.verdict is reference.verdict
        assert result.reason == reference.reason
        assert [x.rule for x in result.findings] == [x.rule for x in reference.findings]
        assert [x.summary for x in result.findings] == [x.summary for x in reference.findings]
    # all refused: MTLS070 names the first agent and counts every connection
    assert reference.verdict is Verdict.CLIENT_CERT_REJECTED
    assert "CN=agent-000" in summary(result, "MTLS070")
    assert "on 100 of 100 connection(s)" in summary(result, "MTLS070")


def test_folding_depends_on_neither_arrival_order_nor_shares():
    conns = fleet()
    want = tally_of(conns).groups()
    rng = random.Random(13)
    for parts in (2, 4, 7):  # shares of 50 fold on their own, of 25 and 15 only merged
        shuffled = rng.sample(conns, len(conns))
        assert tally_of(shuffled).groups() == want
        merged = ServerTallies()
        for k in range(parts):
            merged.merge(tally_of(shuffled[k::parts]))
        assert merged.groups() == want


def test_shapes_beyond_the_bound_are_the_same_in_any_order(monkeypatch):
    """Past MAX_SHAPES the kept shapes are those of lowest rank, so a shape dropped once is
    never kept later and the counts stay exact; merged shares keep the same ones."""
    monkeypatch.setattr(tallies, "MAX_SHAPES", 8)
    conns = [dataclasses.replace(o, cipher_suite=f"suite {i % 20}")
             for i, o in enumerate(fleet(120, refused=0))]
    want = tally_of(conns).groups()
    [group] = want
    assert len(group.observations) == 8 and group.connections == 120
    assert sum(o.repeats for o in group.observations) + group.overflow == 120
    assert {o.repeats for o in group.observations} == {6}  # every kept shape whole
    rng = random.Random(7)
    for parts in (1, 3, 5):
        shuffled = rng.sample(conns, len(conns))
        merged = ServerTallies()
        for k in range(parts):
            merged.merge(tally_of(shuffled[k::parts]))
        assert merged.groups() == want


def test_distinct_client_certificates_are_counted_up_to_a_bound(monkeypatch):
    monkeypatch.setattr(tallies, "MAX_CLIENT_CERTS", 40)
    conns = fleet(60)
    assert tally_of(conns[:40]).groups()[0].client_certs == 40
    [group] = tally_of(conns).groups()
    assert group.folded and group.client_certs is None
    merged = ServerTallies()  # two shares under the bound, over it together
    merged.merge(tally_of(conns[:35]))
    merged.merge(tally_of(conns[35:]))
    assert merged.groups()[0].client_certs is None
    assert "more than 40 different client certificate(s)" in (
        analyze_mod._folding_notes(group)[0])


def test_the_note_says_how_many_connections_and_certificates_were_judged_together():
    [group] = tally_of(fleet()).groups()
    [note] = analyze_mod._folding_notes(group)
    assert note.startswith("ec.example.com:8443: 100 connection(s) from 100 different client "
                           "certificate(s) judged as 2 behaviour(s)")
    [small] = tally_of(fleet(20)).groups()
    assert not small.folded and analyze_mod._folding_notes(small) == []


def test_the_shape_keeps_what_the_rules_read_and_drops_who_the_client_is():
    a, b = fleet(2, refused=0)
    assert verdict_shape(a) == verdict_shape(b)  # another agent, port, TTL, MSS value
    other_ca = dataclasses.replace(agent_cert(1), issuer="CN=Other Agent CA")
    changes: list[dict[str, object]] = [
        dict(client_chain=(other_ca,)),  # another CA's agents
        dict(client_chain=(agent_cert(1), f.AGENT_CA_INFO)),  # a chain, not a leaf
        dict(client_chain=()),  # an empty Certificate
        dict(ja4="t13d1516h2_8daaf6152771_e5627efa2ab1"),  # another client program
        dict(tcp=dataclasses.replace(b.tcp, synack_ttl=120)),  # another TCP stack answers
        dict(tcp=dataclasses.replace(b.tcp, rst_from=(Direction.S2C,), rst_ttls=(57,))),
        dict(tcp=dataclasses.replace(b.tcp, synack_options=("mss=1400",))),  # no sack_perm
    ]
    shapes = [verdict_shape(dataclasses.replace(b, **c)) for c in changes]  # type: ignore[arg-type]
    assert verdict_shape(a) not in shapes and len(set(shapes)) == len(shapes)
    # a reset only from the server's side: MTLS053 reads its TTLs
    server_rst = dataclasses.replace(b.tcp, rst_from=(Direction.S2C,), rst_ttls=(57,))
    assert verdict_shape(dataclasses.replace(b, tcp=server_rst)) != verdict_shape(
        dataclasses.replace(b, tcp=dataclasses.replace(server_rst, rst_ttls=(120,))))


def test_a_tally_of_one_behaviour_never_folds():
    tally = ServerTally((0, f.OBSERVED_AT))
    obs = fleet(1, refused=0)[0]
    for i in range(1000):
        tally.add(dataclasses.replace(obs, observed_at=obs.observed_at + timedelta(seconds=i)))
    assert not tally.folded and [o.repeats for o in tally.observations()] == [1000]
    assert evaluate(f.case(*tally.observations())).verdict is Verdict.PASS_END_TO_END
