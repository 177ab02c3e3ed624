"""Hot-swap benchmark: load+verify time of a 1,000,000-item release, and click -> candidates latency around a swap.

    python -m bench.hotswap [--items 1000000] [--rate 50] [--duration-s 150] [--announce-at-s 60]   (make bench)

Configuration (the defaults are the run reported in docs/benchmarks/hotswap.md):
* releases: two synthetic releases over the same `--items` catalog (bench/synthetic_release.py; seeds 0 and 1,
  so v2's vectors differ from v1's), side by side under runs/bench/hotswap/models-<items>; v1 is CURRENT when
  the worker starts, v2 is the one announced;
* part 1, load+verify: `stream.worker.hotswap.verify` (what a worker runs in its executor for an announcement:
  model.release.load_release with every sha256, the embeddings, the hnswlib index load and its check against the
  embeddings, the ONNX session and the smoke inference, then the announced version and manifest sha256), each run
  in a fresh process (`--load-runs`, median reported; the page cache is warm: the files were just written or
  read); phases from `--phase-runs` further runs under cProfile; RSS added (peak and held) per run;
* part 2, p99 around a swap: a fresh embedded Tansu broker (topics pre-created with the worker's partition
  count; the worker with its default settings), one `mindstream worker` subprocess serving v1,
  a warm-up, then the simulator's clicks at `--rate`/s for `--duration-s` s; `--announce-at-s` s into it,
  CURRENT is pointed at v2 and v2 is announced on `model-releases` (as `mindstream retrain` does). Every
  candidates message is read after the run (so reading takes no CPU from the worker meanwhile); latency =
  published_ts - event_ts, attributed to the time the click was sent.

Writes docs/benchmarks/hotswap.json, hotswap.md (hand-written notes below the marker are kept) and hotswap.png.
"""

from __future__ import annotations

import argparse
import bisect
import concurrent.futures
import contextlib
import cProfile
import itertools
import json
import multiprocessing
import os
import pstats
import re
import shutil
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from bench import synthetic_release
from bench.soak import consumed
from bench.stream import CandidatesReader, add_report_flags, latency_stats, machine_conditions, write_report
from infra.broker import EmbeddedBroker
from infra.measure import metric_value, rss_bytes
from infra.processes import WorkerProcess
from model.release import set_current
from stream.commands.announce import announcement_for, publish
from stream.commands.produce import pipeline_topics, produce
from stream.commands.simulate import ClickSimulator
from stream.config import Settings
from stream.messages import Announcement
from stream.topic_reader import read_to_end
from stream.topic_writer import Pacer, ensure_topics
from stream.topology import CANDIDATES, CLICKS, MODEL_RELEASES

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "runs" / "bench" / "hotswap"
CATEGORIES = 1000

# cProfile entries (file suffix, function name or, for built-ins, part of it) summed into each load phase; the
# rest of the time is "other"
PHASES: dict[str, tuple[tuple[str, str], ...]] = {
    "sha256 of every file": (("model/release.py", "sha256_file"),),
    "embeddings (np.load)": (("_npyio_impl.py", "load"),),
    "hnswlib index load": (("~", "hnswlib.load_index"),),
    "hnswlib get_items of the sampled rows": (("~", "hnswlib.get_items"),),
    "index check: sampled vectors = embeddings (allclose)": (
        ("numeric.py", "allclose"),
    ),
    "ONNX session": (("onnxruntime_inference_collection.py", "__init__"),),
    "smoke inference": (("model/release.py", "user_tower"),),
}


# --------------------------------------------------------------------------- part 1: load + verify


def _phase_seconds(prof: cProfile.Profile) -> dict[str, float]:
    stats = pstats.Stats(prof).stats  # (file, line, function) -> (calls, prim calls, own s, cumulative s, callers)
    return {phase: sum(v[3] for (file, _line, func), v in stats.items()
                       if any(file.endswith(suffix) and (func == name or suffix == "~" and name in func)
                              for suffix, name in entries))
            for phase, entries in PHASES.items()}


