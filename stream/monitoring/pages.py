"""The worker's HTML pages, rendered on the server (no JavaScript): what a person looking at one user, or at
the worker, wants on one screen. The data is the JSON of GET /users/{id} (stream/monitoring/web.py); these functions
only turn it into markup, so they are pure and every value is escaped.

    GET /                      served version, recent users of this worker, links
    GET /users/{id}            (Accept: text/html) behaviors with categories, the coupling heatmap, each
                               interest with the candidates it nominated, model version, when computed
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from html import escape
from typing import Any

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 70em; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; border-bottom: 1px solid #e4e4e4; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.meta { color: #555; } .meta b { color: #222; } .cat { color: #6a4c93; }
.interests { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.interest { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 0.8em; }
.interest h3 { margin: 0 0 0.3em 0; font-size: 1em; }
img.heatmap { max-width: 100%; border: 1px solid #ddd; }
nav a { margin-right: 1em; }
"""


def utc(ts: Any) -> str:
    """Epoch seconds as `YYYY-MM-DD HH:MM:SS UTC` ('?' when missing)."""
    if not isinstance(ts, int | float):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def _cats(item: str, categories: dict[str, list[str]]) -> str:
    return escape(", ".join(categories.get(item, ())))


def user_page(doc: dict[str, Any], categories: dict[str, list[str]], heatmap_png: bytes | None,
              heatmap_note: str = "", n_interests: int = 0, now: float | None = None) -> str:
    """The HTML of GET /users/{id}: `doc` is its JSON body, `categories` item id -> categories (of the release
    that computed the list), `heatmap_png` the coupling heatmap (None: `heatmap_note` says why), `n_interests`
    the user's K'u (an interest that nominated no candidate is shown too). Interests are numbered from 1, as
    on the heatmap; element ids keep the JSON's 0-based `interest`."""
    user = str(doc["user_id"])
    latest = doc.get("candidates") or {}
    computed = latest.get("published_ts")
    age = f" ({(now or time.time()) - computed:.0f} s ago)" if isinstance(computed, int | float) else ""
    event_ts = latest.get("event_ts")
    lat = computed - event_ts if isinstance(computed, int | float) and isinstance(event_ts, int | float) else None
    meta = [
        f"model version <b id=\"model-version\">{escape(str(doc.get('model_version') or 'none'))}</b>",
        f"serving <b>{escape(str(doc.get('serving_version') or 'none'))}</b>",
        f"list computed <b id=\"computed\">{utc(computed) if latest else 'not yet'}</b>{age}",
    ]
    if lat is not None:
        meta.append(f"click &rarr; list {lat * 1000:.0f} ms")
    profile = doc.get("profile") or {}
    if profile:
        meta.append("profile " + ", ".join(f"{escape(k)}={escape(v)}" for k, v in sorted(profile.items())))

    behaviors = doc.get("behaviors") or []
    rows = "\n".join(
        f"<tr><td class=\"num\">{n}</td><td>{utc(b.get('ts'))}</td><td class=\"item\">{escape(str(b['item_id']))}"
        f"</td><td class=\"cat\">{_cats(str(b['item_id']), categories)}</td></tr>"
        for n, b in enumerate(behaviors, 1))
    seq = (f"<table id=\"behaviors\"><tr><th>#</th><th>clicked</th><th>item</th><th>categories</th></tr>\n{rows}"
           "</table>") if behaviors else "<p>no behaviors</p>"

    if heatmap_png is not None:
        heat = (f"<img class=\"heatmap\" id=\"heatmap\" alt=\"coupling coefficients of {escape(user)}\" "
                f"src=\"data:image/png;base64,{base64.b64encode(heatmap_png).decode()}\">")
    else:
        heat = f"<p id=\"heatmap-note\">{escape(heatmap_note or 'no heatmap')}</p>"

    by_interest: dict[int, list[dict]] = {}
    for rank, c in enumerate(latest.get("items") or (), 1):
        by_interest.setdefault(int(c.get("interest", 0)), []).append({**c, "rank": rank})
    boxes = []
    for k in sorted(set(by_interest) | set(range(n_interests))):
        items = by_interest.get(k, [])
        trs = "\n".join(
            f"<tr><td class=\"num\">{c['rank']}</td><td class=\"item\">{escape(str(c['item_id']))}</td>"
            f"<td class=\"num\">{float(c.get('score', float('nan'))):.3f}</td>"
            f"<td class=\"cat\">{_cats(str(c['item_id']), categories)}</td></tr>" for c in items[:10])
        more = f"<p class=\"meta\">and {len(items) - 10} more</p>" if len(items) > 10 else ""
        table = (f"<table><tr><th>rank</th><th>item</th><th>score</th><th>categories</th></tr>\n{trs}</table>"
                 if items else "<p class=\"meta\">no item of the list scored best here</p>")
        boxes.append(f"<div class=\"interest\" id=\"interest-{k}\"><h3>interest {k + 1}: {len(items)} candidates"
                     f"</h3>{table}{more}</div>")
    interests = f"<div class=\"interests\">{''.join(boxes)}</div>" if boxes else "<p>no candidate list yet</p>"

    body = (f"<nav><a href=\"/\">worker</a><a href=\"/users/{escape(user)}?format=json\">JSON</a>"
            f"<a href=\"/users/{escape(user)}/explain.png\">heatmap PNG</a><a href=\"/metrics\">metrics</a></nav>\n"
            f"<h1>user {escape(user)}</h1>\n<p class=\"meta\">{' &middot; '.join(meta)}</p>\n"
            f"<h2>Candidates by interest</h2>\n<p class=\"meta\">rank in the merged list (score = max over interests "
            f"of e<sub>i</sub> &middot; v<sub>u</sub><sup>k</sup>); each interest lists the items it scored best"
            f"</p>\n{interests}\n"
            f"<h2>Routing: which behaviors make which interest</h2>\n{heat}\n"
            f"<h2>Behavior sequence ({len(behaviors)} clicks, oldest first)</h2>\n{seq}")
    return _page(f"user {user}", body)


