"""`mindstream demo` (`make demo`): the whole system end to end on this machine, in a couple of minutes.

1. a Kafka-protocol broker: the embedded one (Tansu), or KAFKA_BOOTSTRAP's;
2. a dataset: the seeded click simulator by default, or `--data PATH` (any format `train` reads);
3. a MIND release trained on it with a small budget (models under the work directory);
4. `mindstream worker` subprocesses (interest + recall agents) serving that release;
5. the dataset replayed onto `clicks` at `--rate` events/s while the candidate lists are collected;
6. for a few users: their recent clicks and refreshed candidates with the click->candidates latency,
   then the latency distribution over every list published.

Everything started here is stopped on the way out, on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from infra.broker import external_bootstrap, kafka_bootstrap
from infra.measure import percentile
from infra.processes import WorkerProcess
from stream.commands.candidates import format_candidates, latency_ms
from stream.config import Settings
from stream.kafka_security import kafka_python_kwargs
from stream.messages import Candidates, MessageError
from stream.topic_reader import TopicReader
from stream.topology import CANDIDATES, CLICKS

# The demo's catalog: small enough to train in well under a minute on 2 cores, with clear interests.
DEMO_SIM = {"n_users": 800, "n_items": 2000, "n_categories": 20, "clicks_per_user": 30}


@dataclass
class CandidateCollector:
    """Reads the candidates topic in a thread (stream/topic_reader.py: every partition, from the start, new
    partitions picked up as the worker creates them) from `start()` on."""

    bootstrap: str
    topic: str
    values: list[Candidates] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def start(self) -> CandidateCollector:
        self._thread = threading.Thread(target=self._run, name="candidate-collector", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        return self

    def _run(self) -> None:
        try:
            with TopicReader(self.bootstrap, self.topic, fetch_max_wait_ms=50) as reader:
                self._ready.set()
                while not self._stop.is_set():
                    for r in reader.poll(timeout_ms=100):
                        with contextlib.suppress(MessageError):  # the worker is the topic's producer
                            self.values.append(Candidates.from_json(r.value))
        except BaseException as e:  # surfaced to the main thread by wait_for
            self.error = e
            self._ready.set()

    def latest(self) -> dict[str, Candidates]:
        return {v.user_id: v for v in list(self.values)}

    def wait_for(self, predicate, timeout_s: float, workers: list[WorkerProcess] = ()) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.error is not None:
                raise RuntimeError(f"reading {self.topic} failed: {self.error!r}")
            for w in workers:
                w.check_alive()
            if predicate():
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def _pick_users(events: list[dict], n: int) -> list[str]:
    """The `n` users with the most clicks in the replayed part: their interests are the clearest."""
    counts = Counter(e["user_id"] for e in events)
    return [u for u, _ in counts.most_common(n)]


def configure(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.split("\n\n")[0].split(": ", 1)[1]
    env = os.environ.get
    p.add_argument("--data", type=Path, default=env("DATA") or None,
                   help="dataset to train on and replay (any format `mindstream train` reads); default: the "
                        "built-in click simulator (env DATA)")
    p.add_argument("--workdir", type=Path, default=Path(env("MINDSTREAM_DEMO_DIR", "runs/demo")),
                   help="models, state and logs go here (env MINDSTREAM_DEMO_DIR; default %(default)s)")
    p.add_argument("--epochs", type=int, default=int(env("MINDSTREAM_DEMO_EPOCHS", "4")),
                   help="training epochs: the demo's small budget (env MINDSTREAM_DEMO_EPOCHS; default %(default)s)")
    p.add_argument("--reuse-model", action="store_true",
                   help="serve the release already under WORKDIR/models (its CURRENT) instead of training one")
    p.add_argument("--workers", type=int, default=int(env("MINDSTREAM_DEMO_WORKERS", "1")),
                   help="worker processes (env MINDSTREAM_DEMO_WORKERS; default %(default)s)")
    p.add_argument("--rate", type=float, default=float(env("MINDSTREAM_DEMO_RATE", "100")),
                   help="replay rate in events/s (env MINDSTREAM_DEMO_RATE; default %(default)s)")
    p.add_argument("--events", type=int, default=int(env("MINDSTREAM_DEMO_EVENTS", "3000")),
                   help="events replayed (env MINDSTREAM_DEMO_EVENTS; default %(default)s)")
    p.add_argument("--users", type=int, default=int(env("MINDSTREAM_DEMO_USERS", "60")),
                   help="users whose clicks are replayed (env MINDSTREAM_DEMO_USERS; default %(default)s)")
    p.add_argument("--show", type=int, default=3, help="users whose candidates are printed (default %(default)s)")
    p.add_argument("--top", type=int, default=8, help="items printed per list (default %(default)s)")


def _step(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: everything started was stopped", flush=True)
        return 130


def _run(args: argparse.Namespace) -> int:
    from model.data import load_dataset
    from model.mind import MINDConfig
    from model.train import TrainConfig, train_release
    from stream.commands.produce import limit_users, open_source, pipeline_topics, produce
    from stream.commands.simulate import ClickSimulator, SimConfig, write_jsonl
    from stream.errors import CommandError
    from stream.topic_writer import ensure_topics

    t0 = time.monotonic()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    if args.data is None:
        data_path = work / "clicks.jsonl"
        sim = ClickSimulator(SimConfig(**DEMO_SIM))
        _step(f"simulating clicks: {DEMO_SIM['n_users']} users with 2-4 interests each among "
              f"{DEMO_SIM['n_categories']} categories of {DEMO_SIM['n_items']} items")
        write_jsonl(sim.events(), data_path, total=sim.expected_events())
    else:
        data_path = args.data
    dataset = load_dataset(data_path)
    print(f"dataset: {dataset.summary()}")

    models = work / "models"
    if args.reuse_model:
        from model.release import ReleaseError, current_release_dir

        try:
            release_dir = current_release_dir(models)
        except ReleaseError as e:
            raise CommandError(f"--reuse-model: {e}") from None
        _step(f"serving the existing release {release_dir}")
    else:
        _step(f"training MIND on {data_path} ({args.epochs} epochs, small budget)")
        release_dir = train_release(data_path, models, MINDConfig(),
                                    TrainConfig(epochs=args.epochs, patience=args.epochs))
    manifest = json.loads((release_dir / "manifest.json").read_text())
    m = manifest["metrics"]
    print(f"release {manifest['version']}: test HR@10 {m.get('test_HR@10', 0):.4f}  HR@50 {m.get('test_HR@50', 0):.4f}"
          f"  ({m.get('train_seconds', '?')} s training)")

    with contextlib.ExitStack() as stack:
        # LIFO: the collector and the workers stop before the broker they talk to
        bootstrap = stack.enter_context(kafka_bootstrap(kafka_python_kwargs()))
        # the embedded broker drops nothing it is sent (docs/platform.md#nothing-it-holds-can-be-dropped)
        # its limit as measured by bench/broker_growth.py (docs/reliability.md)
        held = "" if external_bootstrap() else (" (embedded, for development: keeps every record in memory; at 200 "
                                                "clicks/s a hop's p99 passes 100 ms after ~6 min, ~12 GiB an hour)")
        _step(f"broker at {bootstrap}{held}; starting {args.workers} worker(s)")
        settings = Settings.from_env()
        workers: list[WorkerProcess] = []
        state = work / "state"
        shutil.rmtree(state, ignore_errors=True)  # a fresh broker has no changelog for old local state
        # as docker-compose's kafka-init: the pipeline's topics exist, with the workers' partition count
        ensure_topics(bootstrap, pipeline_topics(settings), settings.partitions)
        for n in range(args.workers):
            # on a free web port, not the fixed default: another worker on this machine may hold it
            w = WorkerProcess(f"w{n}", work / f"worker-{n}.log", bootstrap, state / f"w{n}", models_dir=models)
            stack.callback(w.stop)
            workers.append(w)
            print(f"worker {w.name}: pid {w.pid}, metrics http://127.0.0.1:{w.web_port}/metrics, "
                  f"log {w.log_path}")

        source = open_source(data_path, None)
        events = list(itertools.islice(limit_users(source.events(), args.users), args.events))
        show = _pick_users(events, args.show)
        collector = CandidateCollector(bootstrap, settings.topic(CANDIDATES.name)).start()
        stack.callback(collector.stop)

        # one click first: the lists that come back prove the workers joined and serve the release
        _step("waiting for the workers to serve (a first click must come back as candidates)")
        t_wait = time.monotonic()
        # a user of its own, so the replayed users' sequences stay exactly the dataset's
        warm = {"event_id": f"demo-warmup-{time.time()}", "user_id": "demo-warmup", "item_id": events[0]["item_id"]}
        produce(iter([warm]), bootstrap, settings.topic(CLICKS.name), progress=False)
        if not collector.wait_for(lambda: bool(collector.values), 120, workers):
            raise CommandError("no candidates 120 s after the first click; worker logs: "
                             + ", ".join(str(w.log_path) for w in workers))
        print(f"serving after {time.monotonic() - t_wait:.1f} s")

        _step(f"replaying {len(events)} clicks of {len({e['user_id'] for e in events})} users at {args.rate:g}/s")
        before = len(collector.values)
        summary = produce(iter(events), bootstrap, settings.topic(CLICKS.name), rate=args.rate)
        print(f"sent {summary.sent} clicks in {summary.elapsed_s:.1f} s")
        # wait until the lists stop coming: every click processed, or the workers idle for 3 s
        last = [len(collector.values), time.monotonic()]

        def settled() -> bool:
            n = len(collector.values)
            if n != last[0]:
                last[:] = [n, time.monotonic()]
            return n - before >= summary.sent or time.monotonic() - last[1] > 3.0

        collector.wait_for(settled, 120, workers)
        published = collector.values[before:]

        _step(f"refreshed candidates of {len(show)} users")
        latest = collector.latest()
        for user in show:
            clicks = [e for e in events if e["user_id"] == user][-8:]
            cats = Counter(e.get("category", "?") for e in clicks)
            print(f"\nuser {user}: last clicks " + " ".join(e["item_id"] for e in clicks)
                  + (f"  (categories {dict(cats)})" if "?" not in cats else ""))
            value = latest.get(user)
            if value is None:
                print("    no candidate list yet")
                continue
            print("  " + format_candidates(value, args.top))
            if dataset.item_categories:
                top_cats = Counter(dataset.item_categories.get(c["item_id"], ["?"])[0]
                                   for c in value.items[:50])
                print(f"    categories of the top 50 candidates: {dict(top_cats.most_common(6))}")

        lats = [x for x in (latency_ms(v) for v in published) if x is not None]
        _step("click -> candidates latency")
        if lats:
            print(f"{len(published)} lists for {summary.sent} clicks: p50 {statistics.median(lats):.1f} ms, "
                  f"p95 {percentile(lats, 95):.1f} ms, p99 {percentile(lats, 99):.1f} ms, max {max(lats):.1f} ms")
        else:
            print("no candidate lists were published during the replay")
    print(f"\ndemo finished in {time.monotonic() - t0:.0f} s", flush=True)
    return 0 if lats else 1

