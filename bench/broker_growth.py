"""Where the embedded broker breaks as it fills: its CPU, RSS and the click -> candidates latency against the
records it holds, under a steady pipeline load.

    python -m bench.broker_growth [--rate 100] [--steps 0,150000,300000,600000,1000000] [--hold-s 20]

Tansu (memory storage) keeps every record until it stops (docs/platform.md#nothing-it-holds-can-be-dropped), so
an hour at 200 clicks/s cannot be bounded; this measures how long it lasts, without running the hour.

1. Where the cost grows (a fresh broker, one-partition topics): a producer at 100 msg/s and a consumer at the log
   end with the worker's 50 ms fetch wait, with nothing held, with `--probe-batches` batches in a topic nobody
   reads or writes, and with the same batches in the partition being written and read.
2. The pipeline (a fresh broker, the pipeline's topics, one `mindstream worker` serving the soak's ML-100K
   release): `--rate` clicks/s for `--hold-s` seconds while the candidates are read at the log end. After that
   first hold, every topic is read back: records per click, records per batch, and sample records of each. Each
   further step fills the broker up to the step's records held with copies of those samples, in batches of the
   size the pipeline writes, spread over the partitions, in the proportions the pipeline writes (the clicks'
   share, with the clicks' sizes and batches, goes to the `candidates` partitions, which are written and read as
   the clicks' are: filling `clicks` would make the worker process the fill); then the same hold. Per hold: the
   broker's CPU (cores, utime + stime from /proc), its RSS, the worker's CPU, and p50/p99 of published_ts -
   event_ts of every list. Then, the worker idle, one hop alone: the placement probe's 100 msg/s producer and
   consumer on a partition of `user-interests` (which nobody reads with `--role all`): the broker's cores and the
   delivery p50/p99, figures that do not depend on the worker keeping up. Stops after the first step where the
   broker needs more than a core, or its RSS passes `--max-rss-gib`.

The default load is 100 clicks/s: on this shared 2-core machine one worker holds it within the SLO with nothing
held, so what changes from step to step is the broker's (at 200/s Faust's producer buffer filled from the start).
Records held convert to clicks held (records per click, measured) and to minutes at `--at-rate` clicks/s.
Writes docs/benchmarks/broker_growth.{json,png} and its section of docs/reliability.md (between the
broker-growth markers). About 9 minutes with the defaults on a quiet machine (14 on this shared one, where a
worker that falls behind lengthens every step's wait); the broker reaches ~4.5 GiB of RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.soak import ML100K, release_dir
from bench.stream import Scenario, cpu_seconds, latency_stats
from infra.broker import EmbeddedBroker
from infra.measure import percentile, rss_bytes
from infra.processes import REPO as WORKER_REPO
from stream.commands.produce import interleaved_dataset
from stream.config import Settings
from stream.topology import CANDIDATES, USER_INTERESTS

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "runs" / "broker_growth"
OUT = REPO / "docs" / "benchmarks"
DOC = REPO / "docs" / "reliability.md"
BEGIN, END = "<!-- broker-growth:begin -->", "<!-- broker-growth:end -->"
FETCH_WAIT_MS = 50  # the worker's default (stream/config.py)


def cores(pid: int, seconds: float, since: float) -> float:
    return round((cpu_seconds(pid) - since) / seconds, 3)


# --------------------------------------------------------------------------- filling the broker


@dataclass
class Fill:
    """`records` copies of `samples` (key, value) for `topic`, `per_batch` records a batch on average,
    round-robin over its `partitions`."""

    topic: str
    partitions: int
    samples: list[tuple[bytes | None, bytes]]
    per_batch: float
    records: int


async def fill(bootstrap: str, plans: list[Fill], full: Callable[[], bool] = lambda: False) -> tuple[float, int]:
    """Write every plan's records, the plans interleaved batch by batch, or until `full()`; returns the seconds
    it took and the records written."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, max_batch_size=8 << 20)
    await producer.start()
    t = time.monotonic()
    try:
        pending: list[asyncio.Future] = []
        owed = [0.0] * len(plans)  # records owed by the batch-size accumulator of each plan
        written = [0] * len(plans)
        n = 0
        while any(w < p.records for w, p in zip(written, plans, strict=True)):
            for i, p in enumerate(plans):
                if written[i] >= p.records:
                    continue
                owed[i] += p.per_batch
                k = max(1, min(int(owed[i]), p.records - written[i]))
                owed[i] -= k
                batch = producer.create_batch()
                for j in range(k):
                    key, value = p.samples[(written[i] + j) % len(p.samples)]
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise RuntimeError(f"{p.topic}: {k} records do not fit one batch")
                batch.close()
                pending.append(await producer.send_batch(batch, p.topic, partition=n % p.partitions))
                written[i] += k
                n += 1
            if len(pending) >= 256:
                await asyncio.gather(*pending)
                pending = []
                if full():
                    break
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - t, sum(written)


