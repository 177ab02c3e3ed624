"""Streaming benchmark: how many clicks per second one worker takes while p99 click -> candidates stays in the SLO.

    python -m bench.stream [--repeats 3] [--baseline REF]      (make bench)

Scenarios, each repeat on a fresh embedded broker (Tansu) with one `mindstream worker` subprocess:
* beauty: a MIND release trained on Amazon Beauty (12,101 items) with a small budget; the Beauty
  users' sequences replayed user-interleaved;
* 1m: a release over a 1,000,000-item synthetic catalog (bench/synthetic_release.py) and the
  simulator's clicks on it;
* bare: a bare aiokafka consume -> produce loop on the same kind of broker, the ceiling of what
  any Kafka-protocol stream processor in Python reaches here.

Per scenario and repeat (the broker's cost grows with what it holds: docs/reliability.md), after a warm-up:
1. burst: `--burst` clicks offered at once; burst rate = clicks / (last list published - first click sent);
2. 100/s for `--hold-s` seconds: p50/p99 of every list, and where the time goes (below);
3. the SLO search: a bisection over offered rates between 100/s and 1.2 x the burst rate (between 0 and 100/s
   when 100/s does not hold), in `--steps` probes of `--hold-s` seconds each. A rate holds when p99 click ->
   candidates <= `--slo-ms` and the lag (clicks sent - clicks the worker consumed, sampled every second) does
   not grow: its least-squares slope is at most 1 % of the rate. The SLO rate is the highest rate that held.
Latency is published_ts - event ts of each candidate list (both stamped on this machine's clock). The split comes
from the worker's /metrics, read before and after each phase: mindstream_fetch_wait_seconds (click ts -> consumed:
producer, broker, fetch wait), mindstream_recompute_seconds (consumed -> published: the worker) and
mindstream_stage_seconds (parse_table, tower, search, produce, per batch), p50/p99 interpolated within the
histogram buckets as Prometheus' histogram_quantile does. CPU-ms per click: the worker's and the broker's
utime + stime over a phase (/proc), divided by the clicks sent in it. Figures are medians over repeats.

With `--baseline REF` the same scenarios also run a worker from commit REF (a detached git worktree under
runs/bench/), one after the other in the same run, so the before and after figures share the machine and its load.

Writes docs/benchmarks/stream.{json,md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench import synthetic_release
from infra.broker import EmbeddedBroker
from infra.measure import metric_samples, percentile
from infra.processes import REPO as WORKER_REPO
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
STAGES = ("parse_table", "tower", "search", "produce")


# --------------------------------------------------------------------------- releases


def beauty_release(root: Path, epochs: int) -> Path:
    """A Beauty release trained with a small budget, reused when one is there, verifies and chose its ef with an
    exact head (older releases served ef 200 whatever the recall, or chose it from the graph alone)."""
    with contextlib.suppress(ReleaseError):
        path = current_release_dir(root)
        if {"recall_at_100", "exact_head"} <= load_release(path).manifest["hnsw"].keys():
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


# --------------------------------------------------------------------------- figures read off the processes


def histogram(text: str, name: str, labels: dict[str, str] | None = None) -> dict[float, float]:
    """Cumulative bucket counts {le: count} of one histogram series in Prometheus text (empty when absent)."""
    out = {}
    for lab, value in metric_samples(text, f"{name}_bucket"):
        le = lab.pop("le", None)
        if le is not None and lab == (labels or {}):
            out[float(le)] = value
    return out


def quantile_ms(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The q-quantile (0..1), in ms, of the observations between two readings of a histogram, interpolated
    linearly within its bucket as Prometheus' histogram_quantile does; None without observations."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return round(lower * 1000.0, 3)  # above the last finite bound: that bound, as Prometheus does
            share = (rank - below) / (count - below) if count > below else 1.0
            return round((lower + (bound - lower) * share) * 1000.0, 3)
        lower, below = bound, count
    return None


def split(before: str, after: str) -> dict:
    """p50/p99 (ms) of the latency split between two /metrics readings: fetch wait, worker, and each stage."""
    series = {"fetch_wait": ("mindstream_fetch_wait_seconds", None),
              "worker": ("mindstream_recompute_seconds", None),
              **{stage: ("mindstream_stage_seconds", {"stage": stage}) for stage in STAGES}}
    out = {}
    for key, (name, labels) in series.items():
        a, b = histogram(before, name, labels), histogram(after, name, labels)
        out[key] = {"p50_ms": quantile_ms(a, b, 0.50), "p99_ms": quantile_ms(a, b, 0.99)}
    return out


def consumed(text: str) -> float:
    """Clicks the worker consumed, whatever their outcome."""
    return sum(v for _, v in metric_samples(text, "mindstream_events_total"))


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (Linux /proc), in seconds."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- one worker scenario


@dataclass
class Phase:
    """Clicks offered at `rate` for a while, and what came of them."""

    rate: float  # asked of the producer
    offered_eps: float  # what it reached (a starved producer falls short)
    clicks: int
    latency: dict
    split: dict = field(default_factory=dict)
    lag_slope: float | None = None  # clicks/s the backlog grew by, least squares over the hold
    lag_end: float | None = None
    worker_cpu_ms_per_click: float | None = None
    broker_cpu_ms_per_click: float | None = None
    held: bool | None = None  # the SLO search's verdict


class Scenario:
    """One broker and one worker serving `models`, fed from `events`."""

    def __init__(self, name: str, models: Path, events: Iterator[dict], repo: Path, stack: contextlib.ExitStack,
                 reader_type: type[CandidatesReader] = CandidatesReader):
        settings = Settings.from_env()
        self.name, self.events = name, events
        state = WORK / "state" / name
        shutil.rmtree(state, ignore_errors=True)
        self.broker = stack.enter_context(EmbeddedBroker(log_path=str(WORK / f"broker-{name}.log")))
        ensure_topics(self.broker.bootstrap, pipeline_topics(settings), settings.partitions)  # as kafka-init does
        self.worker = WorkerProcess(name, WORK / f"worker-{name}.log", self.broker.bootstrap, state,
                                    models_dir=models, repo=repo)
        stack.callback(self.worker.stop)
        self.reader = reader_type(self.broker.bootstrap, settings.topic(CANDIDATES.name))
        stack.callback(self.reader.close)
        self.clicks_topic = settings.topic(CLICKS.name)
        self.sent = 0
        self.offered = 0  # clicks handed to the producer so far (`sent` counts a call's clicks once it returns)

    def send(self, n: int, rate: float) -> int:
        sent = produce(self._counted(itertools.islice(self.events, n)), self.broker.bootstrap, self.clicks_topic,
                       rate=rate, progress=False).sent
        self.sent += sent
        return sent

    def _counted(self, events: Iterator[dict]) -> Iterator[dict]:
        for event in events:  # taken from the iterator when it is due: `offered` follows the producer
            self.offered += 1
            yield event

    def warm_up(self, n: int) -> None:
        """The worker has joined and serves; the first clicks (cold caches, first ONNX runs, table creation) are
        then excluded from every measurement."""
        t = time.monotonic()
        self.send(1, 0)
        while self.reader.published() < 1:
            self.worker.check_alive()
            if time.monotonic() - t > 180:
                raise RuntimeError(f"{self.name}: no candidates 180 s after the first click; see {WORK}")
            time.sleep(0.2)
        self.send(n, 0)
        self.reader.wait_settled(self.sent, [self.worker])
        self.reader.read_new()
        print(f"[{self.name}] serving after {time.monotonic() - t:.1f} s (warm-up {self.sent} clicks)", flush=True)

    def burst(self, n: int) -> float:
        t0 = time.time()
        self.send(n, 0)
        self.reader.wait_settled(self.sent, [self.worker])
        pairs = self.reader.read_new()
        if not pairs:
            raise RuntimeError(f"{self.name}: no candidate list after a burst of {n} clicks")
        return n / (max(p for _, p in pairs) - t0)

    def hold(self, rate: float, seconds: float) -> Phase:
        """`rate` clicks/s for `seconds`, the lag sampled every second meanwhile; then the lists it produced."""
        n = int(rate * seconds)
        before = self.worker.metrics()
        consumed0, sent0, offered0 = consumed(before), self.sent, self.offered
        cpu0 = cpu_seconds(self.worker.pid), cpu_seconds(self.broker.pid)
        producer = threading.Thread(target=self.send, args=(n, rate), daemon=True)
        t0 = time.monotonic()
        producer.start()
        samples: list[tuple[float, float]] = []
        while producer.is_alive():
            producer.join(timeout=1.0)
            elapsed = time.monotonic() - t0
            with contextlib.suppress(OSError):
                samples.append((elapsed, (self.offered - offered0) - (consumed(self.worker.metrics()) - consumed0)))
        duration = time.monotonic() - t0
        cpu1 = cpu_seconds(self.worker.pid), cpu_seconds(self.broker.pid)
        sent = self.sent - sent0
        if sent < n:  # a dry source offers nothing: that is no measurement of the rate
            raise RuntimeError(f"{self.name}: the click source ran dry ({sent:,} of {n:,} clicks sent)")
        self.reader.wait_settled(self.sent, [self.worker])
        after = self.worker.metrics()
        late = [(t, lag) for t, lag in samples if t >= min(5.0, seconds / 3)]
        slope = float(np.polyfit([t for t, _ in late], [lag for _, lag in late], 1)[0]) if len(late) >= 3 else None
        return Phase(rate=round(rate, 1), offered_eps=round(sent / duration, 1), clicks=sent,
                     latency=latency_stats(self.reader.read_new()),
                     split=split(before, after), lag_slope=None if slope is None else round(slope, 2),
                     lag_end=round(samples[-1][1], 1) if samples else None,
                     worker_cpu_ms_per_click=round((cpu1[0] - cpu0[0]) * 1000.0 / max(sent, 1), 3),
                     broker_cpu_ms_per_click=round((cpu1[1] - cpu0[1]) * 1000.0 / max(sent, 1), 3))


def probe_note(phase: Phase) -> str:
    """A probe in a progress line: rate, verdict, p99 and what limited it: `250✗ p99 131 ms` (or `lag +3/s`)."""
    p99 = phase.latency.get("p99_ms")
    note = f"{phase.rate:,.0f}{chr(10003) if phase.held else chr(10007)} p99 {p99:.0f} ms" if p99 is not None \
        else f"{phase.rate:,.0f}{chr(10003) if phase.held else chr(10007)} no lists"
    if phase.lag_slope is not None and phase.lag_slope > 0.01 * phase.rate:
        note += f" lag +{phase.lag_slope:.1f}/s"
    return note


def holds(phase: Phase, slo_ms: float) -> bool:
    """The SLO search's verdict: p99 within the SLO and a backlog that does not grow."""
    p99 = phase.latency.get("p99_ms")
    return p99 is not None and p99 <= slo_ms and (phase.lag_slope is None or phase.lag_slope <= 0.01 * phase.rate)


