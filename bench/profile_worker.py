"""Where a worker's CPU goes: the real worker under cProfile through a burst of clicks.

    python -m bench.profile_worker [--scenario beauty|1m] [--clicks 10000]     (make profile)

An embedded Tansu broker, one `mindstream worker` started as `python -m bench.cpu_profile OUT -m stream.cli
worker` (cProfile timed by CPU time), the scenario's release and clicks of bench/stream.py, a warm-up, then
`--clicks` clicks offered at once and read back as candidate lists. The worker is stopped with SIGTERM (Faust
shuts down, the profiler writes its stats), and the stats are summed by where the code lives (Faust, aiokafka,
onnxruntime, hnswlib, the JSON codec, RocksDB, this project, ...) and listed by own time. The profiler slows
Python calls more than C calls, so the Python shares are an upper bound; the ranking is what points at the
next cut.

Writes docs/benchmarks/profile-<scenario>.md (and runs/bench/profile-<scenario>.prof for snakeviz or pstats).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import pstats
import shutil
import sys
import time
from pathlib import Path

from bench import synthetic_release
from bench.stream import BEAUTY, OUT_DIR, WORK, CandidatesReader, beauty_release
from infra.broker import EmbeddedBroker
from infra.processes import WorkerProcess
from stream.commands.produce import interleaved_dataset, pipeline_topics, produce
from stream.commands.simulate import ClickSimulator
from stream.config import Settings
from stream.topic_writer import ensure_topics
from stream.topology import CANDIDATES, CLICKS

# (substring of the code's file path, group name), first match wins
GROUPS: tuple[tuple[str, str], ...] = (
    ("/faust/", "faust"), ("/mode/", "faust (mode)"), ("/aiokafka/", "aiokafka"), ("/kafka/", "kafka-python"),
    ("onnxruntime", "onnxruntime"), ("hnswlib", "hnswlib"), ("rocksdict", "rocksdict (RocksDB)"),
    ("/json/", "json"), ("/asyncio/", "asyncio"), ("/numpy/", "numpy"), ("/torch/", "torch"),
    ("prometheus_client", "prometheus-client"), ("/stream/", "mindstream stream/"), ("/model/", "mindstream model/"),
)


def group_of(filename: str, name: str) -> str:
    if filename == "~":  # a C function: pstats names it "<built-in method ...>" or "<method '...' of '...'>"
        for key, group in (("hnswlib", "hnswlib"), ("onnxruntime", "onnxruntime"), ("rocksdict", "rocksdict (RocksDB)"),
                           ("_json", "json"), ("select", "event loop (select/epoll)"), ("numpy", "numpy"),
                           ("socket", "sockets"), ("torch", "torch")):
            if key in name:
                return group
        return "other C calls"
    for key, group in GROUPS:
        if key in filename:
            return group
    return "other Python"


def summarise(prof: Path, top: int) -> tuple[list[tuple[str, float]], list[tuple[str, float, float, int]], float]:
    """(own seconds per group, [(function, own s, cumulative s, calls)] by own time, total seconds)."""
    stats = pstats.Stats(str(prof))
    by_group: dict[str, float] = {}
    rows = []
    for (filename, line, name), (_, calls, own, cum, _) in stats.stats.items():
        by_group[group_of(filename, name)] = by_group.get(group_of(filename, name), 0.0) + own
        where = name if filename == "~" else f"{Path(filename).name}:{line} {name}"
        rows.append((where, own, cum, calls))
    rows.sort(key=lambda r: -r[1])
    total = sum(by_group.values())
    return sorted(by_group.items(), key=lambda kv: -kv[1]), rows[:top], total


def run(scenario: str, clicks: int, warmup: int, prof: Path, rate: float = 0.0) -> dict:
    settings = Settings.from_env()
    if scenario == "beauty":
        models = WORK / "models-beauty"
        beauty_release(models, 1)
        events = interleaved_dataset(BEAUTY)
    else:
        models = WORK / "models-1m"
        synthetic_release.ensure(models, 1_000_000, 1000)
        events = ClickSimulator(synthetic_release.sim_config(1_000_000, 1000, n_users=2000)).events()
    state = WORK / "state" / f"profile-{scenario}"
    shutil.rmtree(state, ignore_errors=True)
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(EmbeddedBroker(log_path=str(WORK / f"broker-profile-{scenario}.log")))
        ensure_topics(broker.bootstrap, pipeline_topics(settings), settings.partitions)
        worker = WorkerProcess(f"profile-{scenario}", WORK / f"worker-profile-{scenario}.log", broker.bootstrap,
                               state, models_dir=models, python_args=("-m", "bench.cpu_profile", str(prof)))
        stack.callback(worker.stop, 120.0)
        reader = CandidatesReader(broker.bootstrap, settings.topic(CANDIDATES.name))
        stack.callback(reader.close)
        topic = settings.topic(CLICKS.name)
        sent = produce(itertools.islice(events, 1), broker.bootstrap, topic, rate=0, progress=False).sent
        deadline = time.monotonic() + 180
        while reader.published() < 1:
            worker.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"no candidates 180 s after the first click; see {worker.log_path}")
            time.sleep(0.2)
        sent += produce(itertools.islice(events, warmup), broker.bootstrap, topic, rate=0, progress=False).sent
        reader.wait_settled(sent, [worker])
        reader.read_new()
        t0 = time.time()
        sent += produce(itertools.islice(events, clicks), broker.bootstrap, topic, rate=rate, progress=False).sent
        reader.wait_settled(sent, [worker])
        pairs = reader.read_new()
        burst_eps = clicks / (max(p for _, p in pairs) - t0) if pairs else 0.0
        worker.stop(120.0)
    if not prof.exists():
        raise RuntimeError(f"the worker wrote no profile; see {worker.log_path}")
    return {"lists": len(pairs), "burst_eps": burst_eps, "clicks": clicks, "warmup": warmup, "rate": rate}


def render(scenario: str, result: dict, groups: list[tuple[str, float]], rows: list, total: float, argv: str) -> str:
    g = "\n".join(f"| {name} | {own:.2f} | {own / total:.1%} |" for name, own in groups if own / total >= 0.002)
    f = "\n".join(f"| `{where}` | {own:.2f} | {cum:.2f} | {calls:,} |" for where, own, cum, calls in rows)
    offered = f"at {result['rate']:g}/s" if result["rate"] else "at once"
    return f"""# Worker profile: {scenario}