def load_once(announcement: Announcement, models_dir: str, profile: bool) -> dict:
    """In a fresh process: the worker's verify of `announcement`, timed; RSS added (peak and held)."""
    from stream.worker.hotswap import verify

    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS (VmHWM) to the current RSS
    rss0 = rss_bytes(os.getpid())
    prof = cProfile.Profile() if profile else None
    t = time.perf_counter()
    if prof:
        prof.enable()
    release = verify(announcement, models_dir)
    if prof:
        prof.disable()
    seconds = time.perf_counter() - t
    out = {"seconds": seconds, "peak_rss_added_mib": (rss_bytes(os.getpid(), "VmHWM") - rss0) / 2**20,
           "rss_held_mib": (rss_bytes(os.getpid()) - rss0) / 2**20, "version": release.version}
    if prof:
        phases = _phase_seconds(prof)
        phases["other (manifest, item ids, finiteness, registry objects)"] = seconds - sum(phases.values())
        out["phases_s"] = phases
    return out


def measure_load(release_dir: Path, runs: int, phase_runs: int) -> dict:
    announcement = announcement_for(release_dir)
    ctx = multiprocessing.get_context("spawn")
    results: dict[str, list[dict]] = {"plain": [], "profiled": []}
    for kind, n in (("plain", runs), ("profiled", phase_runs)):
        for i in range(n):
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
                r = pool.submit(load_once, announcement, str(release_dir.parent), kind == "profiled").result()
            results[kind].append(r)
            print(f"[load] {kind} run {i + 1}/{n}: {r['seconds']:.2f} s, peak RSS +{r['peak_rss_added_mib']:.0f} MiB,"
                  f" held +{r['rss_held_mib']:.0f} MiB", flush=True)
    plain = results["plain"]
    out = {
        "release": str(release_dir.relative_to(REPO)) if release_dir.is_relative_to(REPO) else str(release_dir),
        "runs": runs, "phase_runs": phase_runs,
        "median_s": statistics.median(r["seconds"] for r in plain),
        "min_s": min(r["seconds"] for r in plain), "max_s": max(r["seconds"] for r in plain),
        "peak_rss_added_mib": statistics.median(r["peak_rss_added_mib"] for r in plain),
        "rss_held_mib": statistics.median(r["rss_held_mib"] for r in plain),
        "per_run_s": [round(r["seconds"], 3) for r in plain],
    }
    if results["profiled"]:
        prof = results["profiled"]
        out["profiled_median_s"] = statistics.median(r["seconds"] for r in prof)
        out["phases_median_s"] = {k: statistics.median(r["phases_s"][k] for r in prof) for k in prof[0]["phases_s"]}
    return out


# --------------------------------------------------------------------------- part 2: latency around a swap


def paced(events: Iterator[dict], rate: float, sent: list[tuple[str, float]]) -> Iterator[dict]:
    """`events` at `rate`/s, each stamped with its send time (kept by produce(keep_ts=True)) and recorded."""
    pacer = Pacer(rate)
    for n, event in enumerate(events):
        pacer.wait(n)
        event = {**event, "ts": time.time()}
        sent.append((event["user_id"], event["ts"]))
        yield event


def swap_log_time(log: Path, version: str) -> float | None:
    """Epoch time of the worker's `model swapped ... -> version` log line (its asctime, this machine's zone)."""
    for line in log.read_text(errors="replace").splitlines():
        if "model swapped" in line and line.rstrip().endswith(version):
            m = re.search(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3})", line)
            if m:
                return time.mktime(time.strptime(m[1], "%Y-%m-%d %H:%M:%S")) + int(m[2]) / 1000
    return None


