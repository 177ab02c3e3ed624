"""bench/stream.py's SLO search (the bisection over offered rates, on phases whose p99 is a function of the rate) and
the click source that never runs dry."""

from __future__ import annotations

import itertools

import bench.stream as stream_bench
from bench.stream import Phase, slo_search


def phase(rate: float, ms_per_click_s: float) -> Phase:
    """A probe whose p99 grows with the offered rate: `ms_per_click_s` ms per click/s."""
    return Phase(rate=rate, offered_eps=rate, clicks=int(rate * 30), latency={"p99_ms": rate * ms_per_click_s},
                 lag_slope=0.0)


def search(ms_per_click_s: float) -> tuple[float, Phase | None, list[Phase], list[float]]:
    """slo_search from 100/s towards 400/s, 4 probes, SLO 100 ms; also the rates it asked for."""
    probed: list[float] = []

    def probe(rate: float) -> Phase:
        probed.append(rate)
        return phase(rate, ms_per_click_s)

    return (*slo_search(probe, phase(100, ms_per_click_s), 400, steps=4, slo_ms=100), probed)


def test_the_search_climbs_from_a_rate_that_holds() -> None:
    slo, at_slo, probes, probed = search(0.5)  # p99 <= 100 ms up to 200/s
    assert probed == [250, 175, 212.5, 193.75]
    assert slo == 193.75 and at_slo is probes[-1] and [p.held for p in probes] == [True, False, True, False, True]


def test_a_machine_too_slow_for_100_per_second_still_gets_a_rate() -> None:
    slo, at_slo, _, probed = search(2.0)  # p99 <= 100 ms up to 50/s
    assert probed == [50, 75, 62.5, 56.25]
    assert slo == 50 and at_slo is not None and at_slo.rate == 50


def test_a_growing_lag_fails_a_rate_whatever_its_p99() -> None:
    low = phase(100, 0.1)
    low.lag_slope = 5.0  # 5 % of the rate a second
    slo, at_slo, probes = slo_search(lambda rate: phase(rate, 10.0), low, 400, steps=2, slo_ms=100)
    assert slo == 0.0 and at_slo is None and len(probes) == 3


def test_the_click_source_starts_over_when_it_runs_out() -> None:
    passes = []

    def source():
        passes.append(len(passes))
        return iter([{"n": 1}, {"n": 2}])

    assert [e["n"] for e in itertools.islice(stream_bench.endless(source), 5)] == [1, 2, 1, 2, 1]
    assert len(passes) == 3  # each pass a fresh iterator of the source


def test_an_empty_click_source_ends_instead_of_spinning() -> None:
    assert list(stream_bench.endless(lambda: iter(()))) == []