Generated by `python -m bench.profile_worker {argv}` on {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC,
{os.cpu_count()} cores. One worker with default settings, under cProfile, for its whole life: start-up, a warm-up of
{result['warmup']} clicks, then {result['clicks']:,} clicks offered {offered} ({result['lists']:,} candidate lists
read back; {result['burst_eps']:,.0f} clicks/s under the profiler). {total:.1f} s of profiled CPU in all.
1-minute load average at the end: {os.getloadavg()[0]:.1f} (the profile counts CPU time, which other processes
slow less than they slow the wall clock).

## Own time by where the code lives

| code | own s | share |
|---|---:|---:|
{g}

## Functions by own time

| function | own s | cumulative s | calls |
|---|---:|---:|---:|
{f}
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=["beauty", "1m"], default="beauty", help="release and clicks "
                   "(default %(default)s)")
    p.add_argument("--clicks", type=int, default=10_000, help="clicks in the burst (default %(default)s)")
    p.add_argument("--rate", type=float, default=0.0, help="clicks/s they are offered at, 0 = all at once (a "
                   "burst: batches of up to --batch-max); a low rate profiles the one-click batches of a steady "
                   "load (default %(default)s)")
    p.add_argument("--warmup", type=int, default=500, help="warm-up clicks (default %(default)s)")
    p.add_argument("--top", type=int, default=30, help="functions listed (default %(default)s)")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="where the md goes (default %(default)s)")
    args = p.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    prof = WORK / f"profile-{args.scenario}.prof"
    prof.unlink(missing_ok=True)
    result = run(args.scenario, args.clicks, args.warmup, prof, args.rate)
    groups, rows, total = summarise(prof, args.top)
    for name, own in groups[:12]:
        print(f"{name:>28}: {own:7.2f} s  {own / total:6.1%}")
    md = args.out / f"profile-{args.scenario}{f'-at-{args.rate:g}' if args.rate else ''}.md"
    md.write_text(render(args.scenario, result, groups, rows, total, " ".join(sys.argv[1:])))
    print(f"wrote {md} ({prof} for pstats/snakeviz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