# --------------------------------------------------------------------------- 1. where the cost grows


async def delivery(bootstrap: str, topic: str, rate: float, seconds: float, pid: int) -> dict:
    """A producer at `rate` msg/s and a consumer at the log end of partition 0 of `topic` (fetch wait 50 ms):
    the broker's cores and RSS, and the delivery latency."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=FETCH_WAIT_MS,
                                auto_offset_reset="latest")
    await producer.start()
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    latencies: list[float] = []
    done = asyncio.Event()

    async def consume() -> None:
        while not done.is_set():
            got = await consumer.getmany(tp, timeout_ms=200)
            now = time.time()
            # Tansu's listed end is inside the last batch: its tail (fill records) is read again
            latencies.extend((now - float(m.value)) * 1000.0 for m in got.get(tp, ()) if m.value[:1].isdigit())

    task = asyncio.create_task(consume())
    try:
        await asyncio.sleep(1.0)
        c0, t0 = cpu_seconds(pid), time.monotonic()
        for i in range(int(rate * seconds)):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await producer.send(topic, repr(time.time()).encode(), partition=0)
        elapsed = time.monotonic() - t0
        broker = cores(pid, elapsed, c0)
        await asyncio.sleep(0.5)
    finally:
        done.set()
        await task
        await producer.stop()
        await consumer.stop()
    return {"broker_cores": broker, "broker_rss_mib": round(rss_bytes(pid) / 2**20, 1),
            "p50_ms": round(statistics.median(latencies), 1), "p99_ms": round(percentile(latencies, 99), 1),
            "messages": len(latencies)}


async def placement(batches: int, per_batch: int, seconds: float) -> list[dict]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    rows = []
    with EmbeddedBroker(log_path=str(WORK / "broker-placement.log")) as broker:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic("read", 1, 1), NewTopic("idle", 1, 1)])
        await admin.close()
        sample = [(b"k", b"x" * 400)]
        for where in ("nothing held", "idle", "read"):
            if where != "nothing held":
                await fill(broker.bootstrap, [Fill(where, 1, sample, per_batch, batches * per_batch)])
            row = {"held_in": where, "batches_held": 0 if where == "nothing held" else batches,
                   "records_per_batch": per_batch,
                   **await delivery(broker.bootstrap, "read", 100, seconds, broker.pid)}
            print(f"[placement] {json.dumps(row)}", flush=True)
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- 2. the pipeline


def clicks(path: Path) -> Iterator[dict]:
    """The dataset's clicks, user-interleaved, over and over, each with an event id of its own (a repeated id
    would be dropped as a duplicate)."""
    for n, event in enumerate(itertools.chain.from_iterable(interleaved_dataset(path) for _ in itertools.count())):
        yield {**event, "event_id": f"g{n}"}


def count_topics(bootstrap: str) -> dict[str, dict]:
    """Every topic on the broker, read to its end: records, batches (as the broker returns them), partitions,
    bytes of the values, and up to 256 sample records."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.record import MemoryRecords

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    names = sorted(admin.list_topics())
    admin.close()
    seen: set[tuple[int, int]] = set()
    original = MemoryRecords.next_batch

    def counting(self: MemoryRecords, *a: object) -> object:
        batch = original(self, *a)
        if batch is not None:
            seen.add((batch.base_offset, batch.crc))
        return batch

    out = {}
    MemoryRecords.next_batch = counting
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             fetch_max_wait_ms=100, max_partition_fetch_bytes=8 << 20)
    try:
        for name in names:
            tps = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
            records, batches, value_bytes, samples = 0, 0, 0, []
            for tp in tps:  # one partition at a time: a batch is told by its (base offset, crc) in the partition
                seen.clear()
                consumer.assign([tp])
                consumer.seek_to_beginning(tp)
                idle = 0
                while idle < 5:
                    got = consumer.poll(timeout_ms=200)
                    for r in got.get(tp, ()):
                        records += 1
                        value_bytes += len(r.value or b"")
                        if len(samples) < 256 and r.value is not None:
                            samples.append((r.key, r.value))
                    end = consumer.highwater(tp)
                    if end is not None and consumer.position(tp) >= end:
                        break
                    idle = 0 if got else idle + 1
                batches += len(seen)
            out[name] = {"records": records, "batches": batches, "partitions": len(tps),
                         "value_bytes": value_bytes, "samples": samples}
    finally:
        consumer.close()
        MemoryRecords.next_batch = original
    return out