def slo_search(probe: Callable[[float], Phase], low: Phase, high: float, steps: int, slo_ms: float
               ) -> tuple[float, Phase | None, list[Phase]]:
    """Bisection from a measured rate (`low`, 100/s): up towards `high` when it holds, down towards 0 when it does
    not, so a machine too slow for 100/s still gets a rate (a worker and its baseline both below 100/s would
    otherwise both read 0). Returns (the highest rate that held or 0, its phase, every phase probed)."""
    probes = [low]
    low.held = holds(low, slo_ms)
    best = low if low.held else None
    lo, hi = (low.rate, high) if low.held else (0.0, low.rate)
    for _ in range(steps):
        phase = probe((lo + hi) / 2)
        phase.held = holds(phase, slo_ms)
        probes.append(phase)
        if phase.held:
            best, lo = phase, phase.rate
        else:
            hi = phase.rate
    return (best.rate if best else 0.0), best, probes


def endless(source: Callable[[], Iterator[dict]]) -> Iterator[dict]:
    """The source's clicks, started over each time it runs out. One repeat's probes can ask for more clicks than a
    finite source holds: the 1M scenario's 2,000 simulated users click about 60,000 times, a probe at 900/s for 30 s
    takes 27,000. A source that ran dry would offer nothing, and the SLO search would read that as a failed rate."""
    while True:
        empty = True
        for event in source():
            empty = False
            yield event
        if empty:
            return


