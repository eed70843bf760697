"""The structure issue 22 set: no import cycle between any two modules, and no module so long that
it holds several concerns. (The layers themselves are import-linter's contract in
pyproject.toml, run by .ci/run as `lint-imports`.)"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

PACKAGE = Path(__file__).resolve().parent.parent / "scrub"
#: Lines a module may hold before it is split by concern.
MAX_LINES = 500
#: Lines of a function's body (after its signature and docstring): typer commands declare their
#: options in the signature, which may be long; what they do must be short.
MAX_BODY = 60


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    imported = graph.find_modules_directly_imported_by(child)
                    work.append((child, iter(sorted(imported))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_between_modules() -> None:
    graph = grimp.build_graph("scrub")
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    """The check above can fail: a cycle added to the real graph is found."""
    graph = grimp.build_graph("scrub")
    graph.add_import(importer="scrub.errors", imported="scrub.layout")
    assert any({"scrub.errors", "scrub.layout"} <= set(c) for c in _cycles(graph))


def test_no_module_over_the_size_limit() -> None:
    long = {str(p.relative_to(PACKAGE.parent)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def _long_functions(source: str, where: str) -> dict[str, int]:
    long = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (len(body) > 1 and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)):
                body = body[1:]  # the docstring
            lines = (node.end_lineno or node.lineno) - body[0].lineno + 1
            if lines > MAX_BODY:
                long[f"{where}:{node.lineno} {node.name}"] = lines
    return long


def test_no_function_body_over_the_size_limit() -> None:
    long: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        long |= _long_functions(path.read_text(encoding="utf-8"),
                                str(path.relative_to(PACKAGE.parent)))
    assert long == {}


def test_the_function_check_sees_a_long_body() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_BODY + 1))
    assert _long_functions(f"def f():\n    \"\"\"Doc.\"\"\"\n{body}", "m") == {"m:1 f": 61}
    assert _long_functions(f"def f():\n{body[: -len('    x60 = 60')- 1]}", "m") == {}
