"""Judgement: observations + expectations -> findings -> verdict (pure functions).

Importing the package registers the rule catalogue (``checks``) with the engine.
"""

from __future__ import annotations

from mtlsprobe.rules import checks as _checks  # noqa: F401  (registers the rules)
from mtlsprobe.rules.engine import RULES, VERDICT_TABLE, evaluate, exit_code, overall

__all__ = ["RULES", "VERDICT_TABLE", "evaluate", "exit_code", "overall"]