def run_swap(v1: Path, v2: Path, args: argparse.Namespace) -> dict:
    settings = Settings.from_env()
    models = v1.parent
    set_current(models, v1.name)
    state = WORK / "state"
    shutil.rmtree(state, ignore_errors=True)
    log = WORK / "worker.log"
    log.unlink(missing_ok=True)
    sim = ClickSimulator(synthetic_release.sim_config(args.items, CATEGORIES, n_users=args.sim_users))
    events = sim.events()
    sent: list[tuple[str, float]] = []
    samples: list[dict] = []
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(EmbeddedBroker(log_path=str(WORK / "broker.log")))
        ensure_topics(broker.bootstrap, pipeline_topics(settings), settings.partitions)  # as kafka-init does
        ensure_topics(broker.bootstrap, [settings.topic(MODEL_RELEASES.name)], 1)
        worker = WorkerProcess("hotswap", log, broker.bootstrap, state, models_dir=models, args=("--log-level", "info"))
        stack.callback(worker.stop)
        reader = CandidatesReader(broker.bootstrap, settings.topic(CANDIDATES.name))
        stack.callback(reader.close)
        clicks = settings.topic(CLICKS.name)

        # warm-up, as bench/stream.py: the first list proves the worker serves; then `--warmup` clicks
        t = time.monotonic()
        warm = produce(itertools.islice(events, 1), broker.bootstrap, clicks, progress=False).sent
        while reader.published() < 1:
            worker.check_alive()
            if time.monotonic() - t > 300:
                raise RuntimeError(f"no candidates 300 s after the first click; see {log}")
            time.sleep(0.5)
        warm += produce(itertools.islice(events, args.warmup), broker.bootstrap, clicks, rate=args.rate,
                        progress=False).sent
        reader.wait_settled(warm, [worker])
        base = reader.published()
        print(f"[swap] worker serving {v1.name} after {time.monotonic() - t:.1f} s (warm-up {warm} clicks)", flush=True)

        n_clicks = int(args.rate * args.duration_s)
        producer = threading.Thread(
            target=produce, daemon=True,
            args=(paced(itertools.islice(events, n_clicks), args.rate, sent), broker.bootstrap, clicks),
            kwargs={"keep_ts": True, "progress": False})
        start = time.time()
        producer.start()
        announced: dict[str, float] = {}
        while producer.is_alive():
            worker.check_alive()
            now = time.time()
            samples.append({"t": round(now - start, 2), "rss_mib": round(worker.rss_bytes() / 2**20, 1)})
            if not announced and now - start >= args.announce_at_s:
                # as `mindstream retrain` does it: CURRENT first, then the announcement (acks=all)
                set_current(models, v2.name)
                announced["begin"] = time.time()
                publish(broker.bootstrap, settings.topic(MODEL_RELEASES.name), announcement_for(v2))
                announced["acked"] = time.time()
                print(f"[swap] announced {v2.name} at t={announced['begin'] - start:.1f} s", flush=True)
            time.sleep(0.5)
        producer.join()
        print(f"[swap] {len(sent)} clicks sent in {time.time() - start:.1f} s; waiting for the lists", flush=True)
        reader.wait_settled(base + len(sent), [worker], timeout_s=120)
        metrics_text = worker.metrics()
        lists = []
        for rec in read_to_end(broker.bootstrap, [settings.topic(CANDIDATES.name)], timeout_s=120):
            v = json.loads(rec.value)
            lists.append({"partition": rec.partition, "user_id": v["user_id"], "version": v["model_version"],
                          "event_ts": float(v["event_ts"]), "published_ts": float(v["published_ts"]),
                          "refresh": bool(v.get("refresh"))})
    return analyse(lists, sent, start, announced, swap_log_time(log, v2.name), metrics_text, warm, samples,
                   v1.name, v2.name)


