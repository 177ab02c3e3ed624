"""Streaming benchmark: click -> candidates latency and sustained throughput of the real worker.

    python -m bench.stream [--repeats 3] [--workers 1]      (make bench)

Scenarios, each on a fresh embedded broker (Tansu) with `mindstream worker` subprocesses:
* beauty: a MIND release trained on Amazon Beauty (12,101 items) with a small budget; the Beauty
  users' sequences replayed user-interleaved;
* 1m: a release over a 1,000,000-item synthetic catalog (bench/synthetic_release.py) and the
  simulator's clicks on it;
* bare: a bare aiokafka consume -> produce loop on the same kind of broker, the ceiling of what
  any Kafka-protocol stream processor in Python reaches here.

Per scenario and repeat: a burst of `--burst` clicks offered at once (saturation: sustained events/s =
clicks / (last list published - first click sent)); then `--rate100-s` seconds at 100 clicks/s; then
`--atmax-s` seconds at 90 % of that repeat's saturation rate. Latency is published_ts - event ts of each
candidate list (both stamped on this machine's clock). Figures are medians over repeats.
The candidates are fetched during each phase (to count them: end offsets undercount on Tansu) and decoded after it.

Writes docs/benchmarks/stream.json and docs/benchmarks/stream.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench import synthetic_release
from infra.broker import EmbeddedBroker
from infra.measure import percentile
from infra.processes import WorkerProcess
from model.release import ReleaseError, current_release_dir, load_release
from stream.commands.produce import interleaved_dataset, pipeline_topics, produce
from stream.commands.simulate import ClickSimulator
from stream.config import Settings
from stream.topic_reader import TopicReader
from stream.topic_writer import ensure_topics
from stream.topology import CANDIDATES, CLICKS

REPO = Path(__file__).resolve().parents[1]

BEAUTY = REPO.parent / "shared" / "data" / "amazon-beauty" / "Beauty.txt"
OUT_DIR = REPO / "docs" / "benchmarks"
WORK = REPO / "runs" / "bench"
NOTES_MARKER = "<!-- notes: hand-written, kept when the benchmark rewrites this file -->"


# --------------------------------------------------------------------------- releases


def beauty_release(root: Path, epochs: int) -> Path:
    """A Beauty release trained with a small budget, reused when one is there and verifies."""
    with contextlib.suppress(ReleaseError):
        path = current_release_dir(root)
        load_release(path)
        return path
    from model.mind import MINDConfig
    from model.train import TrainConfig, train_release

    print(f"training a Beauty release ({epochs} epoch(s)) under {root}", flush=True)
    return train_release(BEAUTY, root, MINDConfig(), TrainConfig(epochs=epochs, patience=epochs))


# --------------------------------------------------------------------------- reading candidates


class CandidatesReader:
    """Reads the candidates topic (stream/topic_reader.py). Records are fetched as they come but only decoded by
    `read_new`, so following a phase costs the worker little CPU. Lists are counted by reading them, not from end
    offsets: Tansu undercounts those when a partition ends in a multi-record batch."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.reader = TopicReader(bootstrap, topic, fetch_max_wait_ms=50, max_partition_fetch_bytes=8 << 20)
        self.buffered: list[bytes] = []  # fetched, not yet returned by read_new
        self.returned = 0

    def published(self) -> int:
        """Lists on the topic so far (fetched, not decoded)."""
        while records := self.reader.poll(timeout_ms=50):
            self.buffered.extend(r.value for r in records)
        return self.returned + len(self.buffered)

    def read_new(self) -> list[tuple[float, float]]:
        """(event_ts, published_ts) of every list fetched and not returned yet."""
        self.published()
        out = []
        for raw in self.buffered:
            v = json.loads(raw)
            out.append((float(v["event_ts"]), float(v["published_ts"])))
        self.returned += len(self.buffered)
        self.buffered = []
        return out

    def wait_settled(self, expected: int, workers: list[WorkerProcess], timeout_s: float = 300.0) -> int:
        """Block until `expected` lists are on the topic, or none arrived for a while: 3 s once 90 % are
        there (a user's clicks in one batch share a list, so fewer lists than clicks is normal), 20 s
        before that (the worker can stall for seconds while Faust commits)."""
        deadline = time.monotonic() + timeout_s
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            for w in workers:
                w.check_alive()
            n = self.published()
            if n >= expected:
                return n
            if n != last:
                last, last_change = n, time.monotonic()
            elif time.monotonic() - last_change > (3.0 if n >= 0.9 * expected else 20.0):
                return n
            time.sleep(0.2)
        return last

    def close(self) -> None:
        self.reader.close()


