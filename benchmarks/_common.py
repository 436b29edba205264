"""What every benchmark prints beside its figures: the machine's load average and core count.

The development machine has 2 cores shared by several people, so a wall-clock figure means
little without the load it was measured under, and a ratio only holds when both sides ran in
the same run under the same load. Every benchmark prints :func:`machine` before it starts and
:func:`ratio_line` (which repeats it) for every ratio. Run as a script, this module prints the
machine line alone (``make bench`` does so before each benchmark).

Usage inside a benchmark (run as ``python benchmarks/<name>.py``, so this folder is on the path)::

    from _common import machine, ratio_line
    print(machine())
    print(ratio_line("loop / batched", loop_s, batched_s))
"""

from __future__ import annotations

import os


def cores() -> int:
    """CPU cores this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine() -> str:
    """``load average 1.20 / 0.80 / 0.45 (1, 5, 15 min) on 2 cores`` (+ a note when busy)."""
    n = cores()
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):  # not on every platform
        return f"load average unavailable; {n} cores"
    line = f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1, 5, 15 min) on {n} cores"
    if one > n:
        line += " - busy: other processes shared the CPU, wall times are inflated"
    return line


def ratio_line(label: str, baseline_s: float, ours_s: float, *, digits: int = 1) -> str:
    """One ratio with both times it comes from and the machine it was measured on."""
    ratio = baseline_s / ours_s if ours_s > 0 else float("inf")
    return (f"ratio {label}: {ratio:,.{digits}f}x ({baseline_s:,.2f} s / {ours_s:,.2f} s) "
            f"[{machine()}]")


if __name__ == "__main__":
    print(machine())