def analyse(lists: list[dict], sent: list[tuple[str, float]], start: float, announced: dict[str, float],
            swap_logged: float | None, metrics_text: str, warm: int, samples: list[dict], v1: str, v2: str) -> dict:
    measured = [x for x in lists if x["event_ts"] >= start and not x["refresh"]]
    # every click must yield a list computed from a sequence holding it: one of its user's lists has
    # event_ts >= the click's ts (a user's clicks that meet in one batch share the newest one's list)
    by_user: dict[str, list[float]] = defaultdict(list)
    for x in measured:
        by_user[x["user_id"]].append(x["event_ts"])
    exact = {(x["user_id"], x["event_ts"]) for x in measured}
    for ts in by_user.values():
        ts.sort()
    dropped = sum(1 for u, ts in sent if bisect.bisect_left(by_user.get(u, []), ts) == len(by_user.get(u, [])))
    coalesced = sum(1 for u, ts in sent if (u, ts) not in exact) - dropped
    # mixed: a list of a version other than v1/v2, or of v1 after a v2 list in the same partition (a flap)
    mixed, seen_v2 = 0, set()
    for x in sorted(lists, key=lambda x: x["partition"]):  # read_to_end: partition by partition, offset order
        if x["version"] == v2:
            seen_v2.add(x["partition"])
        elif x["version"] != v1 or x["partition"] in seen_v2:
            mixed += 1
    v2_pub = [x["published_ts"] for x in measured if x["version"] == v2]
    v1_pub = [x["published_ts"] for x in measured if x["version"] == v1]
    switch = min(v2_pub) if v2_pub else None
    t_ann = announced.get("begin")

    end = max(ts for _, ts in sent) + 1e-6 if sent else start

    def window(lo: float | None, hi: float | None) -> dict:
        """Latency of the lists whose clicks were sent in [lo, hi), clipped to the measured stream."""
        if lo is None or hi is None:
            return {"lists": 0}
        lo, hi = max(lo, start), min(hi, end)
        if lo >= hi:
            return {"lists": 0}
        inside = [x for x in measured if lo <= x["event_ts"] < hi]
        stats = latency_stats([(x["event_ts"], x["published_ts"]) for x in inside])
        stats["versions"] = {v: sum(1 for x in inside if x["version"] == v) for v in (v1, v2)}
        stats["from_s"], stats["to_s"] = round(lo - start, 2), round(hi - start, 2)
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in stats.items()}

    windows = {
        "before": window(t_ann - 60 if t_ann else None, t_ann),
        "around_swap": window(switch - 30 if switch else None, switch + 30 if switch else None),
        "after_announce": window(t_ann, t_ann + 60 if t_ann else None),
        "after_swap": window(switch + 30 if switch else None, end),
        "whole_run": window(start, end),
    }

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - start, 2)

    published = sorted(x["published_ts"] for x in measured)
    gaps = [(b - a, a) for a, b in itertools.pairwise(published)]
    longest = max(gaps, default=(0.0, start))
    timeline = {
        "announce_s": rel(t_ann), "announce_acked_s": rel(announced.get("acked")),
        "worker_swap_logged_s": rel(swap_logged), "first_v2_list_s": rel(switch),
        "last_v1_list_published_s": rel(max(v1_pub) if v1_pub else None),
        "worker_load_verify_s": round(swap_logged - announced["acked"], 2) if swap_logged and t_ann else None,
        "announce_to_first_v2_s": round(switch - t_ann, 2) if switch and t_ann else None,
        # at 50 clicks/s a list is due every 20 ms: a long gap is the worker's event loop standing still
        "longest_publish_gap_s": round(longest[0], 2), "longest_publish_gap_from_s": rel(longest[1]),
        "longest_publish_gap_before_announce_s": round(max((g for g, a in gaps if t_ann and a < t_ann),
                                                           default=0.0), 2),
    }
    return {
        "v1": v1, "v2": v2, "windows": windows, "timeline": timeline,
        "clicks_sent": len(sent), "warmup_clicks": warm, "lists": len(measured),
        "clicks_with_own_list": len(sent) - coalesced - dropped, "clicks_coalesced": coalesced,
        "clicks_dropped": dropped, "mixed_versions": mixed,
        "worker": {
            "events_consumed": consumed(metrics_text),
            "swaps_ok": metric_value(metrics_text, "mindstream_model_swaps_total", 'result="ok"'),
            "swaps_rejected": metric_value(metrics_text, "mindstream_model_swaps_total", 'result="rejected"'),
            "serving_v2": metric_value(metrics_text, "mindstream_model_info", f'version="{v2}"') == 1.0,
            "rss_mib_before_announce": max((s["rss_mib"] for s in samples if t_ann and s["t"] < t_ann - start),
                                           default=None),
            "rss_mib_max": max((s["rss_mib"] for s in samples), default=None),
            "rss_mib_end": samples[-1]["rss_mib"] if samples else None,
        },
        "points": [[round(x["event_ts"] - start, 3), round((x["published_ts"] - x["event_ts"]) * 1000, 2),
                    x["version"] == v2] for x in measured],
        "rss_samples": samples,
    }


