"""Import contracts: the layering README describes, checked on the source so it stays true.

bot -> recommender's door (engine facade, records, errors, config, urls, webfetch) -> its parts -> config/errors
nothing in recommender/ imports discord or bot; bot/sandbox/ imports neither bot nor recommender;
no import circles among the project's modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from helpers import ROOT

PACKAGES = ("recommender", "bot", "migrations")
DOOR = {
    "recommender",
    "recommender.engine",
    "recommender.records",
    "recommender.errors",
    "recommender.config",
    "recommender.urls",
    "recommender.webfetch",  # the http(s) fetcher the bot and `lookalike sync` share
}
EDGES = {"bot.cli": {"recommender.cli"}}  # the console script: the one place that knows both halves


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports(name: str, path: Path, *, runtime_only: bool) -> Iterator[str]:
    """Modules `name` imports. runtime_only: only imports that run when the module is imported
    (not those inside functions or under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def walk(nodes: list[ast.stmt]) -> Iterator[ast.stmt]:
        for node in nodes:
            yield node
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                if not runtime_only:
                    yield from walk(node.body)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not runtime_only:
                    yield from (n for n in ast.walk(node) if isinstance(n, ast.stmt))
            elif isinstance(node, (ast.ClassDef, ast.If, ast.Try, ast.With)):
                yield from walk([n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt)])

    for node in walk(tree.body):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)  # `from pkg import module`


def project_imports(name: str, path: Path, *, runtime_only: bool) -> set[str]:
    known = modules()
    return {m for m in imports(name, path, runtime_only=runtime_only) if m in known and m != name}


def test_the_contract_checker_sees_imports_of_every_kind(tmp_path: Path) -> None:
    probe = ROOT / "recommender" / "engine.py"
    found = project_imports("recommender.engine", probe, runtime_only=True)
    assert {"recommender.embedder", "recommender.catalogues", "recommender.records"} <= found
    lazy = project_imports("recommender.cli", ROOT / "recommender" / "cli.py", runtime_only=False)
    assert "recommender.engine" in lazy  # imported inside a function


def test_recommender_never_imports_discord_or_the_bot() -> None:
    bad = {
        (name, m)
        for name, path in modules().items()
        if name.startswith("recommender")
        for m in imports(name, path, runtime_only=False)
        if m.split(".")[0] in ("discord", "bot")
    }
    assert bad == set()


def test_the_sandbox_imports_neither_the_bot_nor_the_recommender() -> None:
    bad = {
        (name, m)
        for name, path in modules().items()
        if name.startswith("bot.sandbox")
        for m in imports(name, path, runtime_only=False)
        if m.split(".")[0] == "recommender" or (m.split(".")[0] == "bot" and not m.startswith("bot.sandbox"))
    }
    assert bad == set()


def test_the_bot_sees_only_the_recommenders_door() -> None:
    bad = {
        (name, m)
        for name, path in modules().items()
        if name.startswith("bot") and not name.startswith("bot.sandbox")
        for m in project_imports(name, path, runtime_only=False)
        if m.startswith("recommender") and m not in DOOR and m not in EDGES.get(name, set())
    }
    assert bad == set()


def test_there_is_no_import_circle() -> None:
    graph = {name: project_imports(name, path, runtime_only=True) for name, path in modules().items()}
    graph = {n: {m for m in deps if not n.startswith(m + ".")} for n, deps in graph.items()}  # a package's own __init__
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_no_source_file_is_a_god_file() -> None:
    """A file well past ~400 lines holds two concepts: split it along them."""
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > 440}
    assert long == {}
