"""Figures read off a running process, for the tests, the benchmarks and `make demo`: one sample of a Prometheus
text page, a nearest-rank percentile, a process's resident memory."""

from __future__ import annotations

import re

_SAMPLE = re.compile(r"^(\w+)(?:\{([^}]*)\})? (\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def metric_value(text: str, name: str, labels: str = "") -> float:
    """The value of one sample of Prometheus text exposition (0 when absent); `labels` as they are printed, e.g.
    'status="ok"'."""
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of metric `name` in Prometheus text exposition: (its labels, its value)."""
    return [(dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))) for m in _SAMPLE.finditer(text)
            if m.group(1) == name]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """Resident set size of a process (Linux /proc), or its peak with `field` "VmHWM"."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0