def run_worker_scenario(name: str, models: Path, events: Callable[[], Iterator[dict]], args: argparse.Namespace,
                        repo: Path = WORKER_REPO, repeats: int | None = None) -> list[dict]:
    """Per repeat, on a fresh broker and worker (the broker's cost grows with what it holds, docs/reliability.md, so
    repeats on one broker would each start worse), fed from the start of `events()`: warm-up, burst, 100/s, the SLO
    search. Returns per-repeat results."""
    results: list[dict] = []
    for rep in range(repeats or args.repeats):
        with contextlib.ExitStack() as stack:
            sc = Scenario(name, models, endless(events), repo, stack)
            sc.warm_up(args.warmup)
            burst = sc.burst(args.burst)
            at100 = sc.hold(100, args.hold_s)
            slo, at_slo, probes = slo_search(lambda rate, sc=sc: sc.hold(rate, args.hold_s), at100, 1.2 * burst,
                                             args.steps, args.slo_ms)
            results.append({"burst_eps": burst, "slo_eps": slo, "at100": asdict(at100),
                            "at_slo": asdict(at_slo) if at_slo else None, "probes": [asdict(p) for p in probes]})
            print(f"[{name}] repeat {rep + 1}: burst {burst:,.0f}/s; SLO {slo:,.0f}/s "
                  f"(probed {', '.join(probe_note(p) for p in probes)}); "
                  f"100/s p50 {at100.latency.get('p50_ms', float('nan')):.1f} "
                  f"p99 {at100.latency.get('p99_ms', float('nan')):.1f} ms", flush=True)
    return results


