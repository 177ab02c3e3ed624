"""The daily retrain beside the worker: click -> candidates latency at 100 clicks/s while `mindstream retrain`
runs on the same cores.

    python -m bench.retrain_beside [--repeats 3] [--quiet-s 30] [--epochs 1]      (make bench)

Per repeat, a fresh embedded broker (Tansu) and `mindstream worker` serving a Beauty release (bench/stream.py
trains it once), and clicks at `--rate` per second from this process for the whole repeat (Beauty users
interleaved, `ts` stamped at send time). Each repeat holds three windows in turn (the two retrains swap places
every other repeat); between two, the worker works off the window's backlog and settles for `--settle-s`,
measured nowhere:
* none: `--quiet-s` seconds with no retrain;
* unbounded: a real `mindstream retrain --threads 0 --nice 0` subprocess (the trainer before its bounds: torch's
  default threads, one per core, at the worker's priority), the window lasting as long as it does (at most
  `--retrain-limit-s`);
* bounded: the same retrain with the shipped defaults (no flags, and the variables of those two settings removed
  from its environment).
The retrain reads the clicks sent so far back from Kafka, joins them to ml-100k (--base: docker-compose's
trainer's default dataset) and trains `--epochs` epochs into a models directory of its own, announcing nothing:
the worker keeps serving its release, so the windows differ only by the trainer beside it. A list's latency is
published_ts - event_ts; it belongs to the window its click was sent in. Figures are medians over repeats.

Writes docs/benchmarks/retrain_beside.json and docs/benchmarks/retrain_beside.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench.stream import (
    BEAUTY,
    CandidatesReader,
    Scenario,
    add_report_flags,
    beauty_release,
    cpu_seconds,
    latency_stats,
    machine_conditions,
    write_report,
)
from infra.processes import REPO, WorkerProcess
from model.priority import TRAIN_NICE, Priority
from model.settings import env_name, settings_of
from model.train import TRAIN_THREADS, TrainConfig
from stream.commands.produce import interleaved_dataset, produce

WORK = REPO / "runs" / "retrain_beside"
BASE = REPO.parent / "shared" / "data" / "ml-100k"  # docker-compose's trainer joins the clicks to this by default
CONDITIONS = ("none", "unbounded", "bounded")
# the flags of each retrain; `bounded` gives none, so the shipped defaults are what it measures
RETRAIN_FLAGS = {"unbounded": ["--threads", "0", "--nice", "0"], "bounded": []}
BOUND_VARIABLES = {env_name(f) for f in [*settings_of(TrainConfig), *settings_of(Priority)]
                   if f.name in ("threads", "nice")}


class WindowReader(CandidatesReader):
    """bench/stream.py's reader, fetching for a bounded time: its `published()` fetches until a poll comes back
    empty, which a steady 100 lists/s may not give for many seconds, and a window would overrun."""

    def fetch_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.buffered.extend(r.value for r in self.reader.poll(timeout_ms=50))

    def caught_up(self, since_ts: float, worker: WorkerProcess, timeout_s: float) -> float:
        """Fetch until a list of a click sent at or after `since_ts` arrives (the worker has worked off what was
        sent before: a window's backlog is not the next one's); returns the seconds that took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            worker.check_alive()
            records = self.reader.poll(timeout_ms=50)
            self.buffered.extend(r.value for r in records)
            if records and float(json.loads(records[-1].value)["event_ts"]) >= since_ts:
                break
        return time.monotonic() - t0


