"""bench/broker_growth.py: the fill writes the batches it is asked for, the read-back tells records from batches,
the fill plan keeps the pipeline's proportions, and the breaking point is read off the steps."""

import asyncio

from bench.broker_growth import Fill, breaking_point, count_topics, fill, fill_plans
from infra.broker import EmbeddedBroker
from stream.topic_writer import ensure_topics


def test_fill_writes_the_batches_and_the_read_back_counts_them():
    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, ["a", "b"], 3)
        samples = [(b"k1", b"v" * 50), (b"k2", b"w" * 70)]
        seconds, written = asyncio.run(fill(broker.bootstrap, [Fill("a", 3, samples, 1.0, 30),
                                                               Fill("b", 3, samples, 2.5, 50)]))
        counted = count_topics(broker.bootstrap)
    assert written == 80
    assert (counted["a"]["records"], counted["a"]["batches"], counted["a"]["partitions"]) == (30, 30, 3)
    # 2.5 records a batch on average: batches of 2 and 3
    assert counted["b"]["records"] == 50 and counted["b"]["batches"] == 20
    assert counted["a"]["value_bytes"] == 15 * 50 + 15 * 70
    assert set(counted["b"]["samples"]) == set(samples)


def test_fill_plan_keeps_proportions_and_moves_the_clicks_share_to_candidates():
    counted = {"taps": {"records": 100, "batches": 50, "partitions": 12, "samples": [(b"u", b"click")]},
               "lists": {"records": 100, "batches": 100, "partitions": 12, "samples": [(b"u", b"list")]},
               "interests": {"records": 200, "batches": 100, "partitions": 12, "samples": [(b"u", b"vec")]},
               "empty": {"records": 0, "batches": 0, "partitions": 1, "samples": []}}
    plans = fill_plans(counted, "taps", "lists", 4000)
    assert sorted((p.topic, p.records, p.per_batch, p.samples[0][1]) for p in plans) == [
        ("interests", 2000, 2.0, b"vec"), ("lists", 1000, 1.0, b"list"), ("lists", 1000, 2.0, b"click")]


def test_breaking_point_interpolates_and_extrapolates():
    rows = [{"records_held": 0, "p99_ms": 50.0, "broker_cores": 0.2},
            {"records_held": 100, "p99_ms": 150.0, "broker_cores": 0.4},
            {"records_held": 200, "p99_ms": 250.0, "broker_cores": 0.6}]
    b = breaking_point(rows, 100.0)
    assert b["p99_over_slo"] == {"records": 50, "measured": True}
    assert b["broker_over_one_core"] == {"records": 400, "measured": False}
    assert breaking_point(rows, 40.0)["p99_over_slo"]["first_step"]
