"""Soak test: a bounded click load on one real worker for a long stretch; records lag, worker RSS and errors.

    python -m bench.soak [--duration-s 600] [--rate 50] [--users 100]      (make soak; SOAK_FLAGS=...)

An embedded Tansu broker, one `mindstream worker` subprocess and a MIND release trained on MovieLens-100K
(the test suite's small configuration; reused from runs/soak/models when there). Clicks of `--users` users are
offered at `--rate` per second for `--duration-s` seconds (every 17th sent twice, as a retrying producer
would). Every `--sample-s` seconds: the worker's RSS, the lag (clicks the broker acknowledged minus clicks the
worker consumed, from its mindstream_events_total), and error counts (dead letters for processing errors,
ERROR/CRITICAL lines in the worker log, producer errors).

After the load, the behaviors table's changelog must equal the ground truth of the produced log (lost = 0).
Pass criteria, stated before the run: RSS growth from the end of the warm-up to the end < 10 %; lag after the
warm-up stays below `--max-lag` and returns to 0 once the producer stops; no errors; nothing lost. With the
default 100 users every sequence reaches its bound (max_len 20) during the warm-up, so the state stops growing
and RSS growth measures leaks, not data.

Writes docs/soak.png (RSS and lag over time), docs/soak.json, and the figures into docs/reliability.md (between
the soak markers). Exit status 1 when a criterion fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

from infra.broker import EmbeddedBroker
from infra.click_load import PacedProducer, click_stream, sequences, table_state, warm_up
from infra.measure import metric_value
from infra.processes import WorkerProcess, wait_until
from model.release import ReleaseError, current_release_dir, load_release
from stream.commands.produce import pipeline_topics
from stream.commands.refresh import changelog_topics
from stream.config import Settings
from stream.topic_reader import TopicLog
from stream.topic_writer import ensure_topics
from stream.topology import CLICKS

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "runs" / "soak"
DOCS = REPO / "docs"
ML100K = REPO.parent / "shared" / "data" / "ml-100k"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
PARTITIONS = 4


def release_dir(root: Path) -> Path:
    """The small ML-100K release of the test suite (tests/conftest.py), trained once and reused."""
    with contextlib.suppress(ReleaseError, OSError, LookupError, ValueError):
        path = current_release_dir(root)
        load_release(path)
        return path
    from model.mind import MINDConfig
    from model.train import TrainConfig, train_release

    print(f"training the ML-100K release under {root}", flush=True)
    return train_release(ML100K, root, MINDConfig(d=32, K=4, max_len=20, hidden=(64,), profile_dim=8),
                         TrainConfig(epochs=1, batch_size=512, threads=1, progress=False))


def consumed(metrics_text: str) -> float:
    return sum(metric_value(metrics_text, "mindstream_events_total", f'status="{s}"')
               for s in ("ok", "invalid", "duplicate", "unknown_item"))


def log_errors(path: Path) -> int:
    text = path.read_text(errors="replace")
    return sum(1 for line in text.splitlines() if "[ERROR]" in line or "[CRITICAL]" in line or " ERROR " in line
               or "CRITICAL" in line)


def plot(samples: list[dict], warmup_s: float, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in samples]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ax1.plot(t, [s["rss_mb"] for s in samples], color="tab:blue")
    ax1.set_ylabel("worker RSS (MiB)")
    ax1.set_ylim(bottom=0)
    ax2.plot(t, [s["lag"] for s in samples], color="tab:red")
    ax2.set_ylabel("lag (clicks acked - consumed)")
    ax2.set_xlabel("seconds since the load started")
    for ax in (ax1, ax2):
        ax.axvline(warmup_s, color="grey", linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
    ax1.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write_markdown(result: dict, doc: Path) -> None:
    f = result["figures"]
    failed = ", ".join(k for k, v in result["criteria"].items() if not v)
    lines = [
        BEGIN,
        f"Run of {result['date']}: `{result['command']}` ({result['host']}).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| load | {f['rate']} clicks/s offered for {f['duration_s']} s, {f['users']} users |",
        f"| events produced (acked) | {f['produced']} ({f['valid_unique']} unique, {f['duplicates_sent']} "
        "duplicates) |",
        f"| events consumed by the worker | {f['consumed']:.0f} |",
        f"| dead-lettered | {f['dead_lettered']:.0f} |",
        f"| lost (ground truth vs changelog) | {f['lost']} |",
        f"| worker RSS at end of warm-up / end / max | {f['rss_warm_mb']:.1f} / {f['rss_end_mb']:.1f} / "
        f"{f['rss_max_mb']:.1f} MiB |",
        f"| RSS growth after warm-up ({f['warmup_s']} s) | {100 * f['rss_growth']:.1f} % (criterion < 10 %) |",
        f"| lag after warm-up: max / at end of load / after drain | {f['lag_max']:.0f} / {f['lag_end_load']:.0f} / "
        f"{f['lag_drained']:.0f} clicks (criterion max < {f['max_lag']}, 0 after drain) |",
        f"| errors: processing_error dead letters / worker log / producer | {f['processing_errors']:.0f} / "
        f"{f['log_errors']} / {f['producer_errors']} |",
        f"| verdict | {'PASS' if result['passed'] else 'FAIL'} ({failed or 'all criteria met'}) |",
        "",
        "![worker RSS and lag during the soak](soak.png)",
        END,
    ]
    text = doc.read_text() if doc.exists() else ""
    block = "\n".join(lines)
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def run(args: argparse.Namespace) -> int:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    release = Path(args.release) if args.release else release_dir(work / "models")
    max_len = load_release(release).max_len
    stamp = time.strftime("%Y%m%dT%H%M%S")
    run_dir = work / stamp
    run_dir.mkdir()
    total = int(args.rate * args.duration_s)
    per_user = max(1, -(-total // args.users))
    items = load_release(release).item_ids[:500]
    clicks = click_stream(args.users, per_user, items, t0=time.time() - 10 * total, duplicate_every=17)
    # the stream is `total` clicks long (duplicates included), whatever the rounding per user
    clicks = clicks[:total]
    samples: list[dict] = []
    settings = Settings.from_env()  # what the worker reads: its topic prefix and app id
    with EmbeddedBroker(log_path=str(run_dir / "broker.log")) as broker:
        ensure_topics(broker.bootstrap, pipeline_topics(settings), PARTITIONS)  # as kafka-init does
        changelog = TopicLog(broker.bootstrap, changelog_topics(settings)[0])
        topic = settings.topic(CLICKS.name)
        worker = WorkerProcess("worker", run_dir / "worker.log", broker.bootstrap, run_dir / "state",
                               models_dir=release.parent,
                               args=("--release", str(release), "--partitions", str(PARTITIONS), "--top-n", "20",
                                     "--log-level", "warning"))
        producer = PacedProducer(broker.bootstrap, topic, clicks, rate=args.rate)
        try:
            warm = warm_up(broker.bootstrap, topic, changelog, [worker], 4, items[0])
            print(f"worker {worker.pid} processing; offering {len(clicks)} clicks at {args.rate}/s for "
                  f"{args.duration_s} s", flush=True)
            start = time.monotonic()
            producer.start()
            next_sample = start
            # sample through the load, then until the worker has consumed everything (bounded)
            drain_deadline = None
            while True:
                worker.check_alive()
                now = time.monotonic()
                if now >= next_sample:
                    text = worker.metrics()
                    acked = len(producer.log.clicks) + len(warm.clicks)
                    done = consumed(text)
                    samples.append({"t": round(now - start, 1), "rss_mb": worker.rss_bytes() / 2**20,
                                    "acked": acked, "consumed": done, "lag": max(0.0, acked - done),
                                    "processing_errors": metric_value(text, "mindstream_dead_letters_total",
                                                                      'reason="processing_error"'),
                                    "producing": producer.is_alive()})
                    s = samples[-1]
                    print(f"t={s['t']:6.1f}s rss={s['rss_mb']:.1f}MiB acked={acked} consumed={s['consumed']:.0f} "
                          f"lag={s['lag']:.0f}", flush=True)
                    next_sample += args.sample_s
                if not producer.is_alive():
                    drain_deadline = drain_deadline or now + args.drain_s
                    if (samples[-1]["lag"] == 0 and not samples[-1]["producing"]) or now > drain_deadline:
                        break
                changelog.poll(timeout_ms=100)  # keep up with the changelog as we go: cheap, incremental
                time.sleep(max(0.0, min(1.0, next_sample - time.monotonic())))
            log = warm.merge(producer.log)
            truth = log.ground_truth(max_len)
            wait_until(lambda: sequences(table_state(changelog.poll())) == truth, 120, [worker])
            got = sequences(table_state(changelog.records))
            lost = sum(sum((Counter(truth[u]) - Counter(got.get(u, []))).values()) for u in truth)
            final = worker.metrics()
        finally:
            producer.stop()
            changelog.close()
            worker.stop()
    after = [s for s in samples if s["t"] >= args.warmup_s]
    load = [s for s in after if s["producing"]] or after
    rss_warm = after[0]["rss_mb"] if after else samples[-1]["rss_mb"]
    rss_end = load[-1]["rss_mb"] if load else samples[-1]["rss_mb"]
    figures = {
        "rate": args.rate, "duration_s": args.duration_s, "users": args.users, "warmup_s": args.warmup_s,
        "produced": len(log.clicks), "valid_unique": log.unique, "duplicates_sent": len(log.clicks) - log.unique,
        "consumed": consumed(final),
        "dead_lettered": sum(float(line.split()[-1]) for line in final.splitlines()
                             if line.startswith("mindstream_dead_letters_total{")),
        "lost": lost, "rss_warm_mb": rss_warm, "rss_end_mb": rss_end,
        "rss_max_mb": max(s["rss_mb"] for s in samples), "rss_growth": (rss_end - rss_warm) / rss_warm,
        "lag_max": max((s["lag"] for s in after), default=0.0), "lag_end_load": load[-1]["lag"] if load else 0.0,
        "lag_drained": samples[-1]["lag"], "max_lag": args.max_lag,
        "processing_errors": metric_value(final, "mindstream_dead_letters_total", 'reason="processing_error"'),
        "log_errors": log_errors(run_dir / "worker.log"), "producer_errors": len(log.errors),
    }
    criteria = {
        "rss_growth<10%": figures["rss_growth"] < 0.10,
        "lag_bounded": figures["lag_max"] < args.max_lag,
        "lag_drained": figures["lag_drained"] == 0,
        "no_errors": figures["processing_errors"] == 0 and figures["log_errors"] == 0
        and figures["producer_errors"] == 0,
        "nothing_lost": lost == 0 and figures["consumed"] >= len(log.clicks),
    }
    command = "python -m bench.soak " + " ".join(sys.argv[1:]) if sys.argv[1:] else "make soak"
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command,
              "host": f"{platform.machine()}, {os.cpu_count()} cores", "figures": figures,
              "criteria": criteria, "passed": all(criteria.values()), "samples": samples}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(samples, args.warmup_s, out / "soak.png",
         f"soak: {args.rate} clicks/s for {args.duration_s} s, {args.users} users (dashed: end of warm-up)")
    (out / "soak.json").write_text(json.dumps(result, indent=1))
    write_markdown(result, out / "reliability.md")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    return 0 if result["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration-s", type=float, default=600.0, help="seconds of load (default 600)")
    p.add_argument("--rate", type=float, default=50.0, help="clicks offered per second (default 50)")
    p.add_argument("--users", type=int, default=100, help="distinct users (default 100)")
    p.add_argument("--warmup-s", type=float, default=60.0, help="seconds excluded from the RSS criterion")
    p.add_argument("--sample-s", type=float, default=5.0, help="sampling interval")
    p.add_argument("--drain-s", type=float, default=120.0, help="longest wait for the lag to return to 0")
    p.add_argument("--max-lag", type=float, default=500.0, help="lag bound after the warm-up (clicks)")
    p.add_argument("--release", default="", help="release directory (default: train/reuse runs/soak/models)")
    p.add_argument("--work", default=str(WORK), help="run directory (logs, state)")
    p.add_argument("--out", default=str(DOCS), help="where soak.png, soak.json and reliability.md go")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