def release_format(repo: Path) -> int | None:
    """The release format a checkout's model/release.py writes and reads (its `FORMAT = n` line)."""
    match = re.search(r"^FORMAT = (\d+)$", (repo / "model" / "release.py").read_text(), re.M)
    return int(match.group(1)) if match else None


def baseline_releases(repo: Path, items: int, beauty_epochs: int, models: dict[str, Path]) -> dict[str, Path]:
    """The releases the baseline's worker serves: this run's `models` when the baseline reads their format (the same
    releases on both sides), else its own, written by its own code under runs/bench/ (made once)."""
    if release_format(repo) == release_format(REPO):
        return models
    roots = {"beauty": WORK / f"{repo.name}-models-beauty", "1m": WORK / f"{repo.name}-models-1m"}
    build = {"beauty": ["-c", "import sys; from pathlib import Path; from bench.stream import beauty_release; "
                        f"beauty_release(Path(sys.argv[1]), {beauty_epochs})", str(roots["beauty"])],
             "1m": ["-m", "bench.synthetic_release", "--out", str(roots["1m"]), "--items", str(items)]}
    for name, root in roots.items():
        if not (root / "CURRENT").exists():
            print(f"writing the baseline's {name} release under {root}", flush=True)
            subprocess.run([sys.executable, *build[name]], cwd=repo, check=True)
    return roots


def baseline_worktree(ref: str) -> Path:
    """A detached worktree of `ref` under runs/bench/ (made once, reused), whose worker is the 'before'."""
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, check=True, capture_output=True,
                         text=True).stdout.strip()
    path = WORK / f"baseline-{sha}"
    if not (path / "stream").is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", "--force", str(path), sha], cwd=REPO, check=True,
                       capture_output=True)
    shared = path.parent / "shared"  # its code finds the datasets beside its checkout, as this one does
    if not shared.exists():
        shared.symlink_to(REPO.parent / "shared")
    return path


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


