"""Judgement: observations + expectations -> findings -> verdict (pure functions).

Importing the package registers the rule catalogue with the engine: one module per topic
(requests, identity, client_certs, consistency, path, reflector, unknown), shared helpers in
``facts``. Rule ids are public API: never renumber or reuse them.
"""

from __future__ import annotations

from mtlsprobe.rules.engine import RULES, VERDICT_TABLE, evaluate, exit_code, load_rules, overall

load_rules()

__all__ = ["RULES", "VERDICT_TABLE", "evaluate", "exit_code", "overall"]
