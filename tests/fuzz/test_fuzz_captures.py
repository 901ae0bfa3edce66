"""Fuzz the capture path: the pcap/pcapng reader, the pcapng writer's round trip, link
layers and tunnels, TCP reassembly and the whole path from file bytes to observations."""

from __future__ import annotations

import targets
from fuzzing import budget, inputs
from hypothesis import given
from hypothesis import strategies as st


@budget(500)
@given(inputs("pcap_file"))
def test_pcap_reader(data: bytes) -> None:
    targets.pcap_file(data)


@budget(200)
@given(st.binary(max_size=3000))
def test_pcapng_writer_round_trip(data: bytes) -> None:
    targets.pcapng_round_trip(data)


@budget(150)
@given(inputs("capture"))
def test_capture_path(data: bytes) -> None:
    targets.capture(data)


@budget(1000)
@given(inputs("link_layer", max_size=200))
def test_link_layers_and_tunnels(data: bytes) -> None:
    targets.link_layer(data)


@budget(1000)
@given(st.binary(max_size=600))
def test_tcp_reassembly(data: bytes) -> None:
    targets.tcp_reassembly(data)


@budget(40)
@given(inputs("analyze"))
def test_analyze_rules_and_renderers(data: bytes) -> None:
    targets.analyze(data)