def latency_stats(pairs: list[tuple[float, float]]) -> dict:
    lat = [(p - e) * 1000.0 for e, p in pairs]
    if not lat:
        return {"lists": 0}
    return {"lists": len(lat), "p50_ms": statistics.median(lat), "p95_ms": percentile(lat, 95),
            "p99_ms": percentile(lat, 99), "max_ms": max(lat)}


# --------------------------------------------------------------------------- one worker scenario


def run_worker_scenario(name: str, models: Path, events: Iterator[dict], args: argparse.Namespace) -> list[dict]:
    """Warm-up, then per repeat: saturation burst, 100/s, 90 % of saturation. Returns per-repeat results."""
    settings = Settings.from_env()
    results: list[dict] = []
    state = WORK / "state" / name
    shutil.rmtree(state, ignore_errors=True)
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(EmbeddedBroker(log_path=str(WORK / f"broker-{name}.log")))
        ensure_topics(broker.bootstrap, pipeline_topics(settings), settings.partitions)  # as kafka-init does
        workers = []
        for n in range(args.workers):
            w = WorkerProcess(f"{name}-{n}", WORK / f"worker-{name}-{n}.log", broker.bootstrap, state / str(n),
                              models_dir=models)
            stack.callback(w.stop)
            workers.append(w)
        reader = CandidatesReader(broker.bootstrap, settings.topic(CANDIDATES.name))
        stack.callback(reader.close)
        clicks = settings.topic(CLICKS.name)

        def send(n: int, rate: float) -> int:
            return produce(itertools.islice(events, n), broker.bootstrap, clicks, rate=rate, progress=False).sent

        # warm-up: the workers have joined and serve once lists come back; then the first clicks
        # (cold caches, first ONNX runs, table creation) are excluded from every measurement
        t = time.monotonic()
        sent = send(1, 0)
        while reader.published() < 1:
            for w in workers:
                w.check_alive()
            if time.monotonic() - t > 180:
                raise RuntimeError(f"{name}: no candidates 180 s after the first click; see {WORK}/worker-{name}-*.log")
            time.sleep(0.2)
        sent += send(args.warmup, 0)
        reader.wait_settled(sent, workers)
        reader.read_new()
        print(f"[{name}] serving after {time.monotonic() - t:.1f} s (warm-up {sent} clicks)", flush=True)

        for rep in range(args.repeats):
            res: dict = {}
            t0 = time.time()
            sent += send(args.burst, 0)
            reader.wait_settled(sent, workers)
            pairs = reader.read_new()
            if not pairs:
                raise RuntimeError(f"{name}: no candidate list 20 s after a burst of {args.burst} clicks")
            res["saturation_eps"] = args.burst / (max(p for _, p in pairs) - t0)
            res["saturation_lists"] = len(pairs)
            res["saturation"] = latency_stats(pairs)

            sent += send(int(100 * args.rate100_s), 100)
            reader.wait_settled(sent, workers)
            res["rate100"] = latency_stats(reader.read_new())

            rate = 0.9 * res["saturation_eps"]
            sent += send(int(rate * args.atmax_s), rate)
            reader.wait_settled(sent, workers)
            res["atmax_offered_eps"] = rate
            res["atmax"] = latency_stats(reader.read_new())
            results.append(res)
            print(f"[{name}] repeat {rep + 1}: saturation {res['saturation_eps']:,.0f} ev/s; "
                  f"100/s p50 {res['rate100'].get('p50_ms', float('nan')):.1f} ms "
                  f"p99 {res['rate100'].get('p99_ms', float('nan')):.1f} ms; "
                  f"{rate:,.0f}/s p99 {res['atmax'].get('p99_ms', float('nan')):.1f} ms", flush=True)
    return results


# --------------------------------------------------------------------------- the model work alone