def add_report_flags(p: argparse.ArgumentParser) -> None:
    """The flags every benchmark's report takes: --load-note (what else ran, recorded beside the figures) and --out
    (where the md and json go)."""
    p.add_argument("--load-note", default=os.environ.get("BENCH_LOAD_NOTE", "not stated"),
                   help="what else ran on the machine, recorded in the report (env BENCH_LOAD_NOTE)")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="where to write the results (default %(default)s)")


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


def summarise(results: list[dict]) -> dict:
    """Medians over repeats of one scenario's figures."""
    out = {"burst_eps": median_of(results, "burst_eps"), "slo_eps": median_of(results, "slo_eps"),
           "p50_ms_at_100eps": median_of(results, "at100", "latency", "p50_ms"),
           "p99_ms_at_100eps": median_of(results, "at100", "latency", "p99_ms")}
    for at in ("at100", "at_slo"):
        out[f"split_{at}"] = {key: {q: median_of(results, at, "split", key, q) for q in ("p50_ms", "p99_ms")}
                              for key in ("fetch_wait", "worker", *STAGES)}
        for who in ("worker", "broker"):
            out[f"{who}_cpu_ms_per_click_{at}"] = median_of(results, at, f"{who}_cpu_ms_per_click")
    out["p99_ms_at_slo"] = median_of(results, "at_slo", "latency", "p99_ms")
    out["per_repeat"] = results
    return out


def release_ann(models: Path, ann_key: str) -> dict:
    """The ef a release serves and its recall@100: the release's own check (model/ann.py), or for a release written
    before releases measured it, the figure `python -m bench.ann` recorded for the index (docs/benchmarks/ann.json)."""
    hnsw = json.loads((current_release_dir(models) / "manifest.json").read_text())["hnsw"]
    out = {"ef": hnsw["ef_search"], "recall_at_100": hnsw.get("recall_at_100"), "source": "release manifest"}
    measured = OUT_DIR / "ann.json"
    if out["recall_at_100"] is None and measured.exists():
        out["recall_at_100"] = json.loads(measured.read_text()).get(ann_key)
        out["source"] = "docs/benchmarks/ann.json"
    return out


