"""The layer rules of ARCHITECTURE.md, checked on the source (an AST walk of every import).

    cli -> run -> live -> capture -> tls -> model
           run -> capture.zeek -> tls, model   (Zeek logs: beside the pcap side, not under it)
                  run -> report -> rules -> model

- imports flow down only: a layer imports itself and the layers its row allows;
- no import circle of any size between modules (function-level imports included);
- only cli imports click; scapy is never imported at module level;
- tls, rules, report and model do no I/O (report.atomic, the one file writer, aside);
- the demo kit (mtlsprobe_demo) is imported by cli.demo alone;
- mtlsprobe.compiled (which build of the hot modules runs) imports nothing of ours, and
  only the capture core switch and the command line's --version ask it;
- at most 11 entries at the top of the package (build products aside), no module over
  650 lines.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "mtlsprobe"
IO_MODULES = {"socket", "ssl", "selectors", "subprocess", "scapy", "click", "asyncio"}

#: What each layer may import besides itself (the README's and ARCHITECTURE.md's table).
ALLOWED: dict[str, set[str]] = {
    "cli": {"run", "live", "capture", "zeek", "tls", "model", "rules", "report", "compiled"},
    "run": {"live", "capture", "zeek", "tls", "model", "rules", "report"},
    "live": {"capture", "tls", "model"},
    "capture": {"tls", "model", "compiled"},
    "zeek": {"tls", "model"},
    "tls": {"model"},
    "model": set(),
    "rules": {"model"},
    "report": {"model", "rules"},
    "compiled": set(),
}
PURE_LAYERS = ("tls", "rules", "report", "model")
IO_ALLOWED = {"mtlsprobe.report.atomic"}  # the one place reports and captures are written


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules(top: str = "mtlsprobe") -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / top).rglob("*.py"))}


MODULES = all_modules()


@cache
def imports(path: Path, top_level_only: bool = False) -> frozenset[str]:
    """Every module name imported, relative imports resolved, `import_module` strings too."""
    tree = ast.parse(path.read_text("utf-8"))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *filter(None, [base])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.split(":")[0]
            if text.startswith("mtlsprobe.") and text.replace(".", "").replace("_", "").isalnum():
                found.add(text)  # lazy command table: "mtlsprobe.cli.probe:probe"
    return frozenset(found)


def internal_deps(name: str) -> set[str]:
    """The package's own modules that `name` imports (submodule names resolved to modules)."""
    deps: set[str] = set()
    for imported in imports(MODULES[name]):
        if not imported.startswith("mtlsprobe."):
            continue
        while imported and imported not in MODULES:
            imported = imported.rpartition(".")[0]
        if imported and imported != name and imported != "mtlsprobe":
            deps.add(imported)
    return deps


def layer(name: str) -> str:
    """The folder a module sits in; ``python -m mtlsprobe`` (__main__) is the command line.

    ``capture/zeek/`` is its own layer: the Zeek-log adapter shares the capture folder (both
    read what was recorded off the wire) but neither side imports the other.
    """
    if name == "mtlsprobe.capture.zeek" or name.startswith("mtlsprobe.capture.zeek."):
        return "zeek"
    part = name.split(".")[1] if name.count(".") else ""
    return "cli" if part == "__main__" else part


def find_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            succ = graph.get(node, [])
            for j in range(i, len(succ)):
                nxt = succ[j]
                if nxt not in index:
                    work += [(node, j + 1), (nxt, 0)]
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                if low[node] == index[node]:
                    comp = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        comp.append(top)
                        if top == node:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
    return found


def test_no_import_circle_of_any_size() -> None:
    assert find_cycles({m: sorted(internal_deps(m)) for m in MODULES}) == []


def test_the_cycle_finder_finds_long_and_short_circles() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a", "e"], "e": ["d"], "f": ["a"]}
    assert sorted(find_cycles(graph)) == [["a", "b", "c"], ["d", "e"]]
    assert find_cycles({"a": ["b"], "b": ["c"], "c": [], "d": ["a", "c"]}) == []


@pytest.mark.parametrize("name", sorted(m for m in MODULES if layer(m)), ids=str)
def test_imports_flow_one_way(name: str) -> None:
    own = layer(name)
    assert own in ALLOWED, f"{name}: '{own}' is not a layer of ARCHITECTURE.md"
    wrong = {d for d in internal_deps(name) if layer(d) not in ALLOWED[own] | {own}}
    assert not wrong, f"{name} ({own}) imports {sorted(wrong)}"


@pytest.mark.parametrize("name", sorted(MODULES), ids=str)
def test_only_the_command_line_imports_click(name: str) -> None:
    if layer(name) == "cli":
        return
    assert not any(m.split(".")[0] == "click" for m in imports(MODULES[name])), name


@pytest.mark.parametrize("name", sorted(MODULES), ids=str)
def test_scapy_is_never_imported_at_module_level(name: str) -> None:
    top = imports(MODULES[name], top_level_only=True)
    assert not any(m.split(".")[0] == "scapy" for m in top), name


def calls_open(path: Path) -> bool:
    tree = ast.parse(path.read_text("utf-8"))
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "open"
        for n in ast.walk(tree)
    )


@pytest.mark.parametrize(
    "name", sorted(m for m in MODULES if layer(m) in PURE_LAYERS and m not in IO_ALLOWED), ids=str
)
def test_the_core_does_no_io(name: str) -> None:
    roots = {m.split(".")[0] for m in imports(MODULES[name])}
    assert not roots & IO_MODULES, f"{name} imports {roots & IO_MODULES}"
    assert not calls_open(MODULES[name]), f"{name} calls open()"


@pytest.mark.parametrize("name", sorted(MODULES), ids=str)
def test_the_demo_kit_is_imported_by_the_demo_command_alone(name: str) -> None:
    uses_kit = any(m.split(".")[0] == "mtlsprobe_demo" for m in imports(MODULES[name]))
    assert not uses_kit or name == "mtlsprobe.cli.demo", name


def test_the_demo_kit_does_not_reach_into_the_command_line() -> None:
    for name, path in all_modules("mtlsprobe_demo").items():
        assert not any(m.startswith("mtlsprobe.cli") for m in imports(path)), name


def test_a_newcomer_sees_few_entries_at_the_top() -> None:
    built = ("__pycache__", "_compiled.json")  # and the extension modules (.so, .pyd)
    entries = [p.name for p in PKG.iterdir()
               if p.name not in built and p.suffix not in (".so", ".pyd")]
    assert len(entries) <= 11, sorted(entries)


@pytest.mark.parametrize("name", sorted(MODULES), ids=str)
def test_no_module_over_650_lines(name: str) -> None:
    lines = MODULES[name].read_text("utf-8").count("\n")
    assert lines <= 650, f"{name}: {lines} lines"