def model_ceiling(models: Path, events: Iterator[dict], n_users: int, batch: int, top_n: int) -> dict:
    """Users per second of the per-click model work alone, in this process, no Kafka: the ONNX user tower and
    the recall (one hnswlib search per interest, max-over-interests merge) in batches of `batch` users, exactly
    the functions the worker calls, on one core (the worker's event loop is one thread)."""
    from model.ann import kept_interests
    from stream.worker.recall import recall_batch

    release = load_release(current_release_dir(models))
    histories: dict[str, list[str]] = {}
    for e in events:
        if len(histories) >= n_users and e["user_id"] not in histories:
            continue
        histories.setdefault(e["user_id"], []).append(e["item_id"])
    users = list(histories.items())
    tower_s = recall_s = 0.0
    for start in range(0, len(users), batch):
        chunk = users[start:start + batch]
        items = np.stack([release.encode_history(h[-release.max_len:]) for _, h in chunk])
        profile = np.stack([release.encode_profile(None) for _ in chunk])
        t = time.perf_counter()
        interests, n_interests = release.user_tower(items, profile)
        tower_s += time.perf_counter() - t
        queries = [(kept_interests(interests[row], n_interests[row]), h) for row, (_, h) in enumerate(chunk)]
        t = time.perf_counter()
        recall_batch(release, queries, top_n)
        recall_s += time.perf_counter() - t
    n = len(users)
    return {"users": n, "batch": batch, "tower_users_per_s": round(n / tower_s, 1),
            "recall_users_per_s": round(n / recall_s, 1), "both_users_per_s": round(n / (tower_s + recall_s), 1)}


# --------------------------------------------------------------------------- the bare loop


async def _bare_loop(bootstrap: str, n: int, values: list[tuple[bytes, bytes]]) -> float:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition as ATP

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks=1)
    await producer.start()
    try:
        for key, value in values:
            await producer.send("bare-in", key=key, value=value)
        await producer.flush()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            parts = [ATP("bare-in", p) for p in consumer.partitions_for_topic("bare-in")]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            got, t0 = 0, None
            while got < n:
                batch = await consumer.getmany(timeout_ms=500)
                if t0 is None and batch:
                    t0 = time.perf_counter()
                for recs in batch.values():
                    for r in recs:
                        await producer.send("bare-out", key=r.key, value=r.value)
                        got += 1
            await producer.flush()
            return n / (time.perf_counter() - t0)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()


def run_bare(events: Iterator[dict], n: int, repeats: int) -> list[float]:
    values = [(e["user_id"].encode(), json.dumps({**e, "ts": time.time()}).encode())
              for e in itertools.islice(events, n)]
    rates = []
    for rep in range(repeats):
        with EmbeddedBroker(log_path=str(WORK / "broker-bare.log")) as broker:
            rates.append(asyncio.run(_bare_loop(broker.bootstrap, n, values)))
        print(f"[bare] repeat {rep + 1}: {rates[-1]:,.0f} ev/s", flush=True)
    return rates


# --------------------------------------------------------------------------- report


