"""Compare the deriver with every Zeek baseline whose trace we have (a developer's check).

Usage:
    python3 scripts/zeek/zeek_check_baselines.py ZEEK_GIT_DIR [--traces DIR]

ZEEK_GIT_DIR is a clone of zeek/zeek (a bare one is fine: files are read with ``git
show HEAD:...``); ``--traces`` defaults to ../shared/pcaps/zeek__zeek/testing/btest/Traces.
For each ``testing/btest/Baseline/<test>/`` holding ssl.log or x509.log whose test reads one
trace (``-r $TRACES/...``) that is present, it derives the logs (with the test's
``relog_known_certificates_after = 0``, ``log-hostcerts-only`` and ``log-certs-base64``)
and prints OK, or BAD with the first differences in the columns both logs have. The test
that must pass is tests/test_zeek_deriver.py (the ten baselines in ../shared/zeek-logs);
this one reaches the rest of Zeek's baselines (30 agreed at zeek/zeek a13de64fbbdb).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import zeek_logs_from_capture as d

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT.parent / "shared" / "pcaps" / "zeek__zeek" / "testing" / "btest" / "Traces"


def _git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", repo, *args], capture_output=True,
                          text=True).stdout


def _tsv(text: str) -> list[dict[str, str]]:
    rows, fields = [], []
    for line in text.splitlines():
        if line.startswith("#fields\t"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"), strict=False)))
    return rows


def _key(row: dict[str, str]) -> tuple[str, ...]:
    return tuple(row.get(k, "") for k in ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"))


def check(repo: str, baseline: str, test_text: str, trace: Path) -> list[object]:
    opts = d.Options(dedup="relog_known_certificates_after = 0" not in test_text,
                     host_certs_only="log-hostcerts-only" in test_text,
                     certs_base64="log-certs-base64" in test_text)
    logs = d.derive(trace, opts)
    ssl_fields, x509_fields = d.fields_for(opts)
    rendered = [{n: d._tsv_value(r.get(n), k) for n, k in ssl_fields} for r in logs.ssl]
    ours = {_key(r): r for r in rendered}
    ours_x = [{n: d._tsv_value(r.get(n), k) for n, k in x509_fields} for r in logs.x509]
    issues: list[object] = []
    for zeek in _tsv(_git(repo, "show", f"HEAD:{baseline}/ssl.log")):
        mine = ours.get(_key(zeek))
        if mine is None:
            issues.append(("row missing", _key(zeek)))
            continue
        issues += [(_key(zeek), k, mine[k], zeek[k]) for k in sorted(set(mine) & set(zeek))
                   if k not in ("ts", "uid") and mine[k] != zeek[k]]
    zeek_x = _tsv(_git(repo, "show", f"HEAD:{baseline}/x509.log"))
    if zeek_x and len(zeek_x) != len(ours_x):
        issues.append(("x509 rows", len(ours_x), len(zeek_x)))
    for mine_x, theirs in zip(ours_x, zeek_x, strict=False):
        issues += [("x509", k, mine_x[k], theirs[k]) for k in sorted(set(mine_x) & set(theirs))
                   if k != "ts" and mine_x[k] != theirs[k]]
    return issues


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("repo", help="zeek/zeek git directory")
    p.add_argument("--traces", type=Path, default=TRACES)
    a = p.parse_args(argv)
    files = _git(a.repo, "ls-tree", "-r", "--name-only", "HEAD", "testing/btest").split()
    baselines = sorted({f.rsplit("/", 1)[0] for f in files
                        if f.startswith("testing/btest/Baseline/")
                        and f.endswith(("/ssl.log", "/x509.log"))})
    tests = {f.removeprefix("testing/btest/").rsplit(".", 1)[0].replace("/", "."): f
             for f in files if not f.startswith("testing/btest/Baseline/")}
    bad = 0
    for baseline in baselines:
        test = tests.get(baseline.rsplit("/", 1)[1])
        if test is None:
            continue
        text = _git(a.repo, "show", f"HEAD:{test}")
        traces = re.findall(r"-r\s+\$TRACES/(\S+)", text)
        if len(traces) != 1 or not (a.traces / traces[0]).is_file():
            continue
        issues = check(a.repo, baseline, text, a.traces / traces[0])
        bad += bool(issues)
        print("OK " if not issues else "BAD", baseline.rsplit("/", 1)[1], traces[0],
              *issues[:4])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
