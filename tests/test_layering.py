"""The architecture's import boundaries, checked on the source (an AST walk).

- mtlsprobe/tls/* is sans-IO: stdlib (minus sockets/ssl/files), cryptography and the model only;
- the judgement (rules, report) and the observer never touch sockets, ssl, scapy or click;
- scapy is never imported at module level anywhere in the package (it costs ~1 s);
- nothing but the command modules imports the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "mtlsprobe"
IO_MODULES = {"socket", "ssl", "selectors", "subprocess", "scapy", "click", "asyncio"}


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def calls_open(path: Path) -> bool:
    tree = ast.parse(path.read_text("utf-8"))
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "open"
        for n in ast.walk(tree)
    )


def modules(*parts: str) -> list[Path]:
    out: list[Path] = []
    for part in parts:
        p = PKG / part
        out.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p.with_suffix(".py")])
    return [p for p in out if p.exists()]


@pytest.mark.parametrize("path", modules("tls", "rules", "report", "model", "certs"), ids=str)
def test_core_does_no_io(path: Path) -> None:
    roots = {m.split(".")[0] for m in imports(path)}
    assert not roots & IO_MODULES, f"{path.name} imports {roots & IO_MODULES}"
    assert not calls_open(path), f"{path.name} calls open()"


@pytest.mark.parametrize("path", modules("tls"), ids=str)
def test_tls_core_imports_only_stdlib_cryptography_and_model(path: Path) -> None:
    for name in imports(path):
        if name.startswith("mtlsprobe"):
            assert name.startswith(
                ("mtlsprobe.tls", "mtlsprobe.model", "mtlsprobe.model.certs")
            ), name


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=str)
def test_scapy_is_never_imported_at_module_level(path: Path) -> None:
    assert not any(m.split(".")[0] == "scapy" for m in imports(path, top_level_only=True))


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=str)
def test_nothing_imports_the_cli(path: Path) -> None:
    if path.name in {"cli.py", "__main__.py"} or path.parent.name == "commands":
        return  # the command modules are the CLI's own parts
    assert "mtlsprobe.cli.main" not in imports(path)
