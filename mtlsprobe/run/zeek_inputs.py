"""analyze's Zeek inputs: which given files are Zeek logs, and what the expectations can use.

Boundary: sorting ``analyze``'s sources into captures and Zeek logs by content (first bytes,
gzip looked through; ``logs.sniff``), and the report notes about expectations a Zeek log
cannot serve. Reading the logs is ``mtlsprobe.capture.zeek``'.

Decisions, for reviewers:

- A Zeek log is used wherever a capture is: the same tallies, rules and report.
- ``--pin`` needs the certificates' keys, which x509.log holds only with Zeek's
  ``log-certs-base64`` policy. A server whose Zeek chains carry no key is judged without
  the pins (a note says which policy to load) rather than called foreign for a pin that
  could not be compared. ``--ca`` matches a root by fingerprint or by name; ``--baseline``
  compares chains by fingerprint: both work from x509.log alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from mtlsprobe.capture.zeek.sniff import head_bytes, zeek_kind
from mtlsprobe.capture.zeek.zeek_logs import POLICY_HINT, ZeekLogs, log_path
from mtlsprobe.model import Expectations, Observation
from mtlsprobe.model.errors import InputError
from mtlsprobe.run.captures import Source

ZeekSource = tuple[str, str, str]  # (path, "tsv" | "json", "ssl" | "x509" | other path)


def split_zeek_logs(sources: Sequence[Source]) -> tuple[list[Source], list[ZeekSource]]:
    """(captures, Zeek logs) of ``sources``, each kept in the order given (stdin too)."""
    captures: list[Source] = []
    logs: list[ZeekSource] = []
    for source in sources:
        head = head_bytes(str(source))
        kind = zeek_kind(head)
        if kind is None:
            captures.append(source)
        else:
            logs.append((str(source), kind, log_path(head, kind)))
    return captures, logs


def refuse_other_logs(logs: Sequence[ZeekSource], folders: Sequence[str]) -> None:
    """A Zeek log of another kind (conn.log, ...) named on the command line is an input error,
    as a file that is no capture is; found in a folder, it is skipped with a note."""
    for path, _kind, which in logs:
        in_folder = any(path.startswith(f.rstrip("/") + "/") for f in folders)
        if which not in ("ssl", "x509") and not in_folder:
            raise InputError(f"{path}: a Zeek {which or 'unknown'} log; analyze reads Zeek's "
                             "ssl.log and x509.log")


def from_zeek(observations: Sequence[Observation]) -> bool:
    return bool(observations) and all(o.route.source == "zeek" for o in observations)


def expectations_for(
    observations: Sequence[Observation], expect: Expectations,
) -> tuple[Expectations, str | None]:
    """The expectations to judge a server's Zeek observations with, and a note when --pin
    had to be left out (no key of any chain is known: x509.log without certificates)."""
    if not expect.pins or not from_zeek(observations):
        return expect, None
    keys = any(c.spki_pin for o in observations for c in o.server_chain)
    chains = any(o.server_chain for o in observations)
    if keys or not chains:
        return expect, None
    note = (f"--pin not checked for {observations[0].server}: the x509.log given does not "
            f"carry the certificates ({POLICY_HINT}); --ca and --baseline still apply")
    return dataclasses.replace(expect, pins=()), note


__all__ = ["ZeekLogs", "expectations_for", "from_zeek", "refuse_other_logs", "split_zeek_logs"]
