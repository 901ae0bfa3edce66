"""tests/fuzz: the fuzz harness (``targets``: one target per parser, ``fuzzing``: budgets).

Every test here is marked ``fuzz``: ``-m fuzz`` runs the harness alone, ``-m "not fuzz"``
leaves it out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: the fuzz harness (tests/fuzz)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.fuzz)
