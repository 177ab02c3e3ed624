"""Progress of a long phase (training, a replay, writing a file): a tqdm bar when stderr is a terminal,
otherwise one line when the phase ends, so a log file or CI output holds no carriage-return updates.

    with Progress("training", total=steps, unit="batch") as p:
        for ...:
            p.update()
            p.status(loss=f"{loss:.3f}")   # shown on the bar only
        p.line("epoch 1/4: loss 5.21")     # a line in both modes (above the bar on a terminal)

Every command that shows progress goes through this class (train, eval, retrain, produce, refresh,
simulate, demo). It lives in model/ because stream/ depends on model/ and not the reverse.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class Progress:
    """`enabled=False` (a --quiet flag) prints nothing at all; `file` defaults to sys.stderr at creation."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "it", enabled: bool = True,
                 file: TextIO | None = None) -> None:
        self.desc, self.total, self.unit, self.enabled = desc, total, unit, enabled
        self.file = file if file is not None else sys.stderr
        self.n = 0
        self._start = time.perf_counter()
        self._closed = False
        self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.file, mininterval=0.5, dynamic_ncols=True) \
            if enabled and is_terminal(self.file) else None

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)

    def status(self, **fields: Any) -> None:
        """Figures shown beside the bar (terminal only: in a log they would be one line per update)."""
        if self._bar is not None:
            self._bar.set_postfix(**fields, refresh=False)

    def line(self, message: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.file)
        else:
            print(message, file=self.file, flush=True)

    def close(self, summary: bool = True) -> None:
        """End the phase: the bar closes, or (not a terminal) one summary line is printed; none after a failure,
        whose own message is the line that matters."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and summary:
            seconds = time.perf_counter() - self._start
            rate = f", {self.n / seconds:,.0f} {self.unit}/s" if seconds > 0 and self.n else ""
            print(f"{self.desc}: {self.n:,} {self.unit} in {seconds:.1f} s{rate}", file=self.file, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(summary=exc_type is None)
