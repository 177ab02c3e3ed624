"""cProfile with a CPU-time clock: `python -m bench.cpu_profile OUT -m module [args...]`.

`python -m cProfile` times functions by the wall clock, so on a busy machine a function is charged for the time
the process waited for a core (a socket send that wakes the broker, an epoll wait). Timing by the process's CPU
time charges each function only for the CPU it used, which is what a cut of the per-click cost must go by.
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        sys.exit("usage: python -m bench.cpu_profile OUT -m module [args...]")
    out, module = sys.argv[1], sys.argv[3]
    sys.argv = [module, *sys.argv[4:]]
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
