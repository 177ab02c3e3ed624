"""The topology is declared once (stream/topology.py): no other module of stream/, bench/, infra/ or tests/ spells a
topic, table or changelog name. A copy would silently survive a rename there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from stream import topology
from stream.config import Settings
from stream.worker.app import app_id

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("stream", "bench", "infra", "tests")
NAMES = {t.name for t in topology.TOPICS} | {t.name for t in topology.TABLES}
# `<app id>-<table>-changelog`, or the part of an f-string after the app id
CHANGELOG = re.compile(r"(^|-)(" + "|".join(re.escape(t.name) for t in topology.TABLES) + r")-changelog$")
# the same words with another meaning: the `mindstream candidates` command (it may also start an argv list), the
# id of the user page's behaviors table in HTML
OTHER_MEANINGS = {"tests/test_cli_errors.py": {topology.CANDIDATES.name},
                  "tests/test_user_page.py": {topology.BEHAVIORS.name}}


def _allowed_nodes(tree: ast.AST) -> set[int]:
    """ids of the string constants that are not names: docstrings, JSON field names (dict keys, subscripts,
    `.get("items")`) and a command's name at the head of an argv list."""
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                allowed.add(id(first.value))
        elif isinstance(node, ast.Dict):
            allowed.update(id(k) for k in node.keys if k is not None)
        elif isinstance(node, ast.Subscript):
            allowed.add(id(node.slice))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args:
            allowed.add(id(node.args[0]))
        elif isinstance(node, ast.List) and node.elts:
            allowed.add(id(node.elts[0]))  # argv: main(["candidates", ...])
    return allowed


def spelled_names(path: Path, rel: str) -> list[str]:
    """`path:line: 'name'` for each topic/table/changelog name spelled in the module at `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    allowed = _allowed_nodes(tree)
    others = OTHER_MEANINGS.get(rel, set())
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        value = node.value
        if value in NAMES and id(node) not in allowed and value not in others or CHANGELOG.search(value):
            found.append(f"{rel}:{node.lineno}: {value!r}")
    return found


def test_no_topic_or_table_name_is_spelled_outside_the_topology_module() -> None:
    found = []
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel != "stream/topology.py":
                found += spelled_names(path, rel)
    assert not found, "names to take from stream/topology.py:\n" + "\n".join(found)


def test_the_scan_finds_a_copied_name(tmp_path: Path) -> None:
    module = tmp_path / "copy.py"
    module.write_text('"""clicks and behaviors in a docstring are fine."""\n'
                      'TOPIC = "user-interests"\n'
                      'value = {"items": []}["items"]\n'
                      'CHANGELOG = f"{APP}-behaviors-changelog"\n')
    assert spelled_names(module, "copy.py") == ["copy.py:2: 'user-interests'", "copy.py:4: '-behaviors-changelog'"]


def test_every_topic_has_a_schema_and_a_message_type_with_one_codec() -> None:
    assert {p.name.removesuffix(".schema.json") for p in (REPO / "docs" / "schemas").glob("*.schema.json")} \
        == {t.name for t in topology.TOPICS}
    for t in topology.TOPICS:
        if t is not topology.CLICKS:  # raw bytes, judged by stream/events.py
            assert callable(t.value.from_json) and callable(t.value.to_json), t


def test_changelog_names_are_fausts() -> None:
    import faust

    app = faust.App(app_id(Settings(topic_prefix="t-", role="interest")), broker="kafka://127.0.0.1:1",
                    store="memory://")
    table = app.Table(topology.BEHAVIORS.name)
    assert table.changelog_topic.get_topic_name() == topology.BEHAVIORS.changelog(app.conf.id)


def test_latest_candidates_is_written_through_the_candidates_topic(ml100k_release: Path) -> None:
    """The table's changelog is the candidates topic (one record per list), and only a worker without the
    interest agent runs an online hit-rate agent of its own (with `--role all` the interest agent judges)."""
    from stream.worker.main import build

    for role, own_online_agent in (("all", False), ("recall", True)):
        settings = Settings(role=role, topic_prefix="t-", models_dir=str(ml100k_release.parent))
        app, _ = build(settings)
        table = app.tables[topology.LATEST_CANDIDATES.name]
        assert table.changelog_topic.get_topic_name() == settings.topic(topology.CANDIDATES.name), role
        assert ("online-hit-rate" in app.agents) == own_online_agent, (role, list(app.agents))