class Pipeline(Scenario):
    """bench.stream's scenario (a broker, the pipeline's topics, one worker serving `models`, a candidates reader)
    fed the ML-100K clicks, with the steps' figures."""

    def __init__(self, models: Path, stack: contextlib.ExitStack) -> None:
        super().__init__("growth", models, clicks(ML100K), WORKER_REPO, stack)
        settings = Settings.from_env()
        self.candidates = settings.topic(CANDIDATES.name)
        self.interests = settings.topic(USER_INTERESTS.name)

    def skip_to_end(self) -> None:
        """The reader jumps the filled records, as a consumer at the log end would never read them (Tansu's
        listed end is inside the last batch: what it reads again in the next second is dropped too)."""
        consumer = self.reader.reader.consumer
        consumer.seek_to_end(*consumer.assignment())
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            self.reader.published()
        self.reader.buffered = []

    def steady(self, rate: float, seconds: float) -> dict:
        """`rate` clicks/s for `seconds`: the broker's and the worker's cores, the broker's RSS, the lists' latency."""
        n = int(rate * seconds)
        broker0, worker0 = cpu_seconds(self.broker.pid), cpu_seconds(self.worker.pid)
        t0, wall0 = time.monotonic(), time.time()
        sender = threading.Thread(target=self.send, args=(n, rate), daemon=True)
        sender.start()
        rss_max = 0
        while sender.is_alive():
            self.reader.published()  # fetch as they come; decoded after the phase
            rss_max = max(rss_max, rss_bytes(self.broker.pid))
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
        broker, worker = cores(self.broker.pid, elapsed, broker0), cores(self.worker.pid, elapsed, worker0)
        self.reader.wait_settled(self.reader.returned + len(self.reader.buffered) + n, [self.worker], 120)
        pairs = [(e, p) for e, p in self.reader.read_new() if e >= wall0]
        lat = latency_stats(pairs)
        return {"clicks": n, "lists": lat.get("lists", 0), "p50_ms": _r(lat.get("p50_ms")),
                "p99_ms": _r(lat.get("p99_ms")), "broker_cores": broker, "worker_cores": worker,
                "broker_cpu_ms_per_click": round(broker * elapsed / n * 1000.0, 2),
                "broker_rss_mib": round(max(rss_max, rss_bytes(self.broker.pid)) / 2**20, 1),
                "loadavg_1min": round(os.getloadavg()[0], 2)}


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def shape(counted: dict[str, dict], clicks_sent: int) -> dict:
    """What one click writes, topic by topic, from a read-back of a pipeline that only the load has filled."""
    total = sum(t["records"] for t in counted.values())
    return {"records_per_click": round(total / clicks_sent, 3), "records": total, "clicks": clicks_sent,
            "topics": {name: {"records": t["records"], "batches": t["batches"], "partitions": t["partitions"],
                              "records_per_batch": round(t["records"] / max(1, t["batches"]), 2),
                              "records_per_click": round(t["records"] / clicks_sent, 3),
                              "value_bytes_mean": round(t["value_bytes"] / max(1, t["records"]))}
                       for name, t in counted.items() if t["records"]}}


def fill_plans(counted: dict[str, dict], clicks_topic: str, candidates_topic: str, records: int) -> list[Fill]:
    """`records` more, split over the topics as the pipeline splits them; the clicks' share goes to the
    candidates partitions (written and read, as the clicks' are), with the clicks' sizes and batches."""
    total = sum(t["records"] for t in counted.values())
    plans = []
    for name, t in counted.items():
        if t["records"]:
            plans.append(Fill(candidates_topic if name == clicks_topic else name, t["partitions"], t["samples"],
                              t["records"] / max(1, t["batches"]), round(records * t["records"] / total)))
    return plans