# --------------------------------------------------------------------------- report


def plot(swap: dict, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = swap["points"]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for is_v2, color, label in ((False, "tab:blue", swap["v1"]), (True, "tab:orange", swap["v2"])):
        sel = [p for p in pts if p[2] == is_v2]
        ax.scatter([p[0] for p in sel], [p[1] for p in sel], s=3, color=color, label=f"lists by {label}")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_ylabel("click -> candidates (ms)")
    ax2.plot([s["t"] for s in swap["rss_samples"]], [s["rss_mib"] for s in swap["rss_samples"]], color="tab:green")
    ax2.set_ylabel("worker RSS (MiB)")
    ax2.set_xlabel("seconds since the measured click stream started (time the click was sent)")
    tl = swap["timeline"]
    for a in (ax, ax2):
        if tl["announce_s"] is not None:
            a.axvline(tl["announce_s"], color="red", linestyle="--", linewidth=1)
        if tl["first_v2_list_s"] is not None:
            a.axvline(tl["first_v2_list_s"], color="black", linestyle=":", linewidth=1)
        a.grid(alpha=0.3)
    ax.plot([], [], color="red", linestyle="--", label="v2 announced")
    ax.plot([], [], color="black", linestyle=":", label="first list by v2")
    ax.legend(loc="upper left", fontsize=8, markerscale=3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _ms(w: dict, key: str) -> str:
    return f"{w[key]:.1f}" if key in w else "n/a"


def render_markdown(r: dict) -> str:
    c, ld, sw = r["conditions"], r["load_verify"], r["swap"]
    cmd = f"`.venv/bin/python -m bench.hotswap {c['argv']}`".replace(" `", "`")
    phases = "\n".join(f"| {name} | {s:.2f} |" for name, s in ld.get("phases_median_s", {}).items())
    labels = {
        "before": "minute before the announce: clicks sent in [announce - 60 s, announce)",
        "around_swap": "minute around the swap: clicks sent in [first v2 list - 30 s, first v2 list + 30 s)",
        "after_announce": "minute after the announce: [announce, announce + 60 s)",
        "after_swap": "after: [first v2 list + 30 s, end of the stream)",
        "whole_run": "whole measured stream",
    }
    rows = "\n".join(
        f"| {labels[k]} | {w.get('from_s', '')}..{w.get('to_s', '')} | {w['lists']} | {_ms(w, 'p50_ms')} | "
        f"{_ms(w, 'p95_ms')} | {_ms(w, 'p99_ms')} | {_ms(w, 'max_ms')} | "
        f"{' / '.join(str(n) for n in w.get('versions', {}).values())} |"
        for k, w in sw["windows"].items())
    tl, wk = sw["timeline"], sw["worker"]
    before, around = sw["windows"]["before"], sw["windows"]["around_swap"]
    return f"""# Hot swap: load+verify of a {c['items']:,}-item release, and latency around a swap

Generated by {cmd} on {c['date_utc']} UTC ({c['cores']} cores, {c['cpu']}); every figure below comes from that
command. Raw figures, every list's latency included, in `hotswap.json`; the plot is `hotswap.png`.

**Load+verify: median {ld['median_s']:.2f} s** over {ld['runs']} runs (min {ld['min_s']:.2f}, max {ld['max_s']:.2f});
peak RSS added {ld['peak_rss_added_mib']:,.0f} MiB, held once loaded {ld['rss_held_mib']:,.0f} MiB.
**Click -> candidates p99: {_ms(before, 'p99_ms')} ms in the minute before the announce, {_ms(around, 'p99_ms')} ms
in the minute around the swap.** Clicks dropped: {sw['clicks_dropped']}; mixed versions: {sw['mixed_versions']}.

## 1. Load+verify of the release ({c['items']:,} items)

What a worker runs for an announcement, off its event loop: `stream.worker.hotswap.verify` =
`model.release.load_release`
(sha256 of every file against the manifest, embeddings loaded and checked, hnswlib index loaded and checked
against the embeddings, ONNX session, smoke inference) + the announced version and manifest sha256. Each run in a
fresh process (`{ld['release']}`); page cache warm. Runs: {', '.join(f'{s:.2f}' for s in ld['per_run_s'])} s.

Phases, median of {ld['phase_runs']} runs under cProfile (total there
{ld.get('profiled_median_s', float('nan')):.2f} s):

| phase | seconds |
|---|---:|
{phases}

## 2. Click -> candidates latency around a swap

One `mindstream worker` (defaults: {c['partitions']} partitions, batch max
{c['batch_max']}, top {c['top_n']}) on a fresh embedded Tansu broker, serving `{sw['v1']}`; the simulator's clicks
({c['sim_users']:,} users over the same catalog) at {c['rate']:g}/s for {c['duration_s']:g} s after a warm-up of
{sw['warmup_clicks']} clicks; at t = {c['announce_at_s']:g} s CURRENT -> `{sw['v2']}` and its announcement on
`model-releases`. Times are seconds since the first measured click; a list counts in the window of the time its
click was sent. "First v2 list" = the moment the worker began serving v2 (the first candidates message stamped
with it).

| window | t (s) | lists | p50 ms | p95 ms | p99 ms | max ms | lists by v1 / v2 |
|---|---|---:|---:|---:|---:|---:|---|
{rows}

Swap timeline, seconds since the first measured click:

- v2 announced at {tl['announce_s']} (acknowledged by the broker at {tl['announce_acked_s']});
- the worker logged `model swapped` at {tl['worker_swap_logged_s']}: **load+verify inside the worker
  {tl['worker_load_verify_s']} s** from the acknowledged announcement (up to 0.5 s of it is the poll that hears it);
- first list by v2 published at {tl['first_v2_list_s']} ({tl['announce_to_first_v2_s']} s after the announce); last list
  by v1 at {tl['last_v1_list_published_s']};
- longest stretch with no list published: **{tl['longest_publish_gap_s']} s**, from {tl['longest_publish_gap_from_s']}
  (before the announce at most {tl['longest_publish_gap_before_announce_s']} s; at {c['rate']:g} clicks/s a list is
  due every {1000 / c['rate']:.0f} ms);
- worker metrics at the end: `mindstream_model_swaps_total` ok {wk['swaps_ok']:.0f}, rejected
  {wk['swaps_rejected']:.0f}; serving v2: {wk['serving_v2']};
- worker RSS {wk['rss_mib_before_announce']} MiB before the announce, {wk['rss_mib_max']} MiB at most,
  {wk['rss_mib_end']} MiB at the end (v1 stays loaded: the registry keeps the last 3 served releases).

Every click accounted for: {sw['clicks_sent']} clicks sent, {wk['events_consumed']:.0f} consumed by the worker
(warm-up included), {sw['lists']} lists; {sw['clicks_with_own_list']} clicks have a list of their own,
{sw['clicks_coalesced']} share a later list of the same user (their clicks met in one batch), **{sw['clicks_dropped']}
dropped** (no list of that user at or after the click). **Mixed versions: {sw['mixed_versions']}** (a list of v1
after a v2 list in the same partition, or of another version).

Conditions: {c['load_note']}; 1-minute load average {c['loadavg_1min_before_after'][0]} before the run,
{c['loadavg_1min_before_after'][1]} after it (other people share these cores: compare runs with that in mind).
The benchmark process (producer, RSS sampling) shares the cores with the worker and the broker.
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=1_000_000, help="catalog size of both releases (default %(default)s)")
    p.add_argument("--load-runs", type=int, default=5, help="timed load+verify runs (default %(default)s)")
    p.add_argument("--phase-runs", type=int, default=3, help="load+verify runs under cProfile for the phases "
                   "(default %(default)s)")
    p.add_argument("--rate", type=float, default=50.0, help="clicks per second (default %(default)s)")
    p.add_argument("--duration-s", type=float, default=150.0, help="seconds of measured clicks (default %(default)s)")
    p.add_argument("--announce-at-s", type=float, default=60.0, help="v2 announced this many seconds into the "
                   "measured stream (default %(default)s)")
    p.add_argument("--warmup", type=int, default=300, help="warm-up clicks (default %(default)s)")
    p.add_argument("--sim-users", type=int, default=2000, help="simulated users (default %(default)s)")
    p.add_argument("--skip-swap", action="store_true", help="part 1 only (a dry run; nothing is written)")
    add_report_flags(p)
    args = p.parse_args()
    load_before = os.getloadavg()[0]
    WORK.mkdir(parents=True, exist_ok=True)
    models = WORK / f"models-{args.items}"
    t = time.monotonic()
    v1 = synthetic_release.ensure_version(models, args.items, CATEGORIES, seed=0)
    v2 = synthetic_release.ensure_version(models, args.items, CATEGORIES, seed=1)
    print(f"releases {v1.name}, {v2.name} ready ({time.monotonic() - t:.0f} s)", flush=True)

    load = measure_load(v1, args.load_runs, args.phase_runs)
    print(f"load+verify {args.items:,} items: median {load['median_s']:.2f} s over {args.load_runs} runs; "
          f"peak RSS +{load['peak_rss_added_mib']:.0f} MiB, held +{load['rss_held_mib']:.0f} MiB", flush=True)
    for name, s in load.get("phases_median_s", {}).items():
        print(f"    {name}: {s:.2f} s", flush=True)
    if args.skip_swap:
        print("dry run (--skip-swap): nothing written")
        return 0

    swap = run_swap(v1, v2, args)
    for name, w in swap["windows"].items():
        print(f"{name:>15}: t {w.get('from_s')}..{w.get('to_s')} s, {w['lists']} lists, p50 {w.get('p50_ms')} ms, "
              f"p95 {w.get('p95_ms')} ms, p99 {w.get('p99_ms')} ms, max {w.get('max_ms')} ms", flush=True)
    print(f"timeline: {swap['timeline']}", flush=True)
    print(f"clicks {swap['clicks_sent']}, lists {swap['lists']}, coalesced {swap['clicks_coalesced']}, "
          f"dropped {swap['clicks_dropped']}, mixed versions {swap['mixed_versions']}; worker {swap['worker']}",
          flush=True)

    settings = Settings.from_env()
    result = {
        "command": " ".join(["python -m bench.hotswap", *sys.argv[1:]]),
        "load_verify": load,
        "p99_ms_minute_before": swap["windows"]["before"].get("p99_ms"),
        "p99_ms_minute_around_swap": swap["windows"]["around_swap"].get("p99_ms"),
        "swap": swap,
        "conditions": {
            "argv": " ".join(sys.argv[1:]), "items": args.items, "rate": args.rate, "duration_s": args.duration_s,
            "announce_at_s": args.announce_at_s, "warmup": args.warmup, "sim_users": args.sim_users,
            "partitions": settings.partitions,
            "batch_max": settings.batch_max, "top_n": settings.top_n,
            **machine_conditions(load_before, args.load_note),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    # the per-list series on one line each: thousands of entries would otherwise take a line apiece
    series = {k: swap[k] for k in ("points", "rss_samples")}
    text = json.dumps({**result, "swap": {**swap, **{k: f"@{k}@" for k in series}}}, indent=1)
    for k, v in series.items():
        text = text.replace(f'"@{k}@"', json.dumps(v, separators=(",", ":")))
    (args.out / "hotswap.json").write_text(text + "\n")
    plot(swap, args.out / "hotswap.png",
         f"click -> candidates around a hot swap: {args.items:,}-item releases, {args.rate:g} clicks/s, one worker")
    write_report(args.out / "hotswap.md", render_markdown(result))
    print(f"wrote {args.out / 'hotswap.json'}, hotswap.md and hotswap.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
