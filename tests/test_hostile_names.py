"""Names written by others (certificate subjects, HTTP headers, agents' reports) never reach
a terminal raw or change a ticket's Markdown (issues 16 and 17)."""

from __future__ import annotations

import dataclasses
import json

import factories as f
import pytest

from mtlsprobe.report.build import build_report
from mtlsprobe.report.escape import code_span, markdown, spreadsheet, terminal
from mtlsprobe.report.markdown import render_markdown
from mtlsprobe.report.table import render_table
from mtlsprobe.rules.engine import evaluate

OSC = "\x1b]0;owned\x07"
CSI = "\x1b[2J"
BIDI = "\u202egnp.exe"
MD = "**bold** <script>x</script> [click](http://e.vil) a|b `x`"
RAW = (OSC, CSI, "\x9b31m", BIDI, "\u2066", "\x00", "\x7f")


def hostile_result():
    ca = f.foreign_ca(f"Evil {OSC}{BIDI} CA", MD)
    leaf = ca.issue(f"ec.example.com{CSI}", not_before=f.MONTH_AGO)
    obs = f.intercepted(server_chain=(f.info(leaf), f.info(ca)), sni=f"x{OSC}.example",
                        notes=(f"note {CSI}{MD}",))
    res = evaluate(f.case(obs, expect=f.ROOTS_ONLY))
    return build_report("analyze", [res], {}, {"hostname": f"agent{OSC}|{MD}"},
                        [f"capture note {OSC}"])


@pytest.mark.parametrize("render", [render_table, render_markdown])
def test_no_control_character_reaches_the_output(render):
    text = render(hostile_result())
    for raw in RAW:
        assert raw not in text, (render.__name__, repr(raw))
    assert "x1b" in text and "owned" in text and "u202e" in text  # shown, escaped


def outside_code_spans(text: str) -> str:
    """The Markdown that renders as markup (code spans, `` ``...`` ``, are inert)."""
    import re

    return re.sub(r"(`+)(?:(?!\1).)*?\1", "", text)


def test_markdown_output_has_no_live_markup():
    text = outside_code_spans(render_markdown(hostile_result()))
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "[click](http" not in text
    assert "**bold**" not in text


def test_the_escapers_one_by_one():
    assert terminal("a\x1bb\u202ec\nd") == "a\\x1bb\\u202ec\\nd"
    assert terminal("a\nb", keep_newlines=True) == "a\nb"
    assert markdown("a|b *c* _d_ e_f <g> [h](i)") == (
        "a\\|b \\*c\\* \\_d\\_ e_f &lt;g&gt; \\[h\\](i)")
    assert code_span("x`y") == "``x`y``" and code_span("`") == "`` ` ``"
    assert spreadsheet("=HYPERLINK()") == "'=HYPERLINK()" and spreadsheet("host") == "host"


def test_a_thousand_ca_names_are_counted_not_listed():
    names = tuple(f"CN=CA {i}" for i in range(1400))
    obs = f.observation(cert_request=dataclasses.replace(f.CERT_REQUEST, authorities=names))
    res = evaluate(f.case(obs))
    text = render_table(build_report("probe", [res], {}, {}, ()))
    assert "CN=CA 1399" not in text and "1400 CA names" in text
    assert len(text) < 20_000


def test_agents_reports_are_escaped_in_the_fleet_summary(tmp_path):
    from click.testing import CliRunner

    from mtlsprobe.cli.main import main
    from mtlsprobe.report.jsonout import to_jsonable

    report = hostile_result()
    doc = to_jsonable(report)
    assert isinstance(doc, dict)
    doc["results"][0]["reason"] = f"{OSC}{MD}"
    (tmp_path / "agent.json").write_text(json.dumps(doc))
    for fmt in ("table", "markdown", "csv"):
        out = CliRunner().invoke(main, ["summarize", str(tmp_path), "--format", fmt]).output
        for raw in RAW:
            assert raw not in out, (fmt, repr(raw))
        if fmt == "markdown":
            live = outside_code_spans(out)
            assert "<script>" not in live and "**bold**" not in live


def test_json_and_json_lines_keep_the_value_but_no_raw_bidi_or_c1_control():
    from mtlsprobe.report.jsonl import render_jsonl
    from mtlsprobe.report.jsonout import dumps

    result = hostile_result()
    result = dataclasses.replace(result, notes=(*result.notes, f"c1 \x9b31m del \x7f {BIDI}"))
    for text in (dumps(result), render_jsonl(result)):
        for raw in (*RAW, "\u2028"):
            assert raw not in text, repr(raw)
        assert "\\u202e" in text  # the CA name, escaped
    assert "\\u009b" in dumps(result)  # the note (JSON Lines carry results only)
    parsed = json.loads(dumps(result))
    assert f"c1 \x9b31m del \x7f {BIDI}" in parsed["notes"]  # the same value for a parser


def test_the_reflector_s_line_escapes_what_a_client_sent():
    from mtlsprobe.cli.serve import answered_line

    line = answered_line({"peer": "192.0.2.1:5000", "tls": {"version": "TLSv1.3"},
                          "client_hello": {"ja3": "a" * 32, "sni": f"x{OSC}{CSI}{BIDI}"},
                          "client_chain_sha256": []})
    for raw in RAW:
        assert raw not in line, repr(raw)
    assert line.startswith("192.0.2.1:5000 TLSv1.3 ja3=") and "sni=x\\x1b]0;owned" in line