def plot(result: dict, path: Path) -> None:
    """p50 and p99 against the offered rate, every probe of every repeat; the SLO and each median SLO rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(name, label, result["scenarios"][name]) for name, label in (("beauty", "Beauty"), ("1m", "1M items"))
            if name in result["scenarios"]]
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4.5), squeeze=False)
    for ax, (name, label, s) in zip(axes[0], runs, strict=True):
        for variant, summary, color in (("this commit", s, "tab:blue"),
                                        (f"baseline {result['conditions'].get('baseline') or ''}",
                                         result.get("baseline", {}).get(name), "tab:gray")):
            if not summary:
                continue
            probes = sorted((p for r in summary["per_repeat"] for p in r["probes"]), key=lambda p: p["rate"])
            rates = [p["rate"] for p in probes]
            ax.plot(rates, [p["latency"].get("p99_ms") for p in probes], "o-", color=color, label=f"{variant} p99")
            ax.plot(rates, [p["latency"].get("p50_ms") for p in probes], "x--", color=color, alpha=0.6,
                    label=f"{variant} p50")
            if summary["slo_eps"]:
                ax.axvline(summary["slo_eps"], color=color, linestyle=":", alpha=0.8)
        ax.axhline(result["conditions"]["slo_ms"], color="tab:red", linestyle="--", label="SLO (p99)")
        ax.set_yscale("log")
        ax.set_xlabel("offered clicks/s")
        ax.set_ylabel("click -> candidates, ms")
        ax.set_title(f"{label}: latency against offered rate")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def render_markdown(r: dict) -> str:
    c = r["conditions"]
    m = r["model_work_alone_1m_items"]
    base = r.get("baseline") or {}
    labels = (("beauty", f"Beauty ({c['beauty_items']:,} items)"), ("1m", "synthetic, 1,000,000 items"))
    rows = []
    for name, label in labels:
        for variant, s in (("this commit", r["scenarios"][name]), (f"baseline `{c.get('baseline')}`", base.get(name))):
            if not s:
                continue
            rows.append(f"| {label} | {variant} | **{s['slo_eps'] or 0:,.0f}** | {_ms(s['p99_ms_at_slo'])} | "
                        f"{s['burst_eps']:,.0f} | {_ms(s['p50_ms_at_100eps'])} | {_ms(s['p99_ms_at_100eps'])} |")
    split_rows = []
    for name, label in labels:
        s = r["scenarios"][name]
        for at, at_label in (("at100", "100/s"), ("at_slo", f"SLO rate ({s['slo_eps'] or 0:,.0f}/s)")):
            sp = s[f"split_{at}"]
            cells = " | ".join(f"{_ms(sp[k]['p50_ms'])} / {_ms(sp[k]['p99_ms'])}"
                               for k in ("fetch_wait", "worker", *STAGES))
            split_rows.append(f"| {label} | {at_label} | {cells} | {_ms(s[f'worker_cpu_ms_per_click_{at}'])} | "
                              f"{_ms(s[f'broker_cpu_ms_per_click_{at}'])} |")
    ratio = ""
    if base:
        ratio = "\n".join(f"- {label}: {r['scenarios'][n]['slo_eps'] / base[n]['slo_eps']:.2f}x the baseline's SLO "
                          f"rate" for n, label in labels if base.get(n) and base[n]["slo_eps"])
    ann = r["ann"]
    return f"""# Streaming: clicks per second at a latency SLO

Generated by `python -m bench.stream {c['argv']}` (`make bench`) on {c['date_utc']} UTC; raw figures, per repeat and
per probe, in `stream.json`; latency against offered rate in `stream.png`.

**SLO rate**: the highest offered rate one worker holds for {c['hold_s']:g} s with p99 click -> candidates <=
{c['slo_ms']:g} ms and a lag that does not grow (bisection, {c['steps']} probes after 100/s: above it when 100/s
holds, below it when it does not). Median of
{c['repeats']} repeats ({c['baseline_repeats']} for the baseline).

| scenario | worker | SLO clicks/s | p99 ms there | burst clicks/s | p50 ms @100/s | p99 ms @100/s |
|---|---|---:|---:|---:|---:|---:|
{chr(10).join(rows)}
| bare aiokafka consume->produce loop | | | | {r['bare_loop_eps']:,.0f} | | |

{ratio}

![latency against offered rate](stream.png)

## Where the time goes

p50 / p99 in ms, from the worker's histograms over the phase (this commit's worker). *fetch wait*: click ts ->
consumed (the producer's send, the broker, the fetch wait); *worker*: consumed -> candidates published; the stages
are per batch. CPU ms: per click, utime + stime of each process over the phase / clicks sent.

| scenario | rate | fetch wait | worker | parse + table | tower | search | produce | worker CPU ms | broker CPU ms |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(split_rows)}

Model work alone with the 1M-item index (no Kafka, one core, batches of {m['batch']} users;
`bench.stream.model_ceiling`): user tower {m['tower_users_per_s']:,.0f} users/s, recall (hnswlib search per interest
+ merge) {m['recall_users_per_s']:,.0f} users/s, both {m['both_users_per_s']:,.0f} users/s.

ANN: the releases serve ef {ann['beauty']['ef']} (Beauty, recall@100 {ann['beauty']['recall_at_100']}, from the
{ann['beauty']['source']}) and ef {ann['1m']['ef']} (1M items, recall@100 {ann['1m']['recall_at_100']}, from the
{ann['1m']['source']}); docs/benchmarks/ann.md has the trade-off.

## How it was measured

