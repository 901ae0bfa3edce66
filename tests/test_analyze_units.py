"""mtlsprobe.run.analyze, run.tallies and run.captures pieces: --server parsing/matching,
grouping connections into servers, and reading a stream whose SYN was not captured but which
starts with its hello."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from mtlsprobe.capture.transcripts import CaptureReader
from mtlsprobe.model import Endpoint, HttpExchange, Outcome, Seen
from mtlsprobe.model.errors import InputError
from mtlsprobe.run.analyze import ServerFilter
from mtlsprobe.run.captures import read_capture
from mtlsprobe.run.tallies import (
    MAX_BEHAVIOURS,
    MAX_SHAPES,
    ServerTally,
    behaviour,
    group_by_server,
)
from mtlsprobe.tls.observer import observe

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pcaps"


@pytest.mark.parametrize(("text", "host", "port"), [
    ("example.com", "example.com", None),
    ("Example.COM.:8443", "example.com", 8443),
    ("[::1]:443", "::1", 443),
    ("::1", "::1", None),
    ("127.0.0.1:80", "127.0.0.1", 80),
])
def test_server_filter_parses(text, host, port):
    assert ServerFilter.parse(text) == ServerFilter(host=host, port=port)


@pytest.mark.parametrize("text", ["host:0", "host:70000", "host:x", "[::1", ":443", "[::1]x"])
def test_server_filter_refuses_nonsense(text):
    with pytest.raises(InputError):
        ServerFilter.parse(text)


def test_server_filter_matches_name_or_ip_and_port():
    target = Endpoint(host="localhost", port=443, ip="127.0.0.1")
    assert ServerFilter.parse("LOCALHOST").matches(target)
    assert ServerFilter.parse("127.0.0.1:443").matches(target)
    assert not ServerFilter.parse("localhost:8443").matches(target)
    assert not ServerFilter.parse("other").matches(target)


def test_connections_without_sni_join_the_one_named_server_on_their_address():
    [obs, *rest] = read_capture(FIXTURES / "direct-tls13.pcapng").observations
    nameless = dataclasses.replace(obs, sni=None, label="nameless")
    groups = group_by_server([obs, *rest, nameless])
    assert len(groups) == 1
    target, route, members = groups[0]
    assert target.host == "localhost" and target.ip == "127.0.0.1" and route.kind == "capture"
    assert "nameless" in [o.label for o in members]
    other = dataclasses.replace(obs, sni="other.example", label="other")
    assert len(group_by_server([obs, nameless, other])) == 3  # two names: nobody adopts it


def test_missing_syn_with_hellos_at_the_start_is_read_like_a_whole_connection():
    for t in CaptureReader(FIXTURES / "direct-tls12.pcap"):
        whole = observe(t)
        cut = observe(dataclasses.replace(t, truncated_at_start=True))
        assert (cut.sni, cut.version, cut.cert_request.seen) == (
            whole.sni, whole.version, whole.cert_request.seen)
        assert cut.server_chain == whole.server_chain and cut.alerts == whole.alerts
        assert whole.cert_request.seen is Seen.YES or whole.version != "TLSv1.2"
    # a stream that does not start with a hello stays unknown
    t = next(iter(CaptureReader(FIXTURES / "direct-tls12.pcap")))
    shifted = dataclasses.replace(t, truncated_at_start=True, chunks=t.chunks[1:])
    assert observe(shifted).sni is None


def test_tally_keeps_one_observation_per_behaviour_with_counts_and_times():
    [obs, *_] = read_capture(FIXTURES / "direct-tls13.pcapng").observations
    later = [dataclasses.replace(obs, label=f"flow {i}",
                                 observed_at=obs.observed_at + timedelta(seconds=i))
             for i in (3, 1, 2)]
    other = dataclasses.replace(obs, outcome=Outcome.ABORTED, label="aborted")
    [(_target, _route, members)] = group_by_server([*later, other, obs])
    assert [m.label for m in members] == [obs.label, "aborted"]  # earliest first, kept
    assert members[0].repeats == 4
    assert members[0].last_observed_at == obs.observed_at + timedelta(seconds=3)
    assert members[1].repeats == 1 and members[1].last_observed_at is None


def test_tally_counts_shapes_beyond_the_bound():
    """Behaviours that differ in a fact the rules judge (the cipher) are kept apart past
    MAX_BEHAVIOURS too, as verdict shapes; only those beyond MAX_SHAPES are counted."""
    [obs, *_] = read_capture(FIXTURES / "direct-tls13.pcapng").observations
    tally = ServerTally((0, obs.observed_at))
    for i in range(MAX_SHAPES + 5):
        tally.add(dataclasses.replace(obs, cipher_suite=f"suite {i}"))
    tally.add(obs)
    assert tally.folded and MAX_SHAPES > MAX_BEHAVIOURS
    assert len(tally.observations()) == MAX_SHAPES
    assert tally.overflow == 6 and tally.connections == MAX_SHAPES + 6


def test_behaviour_ignores_what_differs_between_equal_connections():
    [obs, *_] = read_capture(FIXTURES / "direct-tls13.pcapng").observations
    answer = HttpExchange(path="/", status=200, headers=(("Date", "Mon"), ("Server", "x")))
    a = dataclasses.replace(obs, http=answer, label="a", client=Endpoint(host="h", port=1))
    b = dataclasses.replace(a, label="b", client=Endpoint(host="h", port=2),
                            notes=("other",), ja3="other",
                            http=dataclasses.replace(answer, headers=(("Date", "Tue"),
                                                                      ("Server", "x"))))
    assert behaviour(a) == behaviour(b)
    rewritten = dataclasses.replace(answer, headers=(("Date", "Mon"), ("Server", "proxy")))
    assert behaviour(dataclasses.replace(a, http=rewritten)) != behaviour(a)
    # a different client program (a middlebox's own ClientHello) is a behaviour of its own
    assert obs.ja4 is not None
    assert behaviour(dataclasses.replace(a, ja4="t13d1516h2_8daaf6152771_e5627efa2ab1")) != (
        behaviour(a)
    )


def test_behaviour_keeps_what_the_rules_read_of_volatile_fields():
    """Rules read the ALPN offer and session tickets (MTLS027), header names in order
    (MTLS029), Set-Cookie names (load-balancer signatures) and body tells (nginx markers,
    body signatures): connections that differ there are different behaviours; values that
    no rule reads still fold."""
    [obs] = [dataclasses.replace(o, label="a") for o in
             read_capture(FIXTURES / "direct-tls13.pcapng").observations[:1]]
    answer = HttpExchange(path="/", status=400, headers=(
        ("Date", "Mon"), ("Set-Cookie", "SID=1"), ("Server", "x")), body_excerpt="<p>hi</p>")
    a = dataclasses.replace(obs, http=answer)

    def http(**changes: object) -> object:
        return dataclasses.replace(a, http=dataclasses.replace(answer, **changes))

    same = [
        http(headers=(("Date", "Tue"), ("Set-Cookie", "SID=2; path=/"), ("Server", "x"))),
        http(body_excerpt="<p>bye</p>"),
    ]
    assert all(behaviour(b) == behaviour(a) for b in same)
    differ = [
        dataclasses.replace(a, alpn_offered=("h2", "http/1.1")),
        dataclasses.replace(a, history=a.history + "t"),
        http(headers=(("Set-Cookie", "SID=1"), ("Server", "x"))),  # no Date header
        http(headers=(("Date", "Mon"), ("Set-Cookie", "BIGipServerpool=1"), ("Server", "x"))),
        http(body_excerpt="No required SSL certificate was sent"),
        http(body_excerpt="<hr><center>nginx/1.25.3</center>"),
    ]
    keys = [behaviour(b) for b in differ]
    assert behaviour(a) not in keys and len(set(keys)) == len(keys)


def test_labels_break_ties_between_connections_that_started_at_the_same_time():
    [obs, *_] = read_capture(FIXTURES / "direct-tls13.pcapng").observations
    first, second = (dataclasses.replace(obs, label=f"x.pcap flow {n}") for n in (7, 12))
    for order in ([second, first], [first, second]):
        [(_target, _route, [member])] = group_by_server(order)
        assert member.label == "x.pcap flow 7" and member.repeats == 2


def test_behaviours_that_started_at_the_same_time_are_ordered_by_flow_not_arrival():
    """One reader and the shares of --jobs deliver connections in different orders."""
    [obs, *_] = read_capture(FIXTURES / "direct-tls13.pcapng").observations
    late = dataclasses.replace(obs, label="x.pcap flow 12")
    early = dataclasses.replace(obs, label="x.pcap flow 7", outcome=Outcome.ABORTED)
    for order in ([late, early], [early, late]):
        [(_target, _route, members)] = group_by_server(order)
        assert [m.label for m in members] == ["x.pcap flow 7", "x.pcap flow 12"]


def test_each_behaviour_lists_the_lowest_client_addresses_in_any_order_and_mtls072_groups_them():
    """The agents behind each kind of result: the 16 lowest client addresses per behaviour,
    the same whatever order connections arrive in or how tallies of shares merge."""
    import random

    import factories as f

    from mtlsprobe.rules.engine import evaluate
    from mtlsprobe.run.tallies import MAX_CLIENTS_LISTED, ServerTally

    base = f.observation(label="capture flow 0", attempt=None)
    conns = [dataclasses.replace(base, client=Endpoint(host=ip, port=40000 + i, ip=ip),
                                 label=f"capture flow {i}")
             for i, ip in enumerate([f"10.0.{i // 250}.{i % 250 + 1}" for i in range(40)])]
    lowest = tuple(sorted({c.client.ip for c in conns},
                          key=lambda a: tuple(int(p) for p in a.split("."))))[:16]

    def tallied(order, split):
        parts = [ServerTally((0, base.observed_at)) for _ in range(split)]
        for i, obs in enumerate(order):
            parts[i % split].add(obs)
        for other in parts[1:]:
            parts[0].merge(other)
        return parts[0].observations()

    one = tallied(conns, 1)
    assert MAX_CLIENTS_LISTED == 16
    assert [(o.repeats, o.clients, o.more_clients) for o in one] == [(40, lowest, True)]
    shuffled = conns[:]
    random.Random(7).shuffle(shuffled)
    assert tallied(shuffled, 3) == one
    [x] = [x for x in evaluate(f.case(*one)).findings if x.rule == "MTLS072"]
    assert x.summary.startswith("16 or more client addresses")
    assert x.evidence[0].value == f"40 connection(s) from {', '.join(lowest)} and more"
    # a capture of one client says nothing more than MTLS071
    assert "MTLS072" not in {x.rule for x in evaluate(f.case(conns[0])).findings}
