"""The per-user page and the worker's index page, end to end in a real browser: the embedded Tansu broker,
`mindstream worker` serving the session's ml-100k release, real MovieLens clicks, and Debian's chromium
(infra/install_debian.sh installs it when missing) rendering the pages headless.

MINDSTREAM_SCREENSHOT=docs/user-page.png keeps the screenshot of the user page there (how docs/user-page.png
is made); otherwise it goes to the test's temporary directory.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from kafka import KafkaProducer

from infra import browser
from infra.processes import wait_until
from model.data import load_dataset
from model.release import load_release
from stream import topology
from stream.monitoring.pages import utc
from stream.monitoring.web import PNG_SIGNATURE
from tests.streamkit import REPO, Worker, broker_with_topics

PARTITIONS = 2
USERS = ("1", "2")  # MovieLens users; "1" is the one whose page is checked
CLICKS = 12


def get(url: str, accept: str | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


class Dom(HTMLParser):
    """Elements of a dumped DOM: `by_id[id]` -> (tag, attrs, text), and the text of every table cell per row."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, tuple[str, dict[str, str], str]] = {}
        self.tables: dict[str, list[list[str]]] = {}  # id of the table or of its enclosing element -> rows
        self.links: list[str] = []
        self._open: list[tuple[str, dict[str, str], list[str]]] = []
        self._table: list[str] = []
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "a":
            self.links.append(a.get("href", ""))
        if tag in ("img", "br", "meta", "link", "input"):  # void elements: no end tag
            if "id" in a:
                self.by_id[a["id"]] = (tag, a, "")
            return
        self._open.append((tag, a, []))
        if tag == "table":
            owner = a.get("id") or next((o[1]["id"] for o in reversed(self._open[:-1]) if "id" in o[1]), "?")
            self._table.append(owner)
            self.tables.setdefault(owner, [])
        elif tag == "tr" and self._table:
            self.tables[self._table[-1]].append([])
        elif tag == "td" and self._table:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table:
            self.tables[self._table[-1]][-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "table" and self._table:
            self._table.pop()
        while self._open:
            t, a, text = self._open.pop()
            if "id" in a:
                self.by_id[a["id"]] = (t, a, "".join(text).strip())
            if self._open:
                self._open[-1][2].extend(text)
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1][2].append(data)
        if self._cell is not None:
            self._cell.append(data)

    def rows(self, owner: str) -> list[list[str]]:
        return [r for r in self.tables.get(owner, []) if r]  # header rows hold th, not td


