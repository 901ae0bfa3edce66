"""Remake fixtures/zeek-logs/: the Zeek logs of the project's own lab captures, DERIVED.

Usage (from the repository root):
    python3 scripts/zeek/zeek_lab_logs.py [--out fixtures/zeek-logs]

For every capture listed in ``fixtures/pcaps/manifest.json``, ``fixtures/pcaps/lab/
manifest.json`` and ``fixtures/pcaps/lab/middleboxes/manifest.json`` it writes
``<capture name>/ssl.log`` and ``x509.log`` with ``zeek_logs_from_capture.py`` (every
column of its ssl.log, and x509.log with the ``cert`` column of log-certs-base64.zeek, so
a reader can recompute pins), and ``manifest.json``: per capture the verdict the lab
expects for it, copied from the capture's own manifest. Same captures, same bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zeek_logs_from_capture import ROOT, Options, derive, write

OPTIONS = Options(certs_base64=True)
SETS = [
    ("loopback", "fixtures/pcaps"),
    ("lab", "fixtures/pcaps/lab"),
    ("middleboxes", "fixtures/pcaps/lab/middleboxes"),
]
#: What each verdict says about the path (README.md's three failure modes, and the rest).
PATH_KIND = {
    "pass_end_to_end": "pass-through (client-certificate authentication reaches the server)",
    "inspected": "intercepting proxy / TLS inspection (re-signs the server's certificate)",
    "terminated_by_lb": "terminating load balancer / TLS terminator",
    "blocked": "blocked (TLS never gets through)",
    "client_cert_rejected": "direct; the server rejects the client's certificate",
}
_COPIED = ("scenario", "server", "sni", "ports", "pins", "ca", "expected_verdict",
           "expected_rules", "expected_ports", "expected_product", "allowed_products",
           "known_issue", "captured_at")


def _connect_targets(capture: Path) -> dict[str, str]:
    """Client port -> CONNECT target for tunnelled connections (Zeek puts this in
    http.log, not ssl.log, whose id.resp_* is the proxy)."""
    from zeek_logs_from_capture import _FlowReader

    out = {}
    for flow in _FlowReader(capture, max_bytes=None):
        t = flow.transcript
        if t.route.kind != "capture":
            out[str(flow.orig[1])] = str(t.server)
    return out


def _derive_all(out: Path, tmp: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for set_name, folder in SETS:
        source = json.loads((ROOT / folder / "manifest.json").read_text())
        roots = Path(tmp) / f"{set_name}-root.pem"
        roots.write_text(source["ca_pem"])
        opts = dataclasses.replace(OPTIONS, roots=roots)
        for cap in source["captures"]:
            capture = ROOT / folder / cap["file"]
            name = capture.name.split(".")[0]
            logs = derive(capture, opts)
            write(logs, out / name, opts)
            entry: dict[str, Any] = {
                "name": name,
                "set": set_name,
                "capture": f"{folder}/{cap['file']}",
                "source_manifest": f"{folder}/manifest.json",
                "path": PATH_KIND[cap["expected_verdict"]],
                "logs": [f"{name}/{log}.log" for log, rows in
                         (("ssl", logs.ssl), ("x509", logs.x509)) if rows],
                "ssl_rows": len(logs.ssl),
                "tls13_rows": sum(r["version"] == "TLSv13" for r in logs.ssl),
                "x509_rows": len(logs.x509),
                # server leaves the log shows (TLS 1.2 rows only: TLS 1.3 hides them)
                "server_leaf_fps": sorted({r["cert_chain_fps"][0] for r in logs.ssl
                                           if r["cert_chain_fps"]}),
            }
            entry.update({k: cap[k] for k in _COPIED if k in cap})
            if cap.get("baseline"):  # the behaviour baseline (--baseline), from the repo root
                entry["baseline"] = f"{folder}/{cap['baseline']}"
            targets = _connect_targets(capture)
            if targets:
                entry["connect_targets"] = targets
            entries.append(entry)
    return entries


def make(out: Path) -> dict[str, Any]:
    """Write every capture's logs under ``out`` and return the manifest (also written)."""
    with tempfile.TemporaryDirectory() as tmp:
        entries = _derive_all(out, tmp)
    manifest = {
        "about": "Zeek ssl.log/x509.log DERIVED from the lab captures by "
                 "scripts/zeek/zeek_logs_from_capture.py (not written by Zeek); remade by "
                 "scripts/zeek/zeek_lab_logs.py. See README.md.",
        "ca_pem": "in each entry's source_manifest (the root to pass as --ca)",
        "zeek_config": [
            "base scripts (scripts/base/protocols/ssl, scripts/base/files/x509)",
            "redef SSL::log_include_server_certificate_subject_issuer = T",
            "redef SSL::log_include_client_certificate_subject_issuer = T",
            "@load policy/protocols/ssl/certificate-request-info",
            "@load policy/protocols/ssl/validate-certs, SSL::root_certs = the source "
            "manifest's ca_pem, SSL::ssl_cache_intermediate_ca = F",
            "@load policy/protocols/ssl/log-certs-base64",
            "x509.log: each (fingerprint, host_cert, client_cert) once per capture",
        ],
        "captures": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "fixtures" / "zeek-logs"))
    a = p.parse_args(argv)
    manifest = make(Path(a.out))
    print(f"{len(manifest['captures'])} captures -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