def pipeline(args: argparse.Namespace) -> tuple[dict, list[dict]]:
    release = Path(args.release) if args.release else release_dir(WORK / "models")
    steps = sorted({int(float(s)) for s in args.steps.split(",")})
    rows: list[dict] = []
    with contextlib.ExitStack() as stack:
        p = Pipeline(release.parent, stack)
        p.warm_up(200)
        for _ in range(8):  # to a steady state at the load's rate: a worker's first minute is slower
            if (p.steady(args.rate, 5.0)["p99_ms"] or 0) <= args.slo_ms:
                break
        held, pipeline_shape, counted = 0, None, None
        for target in steps:
            filled_s = 0.0
            if counted is not None and target > held:
                plans = fill_plans(counted, p.clicks_topic, p.candidates, target - held)
                def full() -> bool:
                    return rss_bytes(p.broker.pid) > args.max_rss_gib * 2**30

                filled_s, written = asyncio.run(fill(p.broker.bootstrap, plans, full))
                held += written
                p.skip_to_end()
                time.sleep(1.0)
            row = p.steady(args.rate, args.hold_s)
            if counted is None:  # the first hold: the pipeline's own records, read back
                counted = count_topics(p.broker.bootstrap)
                pipeline_shape = shape(counted, p.sent)
                held = pipeline_shape["records"]
                print(f"[pipeline] {json.dumps(pipeline_shape)}", flush=True)
            else:
                held += round(row["clicks"] * pipeline_shape["records_per_click"])
            # one hop alone, the worker idle: a partition of user-interests (written by the worker, read by nobody
            # with --role all) gets the probe's producer and consumer; the broker's figures without the worker's
            hop = asyncio.run(delivery(p.broker.bootstrap, p.interests, 100, args.probe_s, p.broker.pid))
            row = {"records_held": held, "fill_s": round(filled_s, 1), **row,
                   **{f"hop_{k}": v for k, v in hop.items() if k != "messages"}}
            rows.append(row)
            print(f"[pipeline] {json.dumps(row)}", flush=True)
            # latency on this shared machine also moves with other load: the broker's own figures decide the stop
            if row["broker_cores"] > 1.0 or row["broker_rss_mib"] > args.max_rss_gib * 1024:
                break
    return pipeline_shape, rows


# --------------------------------------------------------------------------- the figures


def breaking_point(rows: list[dict], slo_ms: float) -> dict:
    """The records held where p99 passes the SLO and where the broker passes one core: interpolated between the
    steps that straddle it, or extrapolated linearly from the last two steps when no step reached it."""
    def crossing(key: str, limit: float) -> dict | None:
        # a step without a single list in time (None) is past any limit
        pts = [(r["records_held"], math.inf if r.get(key) is None else r[key]) for r in rows]
        for (x0, y0), (x1, y1) in itertools.pairwise(pts):
            if y0 <= limit < y1:
                at = x1 if math.isinf(y1) else x0 + (x1 - x0) * (limit - y0) / (y1 - y0)
                return {"records": round(at), "measured": True}
        if pts and pts[0][1] > limit:
            return {"records": pts[0][0], "measured": True, "first_step": True}
        if len(pts) >= 2 and pts[-1][1] > pts[-2][1] and not math.isinf(pts[-1][1]):
            (x0, y0), (x1, y1) = pts[-2], pts[-1]
            return {"records": round(x1 + (x1 - x0) * (limit - y1) / (y1 - y0)), "measured": False}
        return None

    return {"p99_over_slo": crossing("p99_ms", slo_ms), "broker_over_one_core": crossing("broker_cores", 1.0),
            "hop_p99_over_slo": crossing("hop_p99_ms", slo_ms)}