@pytest.fixture(scope="module")
def served(ml100k_release: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A worker with users 1 and 2's first clicks applied and the list of user 1's last click published."""
    browser.ensure_installed()
    tmp = tmp_path_factory.mktemp("user-page")
    ml = load_dataset(shared_data / "ml-100k")
    release = load_release(ml100k_release)
    with broker_with_topics(tmp / "broker.log", PARTITIONS) as broker:
        worker = Worker(broker.bootstrap, ml100k_release, tmp / "state", tmp / "worker.log", PARTITIONS, top_n=50)
        try:
            # clicks sent once the worker serves, so the page's click -> list time is the pipeline's, not the start's
            assert wait_until(worker.serving, 120, [worker])
            now = time.time()
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
            sent: dict[str, list[str]] = {}
            for n in range(CLICKS):
                for user in USERS:
                    item = ml.sequences[user][n]
                    sent.setdefault(user, []).append(item)
                    value = {"event_id": f"page-{user}-{n}", "user_id": user, "item_id": item, "ts": now - CLICKS + n,
                             "profile": ml.user_profile.get(user, {})}
                    producer.send(topology.CLICKS.name, key=user.encode(), value=json.dumps(value).encode())
            producer.close()
            base = f"http://127.0.0.1:{worker.web_port}"
            last_ts = now - 1

            def settled() -> bool:
                try:
                    status, _, body = get(f"{base}/users/{USERS[0]}")
                except OSError:  # the web server is not up yet
                    return False
                latest = (json.loads(body).get("candidates") or {}) if status == 200 else {}
                return bool(latest.get("items")) and latest.get("event_ts") == last_ts

            assert wait_until(settled, 240, [worker]), worker.log_path.read_text()[-3000:]
            yield {"base": base, "user": USERS[0], "sent": sent, "ml": ml, "release": release, "tmp": tmp,
                   "last_ts": last_ts}
        finally:
            worker.stop()


def test_json_stays_the_default_and_a_browser_gets_html(served: dict) -> None:
    url = f"{served['base']}/users/{served['user']}"
    status, content_type, body = get(url)
    assert status == 200 and content_type.startswith("application/json")
    assert json.loads(body)["user_id"] == served["user"]
    status, content_type, body = get(url, accept="text/html,application/xhtml+xml,*/*;q=0.8")
    assert status == 200 and content_type.startswith("text/html") and body.lstrip().startswith(b"<!DOCTYPE html>")
    assert get(url + "?format=json", accept="text/html")[1].startswith("application/json")
    status, content_type, _ = get(f"{served['base']}/users/nobody", accept="text/html")
    assert status == 404 and content_type.startswith("text/html")


def test_user_page_in_a_real_browser(served: dict) -> None:
    user, release, ml = served["user"], served["release"], served["ml"]
    url = f"{served['base']}/users/{user}"
    doc = json.loads(get(url)[2])
    dom = Dom(browser.dump_dom(url))

    # the behavior sequence, oldest first, with each item's categories (MovieLens genres)
    rows = dom.rows("behaviors")
    assert [r[2] for r in rows] == served["sent"][user]
    for r in rows:
        assert r[3] == ", ".join(ml.item_categories.get(r[2], [])) and r[3], r
    # the coupling heatmap, inline
    tag, attrs, _ = dom.by_id["heatmap"]
    assert tag == "img" and attrs["src"].startswith("data:image/png;base64,")
    assert base64.b64decode(attrs["src"].split(",", 1)[1]).startswith(PNG_SIGNATURE)
    # each interest with the candidates it nominated (the JSON's `interest` of each item)
    items = doc["candidates"]["items"]
    nominated: dict[int, list[str]] = {}
    for c in items:
        nominated.setdefault(c["interest"], []).append(c["item_id"])
    assert 1 <= len(nominated) <= release.K
    for k, ids in nominated.items():  # numbered from 1 on the page, as on the heatmap
        assert f"interest {k + 1}: {len(ids)} candidates" in dom.by_id[f"interest-{k}"][2]
        assert [r[1] for r in dom.rows(f"interest-{k}")] == ids[:10]
    # every one of the user's K'u interests has its box, also one that nominated nothing
    from model.explain import user_coupling

    _, _, k_u = user_coupling(release, served["sent"][user], ml.user_profile.get(user))
    boxes = {int(i.split("-")[1]) for i in dom.by_id if i.startswith("interest-")}
    assert boxes == set(range(k_u)) | set(nominated)
    # the model version and when the list was computed
    assert dom.by_id["model-version"][2] == release.version == doc["model_version"]
    assert dom.by_id["computed"][2] == utc(doc["candidates"]["published_ts"])

    shot = Path(os.environ.get("MINDSTREAM_SCREENSHOT") or served["tmp"] / "user-page.png")
    if not shot.is_absolute():
        shot = REPO / shot
    browser.screenshot(url, shot, width=1280, height=1900)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image

    image = matplotlib.image.imread(str(shot))
    assert image.shape[0] >= 1000 and image.shape[1] >= 1000
    assert image[..., :3].std() > 0.05, "the screenshot is a blank page"


def test_index_lists_the_served_version_and_recent_users(served: dict) -> None:
    dom = Dom(browser.dump_dom(served["base"] + "/"))
    assert served["release"].version in dom.by_id["serving-version"][2]
    assert {r[0] for r in dom.rows("recent")} == set(USERS)
    assert {f"/users/{u}" for u in USERS} <= set(dom.links)
    for row in dom.rows("recent"):
        assert row[1:] == [utc(served["last_ts"]), str(CLICKS)], row
    assert "/metrics" in dom.links


def test_pages_escape_what_they_show() -> None:
    from stream.monitoring.pages import user_page

    doc = {"user_id": "<script>alert(1)</script>", "behaviors": [{"ts": 1.0, "item_id": "<b>x</b>"}],
           "profile": {}, "model_version": "v", "serving_version": "v", "candidates": None}
    page = user_page(doc, {"<b>x</b>": ["<i>c</i>"]}, None, "none")
    assert "<script>" not in page and "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page

