"""The layering the folders promise, checked on the source (every import, at module level or inside a function):
infra/ (processes beside the pipeline) imports nothing of stream/, bench/ nothing of tests/, and the modules of
stream/ import one another without a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The modules `path` imports (`from a.b import c` names a.b.c when that is a module, else a.b)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_infra_imports_nothing_of_stream() -> None:
    offending = {module_name(p): sorted(m for m in imports(p) if m.split(".")[0] == "stream") for p in sources("infra")}
    assert not {m: names for m, names in offending.items() if names}
    assert len(offending) >= 5  # the scan saw infra/


def test_bench_imports_nothing_of_tests() -> None:
    offending = {module_name(p): sorted(m for m in imports(p) if m.split(".")[0] == "tests") for p in sources("bench")}
    assert not {m: names for m, names in offending.items() if names}
    assert len(offending) >= 5


def test_stream_modules_import_one_another_without_a_cycle() -> None:
    modules = {module_name(p): p for p in sources("stream")}
    graph = {m: sorted(i for i in imports(p) if i in modules and i != m and not m.startswith(i + "."))
             for m, p in modules.items()}
    assert graph["stream.commands.refresh"]  # the scan resolved stream's own imports
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> None:
        if m in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
        if m in done:
            return
        for n in graph[m]:
            visit(n, path + [m])
        done.add(m)

    for m in sorted(graph):
        visit(m, [])