- `.venv/bin/python -m bench.stream {c['argv']}` on {c['cores']} cores ({c['cpu']}); one `mindstream worker`
  process with default settings (batch max {c['batch_max']}, top {c['top_n']} candidates, fetch wait
  {c['fetch_max_wait_ms']} ms), embedded Tansu broker, a fresh broker and worker per repeat. The benchmark
  process itself (producer, reader) shares the cores.
- Warm-up of {c['warmup']} clicks excluded. Each repeat: a burst of {c['burst']:,} clicks offered at once, then
  {c['hold_s']:g} s at 100 clicks/s, then the bisection between 100/s and 1.2x the burst rate.
- Latency = `published_ts - event_ts` of every candidate list (the producer stamps `ts` at send time; both clocks
  are this machine's). Lists are fetched during each phase and decoded after it.
- Beauty release: MIND (d=64, K=4, max_len=50) trained {c['beauty_epochs']} epoch(s) on Beauty; the 1M release:
  bench/synthetic_release.py. Clicks: Beauty users interleaved; the simulator with {c['sim_users']:,} users over
  the 1M catalog. Each repeat takes them from the beginning, and from the beginning
  again whenever they run out.
- Bare loop: {c['bare_events']:,} click-sized messages pre-loaded, then consumed and produced again one by one
  by aiokafka (no decoding), rate from the first record fetched to the last flushed.
- Conditions: {c['load_note']}; 1-minute load average {c['loadavg_1min_before_after'][0]} before the run,
  {c['loadavg_1min_before_after'][1]} after it.
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="repeats per scenario (default %(default)s)")
    p.add_argument("--burst", type=int, default=5_000, help="clicks per burst (default %(default)s)")
    p.add_argument("--hold-s", type=float, default=30, help="seconds each offered rate is held (default %(default)s)")
    p.add_argument("--steps", type=int, default=4, help="bisection probes after 100/s (default %(default)s)")
    p.add_argument("--slo-ms", type=float, default=100, help="p99 click -> candidates SLO (default %(default)s)")
    p.add_argument("--warmup", type=int, default=500, help="warm-up clicks (default %(default)s)")
    p.add_argument("--bare-events", type=int, default=50_000, help="bare-loop messages (default %(default)s)")
    p.add_argument("--beauty-epochs", type=int, default=1, help="training epochs of the Beauty release "
                   "(default %(default)s)")
    p.add_argument("--items", type=int, default=1_000_000, help="synthetic catalog size (default %(default)s)")
    p.add_argument("--sim-users", type=int, default=2000, help="simulated users on it (default %(default)s)")
    p.add_argument("--baseline", default="", help="also run a worker from this git commit, side by side")
    p.add_argument("--baseline-repeats", type=int, default=None, help="repeats of the baseline (default: --repeats)")
    p.add_argument("--only", choices=["beauty", "1m", "bare"], action="append",
                   help="run only these scenarios (a dry run; nothing is written)")
    add_report_flags(p)
    args = p.parse_args()
    todo = args.only or ["beauty", "1m", "bare"]
    load_before = os.getloadavg()[0]
    WORK.mkdir(parents=True, exist_ok=True)
    baseline_repo = baseline_worktree(args.baseline) if args.baseline else None

    models = {"beauty": WORK / "models-beauty", "1m": WORK / "models-1m"}
    scenarios: dict[str, list[dict]] = {}
    baseline: dict[str, list[dict]] = {}
    bare: list[float] = []
    ceiling: dict = {}
    for name in todo:
        if name == "bare":
            sim = ClickSimulator(synthetic_release.sim_config(args.items, 1000, n_users=args.sim_users))
            bare = run_bare(sim.events(), args.bare_events, args.repeats)
            continue
        if name == "beauty":
            beauty_release(models[name], args.beauty_epochs)

            def events() -> Iterator[dict]:
                return interleaved_dataset(BEAUTY)
        else:
            synthetic_release.ensure(models[name], args.items, 1000)

            def events() -> Iterator[dict]:
                return ClickSimulator(synthetic_release.sim_config(args.items, 1000, n_users=args.sim_users)).events()
        if baseline_repo is not None:
            base_models = baseline_releases(baseline_repo, args.items, args.beauty_epochs, models)[name]
            baseline[name] = run_worker_scenario(f"{name}-baseline", base_models, events, args, baseline_repo,
                                                 args.baseline_repeats)
        scenarios[name] = run_worker_scenario(name, models[name], events, args)
        if name == "1m":
            ceiling = model_ceiling(models[name], events(), args.sim_users, 64, Settings.from_env().top_n)
            print(f"model work alone, 1M items: {ceiling}", flush=True)

    summary = {name: summarise(res) for name, res in scenarios.items()}
    base_summary = {name: summarise(res) for name, res in baseline.items()}
    for label, table in (("this commit", summary), (f"baseline {args.baseline}", base_summary)):
        for name, s in table.items():
            print(f"{label:>20} {name:>7}: SLO {s['slo_eps']} clicks/s; burst {s['burst_eps']}; "
                  f"@100/s p50 {s['p50_ms_at_100eps']} ms, p99 {s['p99_ms_at_100eps']} ms")
    if bare:
        print(f"   bare: {statistics.median(bare):,.0f} ev/s")
    if args.only:
        print("dry run (--only): nothing written")
        return 0

    settings = Settings.from_env()
    beauty_items = json.loads((current_release_dir(models["beauty"]) / "manifest.json").read_text())["item_count"]
    ann = {"beauty": release_ann(models["beauty"], "ann_recall_at_100_beauty"),
           "1m": release_ann(models["1m"], "ann_recall_at_100_1m_items")}
    b, m1 = summary["beauty"], summary["1m"]
    result = {
        "slo_eps_beauty": b["slo_eps"],
        "slo_eps_1m_items": m1["slo_eps"],
        "burst_eps_beauty": b["burst_eps"],
        "burst_eps_1m_items": m1["burst_eps"],
        "p50_ms_at_100eps": b["p50_ms_at_100eps"],
        "p99_ms_at_100eps": b["p99_ms_at_100eps"],
        "worker_p99_ms_at_100eps": b["split_at100"]["worker"]["p99_ms"],
        "broker_wait_p99_ms_at_100eps": b["split_at100"]["fetch_wait"]["p99_ms"],
        "worker_cpu_ms_per_click_1m_items": m1["worker_cpu_ms_per_click_at_slo"],
        "broker_cpu_ms_per_click_1m_items": m1["broker_cpu_ms_per_click_at_slo"],
        "ann_ef": ann["1m"]["ef"],
        "ann_recall_at_100_1m_items": ann["1m"]["recall_at_100"],
        "bare_loop_eps": round(statistics.median(bare), 1),
        "baseline_slo_eps_beauty": base_summary.get("beauty", {}).get("slo_eps"),
        "baseline_slo_eps_1m_items": base_summary.get("1m", {}).get("slo_eps"),
        "ann": ann,
        "model_work_alone_1m_items": ceiling,
        "scenarios": summary,
        "baseline": base_summary,
        "bare_per_repeat": [round(x, 1) for x in bare],
        "conditions": {
            "argv": " ".join(sys.argv[1:]), "baseline": args.baseline, "repeats": args.repeats,
            "baseline_repeats": args.baseline_repeats or args.repeats, "burst": args.burst,
            "hold_s": args.hold_s, "steps": args.steps, "slo_ms": args.slo_ms, "warmup": args.warmup,
            "bare_events": args.bare_events, "beauty_epochs": args.beauty_epochs, "beauty_items": beauty_items,
            "items_1m": args.items, "sim_users": args.sim_users, "batch_max": settings.batch_max,
            "top_n": settings.top_n, "fetch_max_wait_ms": settings.fetch_max_wait_ms,
            **machine_conditions(load_before, args.load_note),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stream.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "stream.png")
    write_report(args.out / "stream.md", render_markdown(result))
    print(f"wrote {args.out / 'stream.json'}, stream.md and stream.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