def error_page(message: str) -> str:
    return _page("mindstream", f"<nav><a href=\"/\">worker</a></nav>\n<h1>not found</h1>\n<p>{escape(message)}</p>")


def index_page(serving: dict[str, Any] | None, recent: Iterable[tuple[str, float, int]], scanned: int,
               capped: bool) -> str:
    """The HTML of GET /: `serving` the served release's manifest (None: nothing served), `recent` (user id, last
    click ts, behaviors) newest first, from `scanned` users of this worker's partitions (`capped`: not all)."""
    if serving:
        m = serving.get("metrics") or {}
        hr = f", test HR@50 {m['test_HR@50']:.4f}" if isinstance(m.get("test_HR@50"), int | float) else ""
        version = (f"<p>serving model <b id=\"serving-version\">{escape(str(serving.get('version')))}</b> "
                   f"(created {utc(serving.get('created_ts'))}, {serving.get('item_count', '?')} items, "
                   f"K = {serving.get('K', '?')}{hr})</p>")
    else:
        version = "<p id=\"serving-version\">no model is being served</p>"
    rows = "\n".join(f"<tr><td><a href=\"/users/{escape(u)}\">{escape(u)}</a></td><td>{utc(ts)}</td>"
                     f"<td class=\"num\">{n}</td></tr>" for u, ts, n in recent)
    of = f"the first {scanned:,} users of this worker's partitions" if capped else \
        f"{scanned:,} users on this worker's partitions"
    users = (f"<table id=\"recent\"><tr><th>user</th><th>last click</th><th>behaviors</th></tr>\n{rows}</table>"
             if rows else "<p>no users yet</p>")
    body = (f"<nav><a href=\"/metrics\">metrics</a></nav>\n<h1>mindstream worker</h1>\n{version}\n"
            f"<h2>Recent users</h2>\n<p class=\"meta\">most recent clicks among {of}</p>\n{users}")
    return _page("mindstream worker", body)