def convert(records: int, per_click: float, at_rate: float) -> dict:
    clicks_held = records / per_click
    return {"records": records, "clicks": round(clicks_held), "minutes": round(clicks_held / at_rate / 60.0, 1)}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, c = result["steps"], result["conditions"]
    minutes = [r["minutes_at_rate"] for r in rows]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    ax1.plot(minutes, [r["p99_ms"] for r in rows], "o-", color="tab:red", label="p99")
    ax1.plot(minutes, [r["p50_ms"] for r in rows], "x--", color="tab:red", alpha=0.6, label="p50")
    ax1.plot(minutes, [r["hop_p99_ms"] for r in rows], "s-", color="tab:orange", label="one hop alone, p99")
    ax1.axhline(c["slo_ms"], color="grey", linestyle=":", label=f"SLO {c['slo_ms']:g} ms")
    ax1.set_ylabel("click -> candidates, ms")
    ax1.set_yscale("log")
    ax2.plot(minutes, [r["broker_cores"] for r in rows], "o-", color="tab:blue", label="broker")
    ax2.plot(minutes, [r["worker_cores"] for r in rows], "x--", color="tab:green", label="worker")
    ax2.plot(minutes, [r["hop_broker_cores"] for r in rows], "s-", color="tab:orange",
             label="broker, one hop at 100 msg/s alone")
    ax2.axhline(1.0, color="grey", linestyle=":", label="one core")
    ax2.set_ylabel(f"CPU at {c['rate']:g} clicks/s, cores")
    ax3.plot(minutes, [r["broker_rss_mib"] for r in rows], "o-", color="tab:purple")
    ax3.set_ylabel("broker RSS, MiB")
    ax3.set_xlabel(f"records held, as minutes of traffic at {c['at_rate']:g} clicks/s "
                   f"({result['shape']['records_per_click']:.2f} records per click)")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
        if ax is not ax3:
            ax.legend(fontsize=8)
    ax1.set_title("embedded broker (Tansu, memory storage) as it fills")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(result: dict) -> str:
    c, s, b = result["conditions"], result["shape"], result["breaks"]
    rows = "\n".join(
        f"| {r['records_held']:,} | {r['clicks_held']:,} | {r['minutes_at_rate']:.1f} | {r['broker_cores']:.2f} | "
        f"{r['broker_cpu_ms_per_click']:.2f} | {r['broker_rss_mib']:,.0f} | {r['worker_cores']:.2f} | "
        f"{r['lists']:,} / {r['clicks']:,} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {r['hop_broker_cores']:.2f} | "
        f"{r['hop_p50_ms']:.1f} / {r['hop_p99_ms']:.1f} | {r['loadavg_1min']:.1f} |" for r in result["steps"])
    place = "\n".join(f"| {r['held_in']} | {r['batches_held']:,} | {r['broker_cores']:.2f} | "
                      f"{r['broker_rss_mib']:,.0f} | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} |"
                      for r in result["placement"])
    topics = "\n".join(f"| `{name}` | {t['records_per_click']:.2f} | {t['records_per_batch']:.2f} | "
                       f"{t['value_bytes_mean']:,} |" for name, t in s["topics"].items())

    def limit(key: str, what: str) -> str:
        x = b.get(key)
        if not x:
            return f"- {what}: not reached, nor extrapolated from the steps measured"
        how = ("already at the first step" if x.get("first_step") else "measured, interpolated between steps"
               if x["measured"] else "extrapolated from the last two steps")
        return (f"- {what}: at ~{x['records']:,} records held = ~{x['clicks']:,} clicks = **~{x['minutes']:.0f} min at "
                f"{c['at_rate']:g} clicks/s** ({how})")

    rss = b.get("rss")
    rss_line = (f"- memory: the broker's RSS grows by ~{rss['bytes_per_record']:,} bytes per record held, "
                f"**~{rss['gib_per_hour']:.1f} GiB per hour at {c['at_rate']:g} clicks/s**, and it never shrinks"
                if rss else "- memory: one step only, no growth measured")
    if not place:
        place = "| (not run: --skip-placement) | | | | |"
    return f"""{BEGIN}
Run of {c['date_utc']} UTC: `{c['command']}` ({c['host']}; the machine shared with other work, 1-minute load
average {c['loadavg_before']:.1f} before, {c['loadavg_after']:.1f} after; `nice -n 5`). Load: {c['rate']:g}
clicks/s for {c['hold_s']:g} s per step through one `mindstream worker` (ML-100K release, {c['partitions']}
partitions, fetch wait {FETCH_WAIT_MS} ms), candidates read at the log end; then, the worker idle, one hop
alone (100 msg/s produced to and consumed from a partition of `user-interests`, {c['probe_s']:g} s). Raw figures:
docs/benchmarks/broker_growth.json.

Where the cost grows (one-partition topics, a producer at 100 msg/s and a consumer at the log end, 50 ms fetch
wait; {c['probe_batches']:,} batches of {c['probe_per_batch']} records of 400 bytes held):

| held in | batches held | broker cores | broker RSS MiB | delivery p50 / p99 ms |
|---|---:|---:|---:|---:|
{place}

What one click writes (read back after the first step: {s['clicks']:,} clicks, {s['records']:,} records,
**{s['records_per_click']:.2f} records per click**):

| topic | records per click | records per batch | value bytes |
|---|---:|---:|---:|
{topics}

| records held | clicks held | minutes at {c['at_rate']:g}/s | broker cores | broker CPU ms/click | broker RSS MiB \
| worker cores | lists / clicks | p50 ms | p99 ms | one hop: broker cores | one hop: p50 / p99 ms | load avg |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}

Where it breaks:
{limit('p99_over_slo', f"p99 click -> candidates passes {c['slo_ms']:g} ms")}
{limit('broker_over_one_core', "the broker needs more than one core")}
{limit('hop_p99_over_slo', f"p99 of one hop alone (worker idle) passes {c['slo_ms']:g} ms")}
{rss_line}

![broker CPU, RSS and latency against records held](benchmarks/broker_growth.png)
{END}"""


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def write_doc(block: str, doc: Path) -> None:
    text = doc.read_text()
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=100.0, help="clicks/s of the steady load (default %(default)s)")
    p.add_argument("--hold-s", type=float, default=20.0, help="seconds of load per step (default %(default)s)")
    p.add_argument("--steps", default="0,150000,300000,600000,1000000",
                   help="records held at each step, comma-separated; the first is the pipeline's own "
                        "(default %(default)s)")
    p.add_argument("--at-rate", type=float, default=200.0,
                   help="clicks/s the records held are converted to minutes at (default %(default)s)")
    p.add_argument("--slo-ms", type=float, default=100.0, help="p99 bound (default %(default)s)")
    p.add_argument("--max-rss-gib", type=float, default=6.0, help="stop past this broker RSS (default %(default)s)")
    p.add_argument("--probe-batches", type=int, default=10_000,
                   help="batches held in the placement probe (default %(default)s)")
    p.add_argument("--probe-per-batch", type=int, default=2, help="records per batch there (default %(default)s)")
    p.add_argument("--probe-s", type=float, default=15.0, help="seconds of each placement load")
    p.add_argument("--skip-placement", action="store_true", help="only the pipeline")
    p.add_argument("--release", default="", help="release directory (default: the soak's, trained once)")
    p.add_argument("--out", type=Path, default=OUT, help="where broker_growth.{json,png} go")
    p.add_argument("--doc", type=Path, default=DOC, help="the markdown whose broker-growth section is rewritten")
    args = p.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    rows_place = [] if args.skip_placement else asyncio.run(
        placement(args.probe_batches, args.probe_per_batch, args.probe_s))
    pipeline_shape, rows = pipeline(args)
    per_click = pipeline_shape["records_per_click"]
    for r in rows:
        c = convert(r["records_held"], per_click, args.at_rate)
        r["clicks_held"], r["minutes_at_rate"] = c["clicks"], c["minutes"]
    breaks: dict = {k: v and {**v, **convert(v["records"], per_click, args.at_rate)}
                    for k, v in breaking_point(rows, args.slo_ms).items()}
    first, last = rows[0], rows[-1]
    if last["records_held"] > first["records_held"]:
        per_record = (last["broker_rss_mib"] - first["broker_rss_mib"]) * 2**20 / (last["records_held"]
                                                                                  - first["records_held"])
        breaks["rss"] = {"bytes_per_record": round(per_record),
                         "gib_per_hour": round(per_record * per_click * args.at_rate * 3600 / 2**30, 1)}
    result = {
        "breaks": breaks, "shape": pipeline_shape, "steps": rows, "placement": rows_place,
        "conditions": {"command": " ".join(["python -m bench.broker_growth",
                                            *(sys.argv[1:] if argv is None else argv)]),
                       "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "rate": args.rate,
                       "hold_s": args.hold_s, "at_rate": args.at_rate, "slo_ms": args.slo_ms,
                       "partitions": Settings.from_env().partitions, "probe_batches": args.probe_batches,
                       "probe_per_batch": args.probe_per_batch, "probe_s": args.probe_s,
                       "host": f"{platform.machine()}, {os.cpu_count()} cores",
                       "loadavg_before": round(load_before, 2), "loadavg_after": round(os.getloadavg()[0], 2)},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "broker_growth.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out / "broker_growth.png")
    write_doc(render(result), args.doc)
    print(json.dumps({"breaks": breaks, "records_per_click": per_click}, indent=1))
    print(f"wrote {args.out / 'broker_growth.json'}, broker_growth.png and the section of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