def machine_conditions(load_before: float, load_note: str) -> dict:
    """What a reader needs to compare runs: the machine, when, and how busy it was."""
    return {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "load_note": load_note,
            "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def write_report(md: Path, generated: str) -> None:
    """Write the generated part of `md`; hand-written analysis below NOTES_MARKER survives a re-run."""
    notes = md.read_text().partition(NOTES_MARKER)[2] if md.exists() else ""
    md.write_text(generated + "\n" + NOTES_MARKER + notes)


def median_of(results: list[dict], *path: str) -> float | None:
    vals = []
    for r in results:
        v = r
        for key in path:
            v = v.get(key) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            vals.append(float(v))
    return round(statistics.median(vals), 2) if vals else None


def render_markdown(r: dict) -> str:
    c = r["conditions"]
    m = r["model_work_alone_1m_items"]
    rows = []
    for name, label in (("beauty", f"Beauty ({c['beauty_items']:,} items)"), ("1m", "synthetic, 1,000,000 items")):
        s = r["scenarios"][name]
        rows.append(f"| {label} | {s['saturation_eps']:,.0f} | {s['rate100_p50_ms']:.1f} | {s['rate100_p95_ms']:.1f} | "
                    f"{s['rate100_p99_ms']:.1f} | {s['atmax_offered_eps']:,.0f} | {s['atmax_p50_ms']:.1f} | "
                    f"{s['atmax_p99_ms']:.1f} |")
    table = "\n".join(rows)
    return f"""# Streaming: click -> candidates latency and throughput

Generated by `python -m bench.stream` (`make bench`) on {c['date_utc']} UTC; raw figures, per repeat, in `stream.json`.

| scenario | sustained events/s | p50 ms @100/s | p95 ms @100/s | p99 ms @100/s | 90 % of max | p50 ms | p99 ms |
|---|---:|---:|---:|---:|---:|---:|---:|
{table}
| bare aiokafka consume->produce loop | {r['bare_loop_eps']:,.0f} | | | | | | |

Model work alone with the 1M-item index (no Kafka, one core, batches of {m['batch']} users;
`bench.stream.model_ceiling`): user tower {m['tower_users_per_s']:,.0f} users/s, recall (hnswlib search per interest
+ merge) {m['recall_users_per_s']:,.0f} users/s, both {m['both_users_per_s']:,.0f} users/s.

Worker at saturation, as a share of the bare loop: Beauty {r['ratio_beauty_to_bare']:.1%}, 1M items
{r['ratio_1m_to_bare']:.1%}.

Targets: p99 <= 15 ms at 100 events/s (measured {r['p99_ms_at_100eps']:.1f} ms, Beauty); >= 2,000 events/s
sustained with the 1M-item index (measured {r['max_sustained_eps_1m_items']:,.0f}) at p99 <= 100 ms (measured
{r['p99_ms_at_max_1m_items']:.1f} ms at {r['scenarios']['1m']['atmax_offered_eps']:,.0f} events/s offered).

## How it was measured

- `.venv/bin/python -m bench.stream {c['argv']}` on {c['cores']} cores
  ({c['cpu']}); {c['workers']} `mindstream worker` process(es) with default settings
  (batch window {c['batch_window_ms']} ms, batch max {c['batch_max']}, top {c['top_n']} candidates, fetch wait
  {c['fetch_max_wait_ms']} ms), embedded Tansu
  broker, one fresh broker per scenario. The benchmark process itself (producer) shares the cores.
- Warm-up of {c['warmup']} clicks excluded. Each repeat: a burst of {c['burst']:,} clicks offered at once
  (sustained rate = clicks / (last list published - first click sent)), then {c['rate100_s']} s at 100 clicks/s,
  then {c['atmax_s']} s at 90 % of the repeat's saturation rate. Reported: median over {c['repeats']} repeats.
- Latency = `published_ts - event_ts` of every candidate list (the producer stamps `ts` at send time; both clocks
  are this machine's). Lists are fetched during each phase and decoded after it.
- Beauty release: MIND (d=64, K=4, max_len=50) trained {c['beauty_epochs']} epoch(s) on Beauty; the 1M release:
  bench/synthetic_release.py (untrained MIND of the same shape whose item vectors cluster by category; hnswlib
  M=16, ef_construction=200, ef=200). Clicks: Beauty users interleaved; the simulator with
  {c['sim_users']:,} users over the 1M catalog.
- Bare loop: {c['bare_events']:,} click-sized messages pre-loaded, then consumed and produced again one by one
  by aiokafka (no decoding), rate from the first record fetched to the last flushed.
- Conditions: {c['load_note']}; 1-minute load average {c['loadavg_1min_before_after'][0]} before the run,
  {c['loadavg_1min_before_after'][1]} after it.
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="repeats per scenario (default %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default %(default)s)")
    p.add_argument("--burst", type=int, default=10_000, help="clicks per saturation burst (default %(default)s)")
    p.add_argument("--rate100-s", type=float, default=20, help="seconds at 100 clicks/s (default %(default)s)")
    p.add_argument("--atmax-s", type=float, default=10, help="seconds at 90 %% of saturation (default %(default)s)")
    p.add_argument("--warmup", type=int, default=500, help="warm-up clicks (default %(default)s)")
    p.add_argument("--bare-events", type=int, default=50_000, help="bare-loop messages (default %(default)s)")
    p.add_argument("--beauty-epochs", type=int, default=1, help="training epochs of the Beauty release "
                   "(default %(default)s)")
    p.add_argument("--items", type=int, default=1_000_000, help="synthetic catalog size (default %(default)s)")
    p.add_argument("--sim-users", type=int, default=2000, help="simulated users on it (default %(default)s)")
    p.add_argument("--only", choices=["beauty", "1m", "bare"], action="append",
                   help="run only these scenarios (a dry run; nothing is written)")
    p.add_argument("--load-note", default=os.environ.get("BENCH_LOAD_NOTE", "not stated"),
                   help="what else ran on the machine, recorded in the report (env BENCH_LOAD_NOTE)")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="where to write the results (default %(default)s)")
    args = p.parse_args()
    todo = args.only or ["beauty", "1m", "bare"]
    load_before = os.getloadavg()[0]
    WORK.mkdir(parents=True, exist_ok=True)

    beauty_models = WORK / "models-beauty"
    m1_models = WORK / "models-1m"
    scenarios: dict[str, list[dict]] = {}
    bare: list[float] = []
    ceiling: dict = {}
    for name in todo:
        if name == "beauty":
            beauty_release(beauty_models, args.beauty_epochs)
            scenarios["beauty"] = run_worker_scenario("beauty", beauty_models, interleaved_dataset(BEAUTY), args)
        elif name == "1m":
            synthetic_release.ensure(m1_models, args.items, 1000)
            sim = ClickSimulator(synthetic_release.sim_config(args.items, 1000, n_users=args.sim_users))
            scenarios["1m"] = run_worker_scenario("1m", m1_models, sim.events(), args)
            ceiling = model_ceiling(m1_models, sim.events(), args.sim_users, 64, Settings.from_env().top_n)
            print(f"model work alone, 1M items: {ceiling}", flush=True)
        else:
            sim = ClickSimulator(synthetic_release.sim_config(args.items, 1000, n_users=args.sim_users))
            bare = run_bare(sim.events(), args.bare_events, args.repeats)

    summary = {
        name: {
            "saturation_eps": median_of(res, "saturation_eps"),
            "rate100_p50_ms": median_of(res, "rate100", "p50_ms"),
            "rate100_p95_ms": median_of(res, "rate100", "p95_ms"),
            "rate100_p99_ms": median_of(res, "rate100", "p99_ms"),
            "atmax_offered_eps": median_of(res, "atmax_offered_eps"),
            "atmax_p50_ms": median_of(res, "atmax", "p50_ms"),
            "atmax_p99_ms": median_of(res, "atmax", "p99_ms"),
            "per_repeat": res,
        }
        for name, res in scenarios.items()
    }
    for name, s in summary.items():
        print(f"{name:>7}: saturation {s['saturation_eps']} ev/s; @100/s p50 {s['rate100_p50_ms']} ms, "
              f"p99 {s['rate100_p99_ms']} ms; @{s['atmax_offered_eps']}/s p99 {s['atmax_p99_ms']} ms")
    if bare:
        print(f"   bare: {statistics.median(bare):,.0f} ev/s")
    if args.only:
        print("dry run (--only): nothing written")
        return 0

    settings = Settings.from_env()
    bare_eps = statistics.median(bare)
    beauty_items = json.loads((current_release_dir(beauty_models) / "manifest.json").read_text())["item_count"]
    result = {
        "p50_ms_at_100eps": summary["beauty"]["rate100_p50_ms"],
        "p99_ms_at_100eps": summary["beauty"]["rate100_p99_ms"],
        "max_sustained_eps_beauty": summary["beauty"]["saturation_eps"],
        "max_sustained_eps_1m_items": summary["1m"]["saturation_eps"],
        "p99_ms_at_max_1m_items": summary["1m"]["atmax_p99_ms"],
        "bare_loop_eps": round(bare_eps, 1),
        "ratio_beauty_to_bare": round(summary["beauty"]["saturation_eps"] / bare_eps, 4),
        "ratio_1m_to_bare": round(summary["1m"]["saturation_eps"] / bare_eps, 4),
        "model_work_alone_1m_items": ceiling,
        "scenarios": summary,
        "bare_per_repeat": [round(x, 1) for x in bare],
        "conditions": {
            "argv": " ".join(sys.argv[1:]),
            "repeats": args.repeats, "workers": args.workers, "burst": args.burst, "rate100_s": args.rate100_s,
            "atmax_s": args.atmax_s, "warmup": args.warmup, "bare_events": args.bare_events,
            "beauty_epochs": args.beauty_epochs, "beauty_items": beauty_items, "items_1m": args.items,
            "sim_users": args.sim_users,
            "batch_window_ms": settings.batch_window_ms, "batch_max": settings.batch_max, "top_n": settings.top_n,
            "fetch_max_wait_ms": settings.fetch_max_wait_ms, **machine_conditions(load_before, args.load_note),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stream.json").write_text(json.dumps(result, indent=2) + "\n")
    write_report(args.out / "stream.md", render_markdown(result))
    print(f"wrote {args.out / 'stream.json'} and stream.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