class PacedClicks(threading.Thread):
    """Clicks at `rate` per second from `events` until `stop()`, through `stream.commands.produce` (which stamps
    each click's ts at send time)."""

    def __init__(self, events: Iterator[dict], bootstrap: str, topic: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.events, self.bootstrap, self.topic, self.rate = events, bootstrap, topic, rate
        self.sent = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def _until_stopped(self) -> Iterator[dict]:
        for e in self.events:
            if self._halt.is_set():
                return
            yield e

    def run(self) -> None:
        try:
            self.sent = produce(self._until_stopped(), self.bootstrap, self.topic, rate=self.rate,
                                progress=False).sent
        except BaseException as e:  # reported by the main thread
            self.error = e

    def stop(self) -> None:
        self._halt.set()
        self.join(60)


def run_retrain(condition: str, bootstrap: str, models: Path, base: Path, epochs: int, limit_s: float, log: Path,
                worker: WorkerProcess, reader: WindowReader) -> dict:
    """One `mindstream retrain` subprocess to its end, or killed after `limit_s` (a starved one can take many
    times its usual time: the window is bounded, its wall time then a lower bound), fetching candidates meanwhile;
    its wall time, CPU seconds and the worker's CPU seconds over the same span."""
    env = {k: v for k, v in os.environ.items() if k not in BOUND_VARIABLES}
    cmd = [sys.executable, "-m", "stream.cli", "retrain", "--models", str(models), "--bootstrap", bootstrap,
           "--base", str(base), "--epochs", str(epochs), "--patience", str(epochs), "--no-announce", "--quiet",
           *RETRAIN_FLAGS[condition]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    with open(log, "ab") as out:
        # a session of its own, as cron or a systemd timer starts the daily job (and as WorkerProcess the worker)
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        while proc.poll() is None:
            if time.monotonic() - t0 > limit_s:
                proc.kill()
                proc.wait()
                break
            worker.check_alive()
            reader.fetch_for(0.2)  # keep fetching: the lists are decoded after the window
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stopped = wall > limit_s
    if proc.returncode != 0 and not stopped:
        raise RuntimeError(f"retrain ({condition}) exited with {proc.returncode}; see {log}")
    return {"retrain_wall_s": round(wall, 1), "stopped_at_limit": stopped,
            "retrain_cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1)}


def quiet_window(seconds: float, worker: WorkerProcess, reader: WindowReader) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        worker.check_alive()
        reader.fetch_for(min(0.2, max(0.0, deadline - time.monotonic())))
    return {}


def measure(args: argparse.Namespace) -> tuple[list[dict], dict]:
    """Per repeat and condition: latency of the lists whose clicks were sent in the window, the retrain's wall
    and CPU time, the worker's CPU time. Each repeat has a broker and worker of its own (bench/stream.py's
    Scenario): the embedded broker's cost grows with what it holds (docs/reliability.md), and on one broker the
    last repeat's windows, retrain or not, were several times slower than the first's."""
    serving = WORK / "serving"
    release = beauty_release(serving, args.serving_epochs)
    retrain_models = WORK / "retrained"
    shutil.rmtree(retrain_models, ignore_errors=True)
    events = itertools.cycle(list(interleaved_dataset(BEAUTY)))
    repeats: list[dict] = []
    sent = 0
    for rep in range(args.repeats):
        with contextlib.ExitStack() as stack:
            scenario = Scenario(f"retrain-beside-{rep}", serving, events, REPO, stack, reader_type=WindowReader)
            worker, broker, reader = scenario.worker, scenario.broker, scenario.reader
            scenario.warm_up(args.warmup)
            load = PacedClicks(events, broker.bootstrap, scenario.clicks_topic, args.rate)
            load.start()
            stack.callback(load.stop)
            windows: list[tuple[str, float, float]] = []  # (condition, first ts, last ts)
            figures: dict[str, dict] = {}
            quiet_window(args.settle_s, worker, reader)  # the paced load reaches its rate
            # the two retrains swap places every other repeat: a drift of the machine's load over the run does
            # not fall on one of them alone
            order = CONDITIONS if rep % 2 == 0 else (CONDITIONS[0], CONDITIONS[2], CONDITIONS[1])
            for condition in order:
                pids = {"worker": worker.pid, "broker": broker.pid}
                cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                start = time.time()
                if condition == "none":
                    figures[condition] = quiet_window(args.quiet_s, worker, reader)
                else:
                    figures[condition] = run_retrain(condition, broker.bootstrap, retrain_models, args.base,
                                                     args.epochs, args.retrain_limit_s,
                                                     WORK / f"retrain-{condition}.log", worker, reader)
                windows.append((condition, start, time.time()))
                figures[condition].update({f"{name}_cpu_s": round(cpu_seconds(pid) - cpu_before[name], 1)
                                           for name, pid in pids.items()})
                figures[condition]["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
                if load.error is not None:
                    raise RuntimeError(f"the click producer failed: {load.error!r}")
                # measured nowhere: the worker works off the window's backlog, then settles
                figures[condition]["catch_up_s"] = round(reader.caught_up(time.time(), worker, 300), 1)
                quiet_window(args.settle_s, worker, reader)
                print(f"repeat {rep + 1} {condition}: {figures[condition]}", flush=True)
            load.stop()
            reader.wait_settled(reader.published() + 1, [worker], timeout_s=30)
            pairs = reader.read_new()
            sent += scenario.sent + load.sent
        repeat = {}
        for condition, start, end in windows:
            stats = latency_stats([(e, p) for e, p in pairs if start <= e < end])
            stats["window_s"] = round(end - start, 1)
            repeat[condition] = {**stats, **figures[condition]}
        repeats.append(repeat)
    return repeats, {"serving_release": release.name, "clicks_sent": sent}


def median(repeats: list[dict], condition: str, key: str) -> float | None:
    values = [r[condition][key] for r in repeats if isinstance(r[condition].get(key), int | float)]
    return round(statistics.median(values), 1) if values else None


def render_markdown(r: dict) -> str:
    c = r["conditions"]
    labels = {"none": "no retrain",
              "unbounded": "retrain, no bounds (`--threads 0 --nice 0`: torch's default threads, niceness 0)",
              "bounded": f"retrain, shipped defaults (threads {c['train_threads']}, niceness {c['train_nice']})"}
    rows = []
    for cond in CONDITIONS:
        s = r["summary"][cond]
        wall = "" if cond == "none" else f"{s['retrain_wall_s']:.1f}" + ("+" if s["stopped_at_limit"] else "")
        cpu = "" if cond == "none" else f"{s['retrain_cpu_s']:.1f}"
        rows.append(f"| {labels[cond]} | {s['lists']:,} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['max_ms']:.1f} | "
                    f"{wall} | {cpu} | {s['worker_cores']:.2f} | {s['broker_cores']:.2f} |")
    per_rep = "\n".join(
        f"| {i + 1} | " + " | ".join(f"{rep[cond]['p50_ms']:.1f} / {rep[cond]['p99_ms']:.1f}" for cond in CONDITIONS)
        + " | " + " / ".join(f"{rep[cond]['retrain_wall_s']:.1f}" + ("+" if rep[cond]["stopped_at_limit"] else "")
                             for cond in CONDITIONS[1:]) + " | "
        + " / ".join(f"{rep[cond]['loadavg_1min_at_end']:.1f}" for cond in CONDITIONS) + " |"
        for i, rep in enumerate(r["per_repeat"]))
    verdict = "holds" if r["p99_ms_during_retrain"] <= 100 else "does NOT hold"
    return f"""# The daily retrain beside the worker

Generated by `python -m bench.retrain_beside {c['argv']}` (`make bench`) on {c['date_utc']} UTC; per-repeat
figures in `retrain_beside.json`.

Click -> candidates latency of one worker at {c['rate']:.0f} clicks/s while `mindstream retrain` runs on the same
{c['cores']} cores (median of {c['repeats']} repeats):

| condition | lists | p50 ms | p99 ms | max ms | retrain wall s | retrain CPU s | worker cores | broker cores |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

SLO p99 <= 100 ms during a retrain with the shipped defaults: {r['p99_ms_during_retrain']:.1f} ms, the SLO
{verdict}. Without the bounds: {r['p99_ms_during_unbounded_retrain']:.1f} ms. A wall time marked + is a retrain
killed at the {c['retrain_limit_s']:.0f} s limit (`--retrain-limit-s`): a lower bound, and its window ends there.

Per repeat, p50 / p99 ms (none, unbounded, bounded), retrain wall s (unbounded / bounded) and the machine's
1-minute load average at the end of each window (none / unbounded / bounded):

| repeat | none | unbounded | bounded | retrain wall s | load average |
|---|---|---|---|---|---|
{per_rep}

## How it was measured

- `.venv/bin/python -m bench.retrain_beside {c['argv']}` on {c['cores']} cores ({c['cpu']}). Per repeat, a fresh
  embedded Tansu broker and `mindstream worker` (default settings; the broker's cost grows with what it holds,
  docs/reliability.md) serving a MIND release trained {c['serving_epochs']} epoch(s) on Beauty,
  {c['rate']:.0f} clicks/s of Beauty users (interleaved) from the benchmark process for the whole repeat
  ({c['clicks_sent']:,} clicks in all), after a warm-up of {c['warmup']} clicks. Broker, worker, the producer and the
  retrain all share the cores.
- Each repeat: {c['quiet_s']:.0f} s with no retrain, then `mindstream retrain --base {c['base']} --epochs
  {c['epochs']} --patience {c['epochs']} --no-announce --threads 0 --nice 0`, then the same retrain with no bound
  flags (the defaults), the two swapping places every other repeat. Between windows, measured nowhere: until the
  first list of a click sent after the window is published (the window's backlog is worked off), then
  {c['settle_s']:.0f} s. The retrain exports every click sent so far in the repeat from Kafka, joins them to the
  base dataset (docker-compose's trainer's default), trains, tests, exports the ONNX tower, builds the hnswlib
  index and chooses its ef, into a models directory of its own; it
  announces nothing, so the worker serves the same release throughout. A window lasts as long as its retrain
  (from the process's start to its exit). The retrain runs in a session of its own, as cron starts a job (and
  the worker in another): where the kernel's autogroup is on, as here, sessions share the CPU first and niceness
  ranks only inside one, so `--nice` sets its session's too (model/priority.py).
- Latency = `published_ts - event_ts` of each candidate list; a list counts in the window its click was sent in.
  "worker cores", "broker cores" = the process's CPU seconds over the window / the window's length.
- Conditions: {c['load_note']}; 1-minute load average {c['loadavg_1min_before_after'][0]} before the run,
  {c['loadavg_1min_before_after'][1]} after it; {c['loadavg_1min_during']} sampled during it (other work on the
  machine adds to every window alike; the worker's figures are only as quiet as the machine was).
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="repeats of the three windows (default %(default)s)")
    p.add_argument("--rate", type=float, default=100.0, help="clicks per second offered (default %(default)s)")
    p.add_argument("--quiet-s", type=float, default=30.0, help="seconds of the no-retrain window (default %(default)s)")
    p.add_argument("--settle-s", type=float, default=5.0,
                   help="seconds between windows, measured nowhere (default %(default)s)")
    p.add_argument("--epochs", type=int, default=1, help="epochs each retrain trains (default %(default)s)")
    p.add_argument("--base", type=Path, default=BASE,
                   help="the retrain's --base dataset (default %(default)s, docker-compose's trainer's)")
    p.add_argument("--retrain-limit-s", type=float, default=300.0,
                   help="a retrain still running after this many seconds is killed, its window ends there "
                        "(default %(default)s)")
    p.add_argument("--serving-epochs", type=int, default=1,
                   help="epochs of the served Beauty release, trained once (default %(default)s)")
    p.add_argument("--warmup", type=int, default=300, help="warm-up clicks (default %(default)s)")
    add_report_flags(p)
    args = p.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    loads: list[float] = []
    sampler = threading.Thread(target=_sample_load, args=(loads,), daemon=True)
    sampler.start()
    repeats, extra = measure(args)

    summary = {}
    for cond in CONDITIONS:
        s = {key: median(repeats, cond, key) for key in ("lists", "p50_ms", "p95_ms", "p99_ms", "max_ms",
                                                          "window_s", "retrain_wall_s", "retrain_cpu_s")}
        s["stopped_at_limit"] = any(r[cond].get("stopped_at_limit", False) for r in repeats)
        for name in ("worker", "broker"):
            s[f"{name}_cores"] = round(statistics.median(r[cond][f"{name}_cpu_s"] / r[cond]["window_s"]
                                                         for r in repeats), 2)
        summary[cond] = s
    result = {
        "p50_ms_at_100eps_no_retrain": summary["none"]["p50_ms"],
        "p99_ms_at_100eps_no_retrain": summary["none"]["p99_ms"],
        "p50_ms_during_retrain": summary["bounded"]["p50_ms"],
        "p99_ms_during_retrain": summary["bounded"]["p99_ms"],
        "p50_ms_during_unbounded_retrain": summary["unbounded"]["p50_ms"],
        "p99_ms_during_unbounded_retrain": summary["unbounded"]["p99_ms"],
        "retrain_wall_s": summary["bounded"]["retrain_wall_s"],
        "unbounded_retrain_wall_s": summary["unbounded"]["retrain_wall_s"],
        "summary": summary,
        "per_repeat": repeats,
        "conditions": {
            "argv": " ".join(sys.argv[1:]), "repeats": args.repeats, "rate": args.rate, "quiet_s": args.quiet_s,
            "settle_s": args.settle_s, "epochs": args.epochs,
            "retrain_limit_s": args.retrain_limit_s, "serving_epochs": args.serving_epochs,
            "warmup": args.warmup, "base": _shown(args.base), "train_threads": TRAIN_THREADS,
            "train_nice": TRAIN_NICE, **extra,
            "loadavg_1min_during": _load_range(loads), **machine_conditions(load_before, args.load_note),
        },
    }
    for cond in CONDITIONS:
        print(f"{cond:>9}: {summary[cond]}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrain_beside.json").write_text(json.dumps(result, indent=2) + "\n")
    write_report(args.out / "retrain_beside.md", render_markdown(result))
    print(f"wrote {args.out / 'retrain_beside.json'} and retrain_beside.md")
    return 0


def _shown(path: Path) -> str:
    """A path as the report names it: relative to the repository's parent (the datasets folder's)."""
    return os.path.relpath(path.resolve(), REPO)


def _sample_load(out: list[float]) -> None:
    while True:
        out.append(os.getloadavg()[0])
        time.sleep(10)


def _load_range(loads: list[float]) -> str:
    return f"{min(loads):.2f}-{max(loads):.2f} (median {statistics.median(loads):.2f})" if loads else "not sampled"


if __name__ == "__main__":
    sys.exit(main())
