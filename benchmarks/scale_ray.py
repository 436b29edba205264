"""Ray overhead on one machine, and the speed-up to expect on a cluster (issue 15).

Runs the Adult Olden–Jackson test (connection_weights, B = 999, 3 per-input nulls of 99) and
SHAP of 1,000 Adult rows (DeepLIFT, the default explainer) under ``backend = "local"`` and
``backend = "ray"`` (a local Ray instance on this machine's usable cores) in the same run,
alternating local, ray, local, ray (``--repeats``, default 2) so that both see the same load on
a shared machine. What is counted where:

- **cluster start** (``ray.init``): once per cluster. A user with an existing cluster
  (``--ray-address``) never pays it; ``audit run --backend ray`` without an address pays it once
  per run. Printed alone, never in a ratio.
- **worker start-up**: Ray starts fresh worker processes for each driver (each ``audit run``),
  and each imports torch, shap and audit-suite once. The runner starts these imports on every
  worker as the session opens (``execution.session(warm=...)``), overlapping the methods'
  serial work. Timed alone here (one import task per CPU, waited for) and printed beside the
  ratio as a per-run cost.
- **the first run on fresh workers**: one Ray run before the timed ones, printed alone (each
  worker's first use of torch and shap, beyond their imports).
- **the method** on warm workers: each method's seconds (``provenance.plan``), data and θ₀
  put into the object store once per map, the function deserialized once per worker. The ratio
  ray / local compares the best of the repeats on each side (the run least disturbed by other
  load); every run's seconds are printed too. Target: <= 1.15.

Every ``execution.map`` call of the local runs is recorded: chunks, each chunk's compute seconds
(measured inside the chunk), and the bytes Ray ships (the pickled function with what it closes
over, sent once; each chunk's argument and result). From those it prints, on paper, the
expected speed-up on 8, 64 and 512 workers and where it stops scaling:

    T(W) = serial + sum over maps of [ bytes_once / bandwidth + LPT(chunk seconds, W)
                                       + chunks x overhead / W ]

with ``serial`` the method's time outside its maps (measured), LPT the longest-processing-time
schedule of the measured chunk times on W workers, ``overhead`` Ray's measured cost per task on
this machine and ``bandwidth`` an assumed 1 GB/s (10 Gbit/s) link for the one copy of the shared
data each node fetches. Speed-up = T(1) / T(W). It stops scaling once W exceeds the number of
chunks of the largest map (no more work to spread) or the serial part dominates.

Run by hand (about 7 minutes on the 2-core machine): ``python benchmarks/scale_ray.py [--repeats 2]
[--methods connection_weights,shap]``.
``benchmarks/scale.py`` can call :func:`main` for its Ray part.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import machine  # noqa: E402

BANDWIDTH = 1e9   # bytes/s assumed between nodes (10 Gbit/s)
WORKERS = (8, 64, 512)


@dataclasses.dataclass
class MapRecord:
    chunks: int
    chunk_seconds: list[float]
    fn_bytes: int
    chunk_bytes: int
    result_bytes: int
    wall: float


class Recorder:
    """Wraps ``audit.execution.map``: times each chunk inside it and sizes what Ray ships."""

    def __init__(self) -> None:
        self.maps: list[MapRecord] = []

    def __enter__(self) -> Recorder:
        from audit import execution

        self._map = execution.map
        recorder = self

        def recorded(fn: Any, chunks: Any, **kw: Any) -> Any:
            from ray import cloudpickle

            chunks = list(chunks)
            try:
                fn_bytes = len(cloudpickle.dumps(fn))
            except Exception:
                fn_bytes = -1
            t0 = time.perf_counter()
            timed = recorder._map(_Timed(fn), chunks, **kw)
            wall = time.perf_counter() - t0
            results = [r for r, _ in timed]
            recorder.maps.append(MapRecord(
                len(chunks), [s for _, s in timed], fn_bytes,
                sum(len(cloudpickle.dumps(c)) for c in chunks),
                sum(len(cloudpickle.dumps(r)) for r in results), wall))
            return results

        execution.map = recorded
        return self

    def __exit__(self, *exc: object) -> None:
        from audit import execution

        execution.map = self._map


class _Timed:
    """``fn`` returning its result and the seconds it took (picklable for Ray)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self, chunk: Any) -> tuple[Any, float]:
        t0 = time.perf_counter()
        out = self.fn(chunk)
        return out, time.perf_counter() - t0


def lpt(seconds: list[float], workers: int) -> float:
    """Makespan of the longest-processing-time-first schedule on ``workers`` workers."""
    loads = [0.0] * min(workers, max(len(seconds), 1))
    heapq.heapify(loads)
    for s in sorted(seconds, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + s)
    return max(loads) if loads else 0.0


def run(plan: Any, backend: str) -> tuple[Any, float, Recorder]:
    from audit import execution
    from audit.runner import run_audit

    plan = dataclasses.replace(plan, execution=execution.ExecutionConfig(backend))
    with Recorder() as rec:
        t0 = time.perf_counter()
        report = run_audit(plan)
        seconds = time.perf_counter() - t0
    return report, seconds, rec


def paper(method: str, total: float, rec: Recorder, overhead: float) -> None:
    """The expected speed-up on W workers from the measured chunks (see the module's formula)."""
    in_maps = sum(m.wall for m in rec.maps)
    serial = max(0.0, total - in_maps)

    def t(workers: int) -> float:
        return serial + sum((0 if workers == 1 else max(m.fn_bytes, 0) / BANDWIDTH)
                            + lpt(m.chunk_seconds, workers) + m.chunks * overhead / workers for m in rec.maps)

    biggest = max((m.chunks for m in rec.maps), default=0)
    print(f"  {method}: {len(rec.maps)} map call(s), {sum(m.chunks for m in rec.maps)} chunks "
          f"(largest map {biggest}), chunk compute {sum(sum(m.chunk_seconds) for m in rec.maps):.1f} s "
          f"(longest chunk {max((max(m.chunk_seconds, default=0) for m in rec.maps), default=0):.2f} s), "
          f"serial outside the maps {serial:.1f} s")
    print(f"    shipped once per map: {sum(max(m.fn_bytes, 0) for m in rec.maps) / 1e6:.2f} MB; per chunk "
          f"arguments {sum(m.chunk_bytes for m in rec.maps) / 1e6:.2f} MB and results "
          f"{sum(m.result_bytes for m in rec.maps) / 1e6:.2f} MB in all")
    base = t(1)
    line = ", ".join(f"{w} workers x{base / t(w):.1f}" for w in WORKERS)
    limit = base / (serial + sum(max(m.chunk_seconds, default=0) for m in rec.maps))
    print(f"    expected speed-up over 1 worker: {line}; ceiling x{limit:.1f} (serial part + the longest "
          f"chunk of each map), reached once workers >= {biggest} (the chunks of the largest map)")


def _warm_up(modules: tuple[str, ...]) -> float:
    """Seconds until every worker (one task per CPU, each held long enough that no worker takes
    two) has imported ``modules``."""
    import ray

    from audit import execution

    @ray.remote(num_cpus=1)
    def load(names: tuple[str, ...]) -> int:
        import importlib
        import os

        for name in names:
            importlib.import_module(name)
        time.sleep(0.5)
        return os.getpid()

    t0 = time.perf_counter()
    pids = ray.get([load.remote(modules) for _ in range(execution.usable_cores())])
    assert len(set(pids)) == len(pids), "two warm-up tasks ran on the same worker"
    return time.perf_counter() - t0 - 0.5  # the sleep is not start-up


def main(repeats: int = 2, methods: tuple[str, ...] = ("connection_weights", "shap")) -> dict[str, Any]:
    import ray

    from audit import execution
    from audit.config import AuditPlan

    print(machine())
    cfg = AuditPlan.load(ROOT / "examples" / "adult_mlp" / "audit.toml")
    plans = {
        "connection_weights (Olden–Jackson, B = 999)": dataclasses.replace(cfg, methods=("connection_weights",),
                                                                          budget=None, gate={}),
        "shap (1,000 rows, DeepLIFT)": dataclasses.replace(cfg, methods=("shap",), budget=None, gate={},
                                                         method_options={"shap": {"n_rows": 1000}}),
    }
    plans = {name: plan for name, plan in plans.items() if plan.methods[0] in methods}
    t0 = time.perf_counter()
    ray.init(num_cpus=execution.usable_cores(), include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    startup = time.perf_counter() - t0
    warm = _warm_up(("torch", "shap", "sklearn.metrics", "audit.methods.connection_weights", "audit.methods.shap"))
    # Ray's cost per task on this machine: 200 empty tasks, after one warm-up round
    with execution.session(execution.ExecutionConfig("ray")):
        execution.map(int, range(8))
        t0 = time.perf_counter()
        execution.map(int, range(200))
        overhead = (time.perf_counter() - t0) / 200 * execution.usable_cores()
    print(f"cluster start: {startup:.1f} s (ray.init of a local instance; once per cluster, not paid with "
          f"an existing one); worker start-up: {warm:.1f} s (each of {execution.usable_cores()} workers "
          f"imports torch, shap, audit-suite; once per run); {overhead * 1e3:.1f} ms of a worker per empty task")
    summary: dict[str, Any] = {"ray_startup_seconds": round(startup, 2), "worker_startup_seconds": round(warm, 2),
                               "task_overhead_seconds": overhead}
    for name, plan in plans.items():
        method = plan.methods[0]
        seconds: dict[str, list[float]] = {"local": [], "ray": []}
        docs: dict[str, str] = {}
        recs: list[Recorder] = []

        def once(backend: str) -> float:
            report, _, rec = run(plan, backend)
            outcome = report.outcome(method)
            doc = json.dumps(outcome.result.to_json(), sort_keys=True, default=str)
            assert docs.setdefault(backend, doc) == doc, f"{method} changed between two {backend} runs"
            if backend == "local":
                recs.append(rec)
            return outcome.seconds

        # the first run on these workers: their first use of torch / shap (beyond the imports)
        first = once("ray")
        for _ in range(repeats):
            for backend in ("local", "ray"):
                seconds[backend].append(once(backend))
        s_local, s_ray = min(seconds["local"]), min(seconds["ray"])
        identical = docs["local"] == docs["ray"]
        print(f"{name}: local {s_local:.1f} s, ray {s_ray:.1f} s (best of {repeats}; every run: local "
              f"{', '.join(f'{x:.1f}' for x in seconds['local'])}; ray {', '.join(f'{x:.1f}' for x in seconds['ray'])}), "
              f"ratio ray / local {s_ray / s_local:.2f} (target <= 1.15); the first run on fresh workers "
              f"took {first:.1f} s (ratio {first / s_local:.2f}; + worker start-up {(first + warm) / s_local:.2f}); "
              f"results identical: {identical}  [{machine()}]")
        best = seconds["local"].index(s_local)
        paper(method, s_local, recs[best], overhead)
        summary[method] = {"local_seconds": round(s_local, 2), "ray_seconds": round(s_ray, 2),
                           "ratio": round(s_ray / s_local, 3), "identical": identical}
    ray.shutdown()
    return summary


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs per backend, alternating (default 2)")
    parser.add_argument("--methods", default="connection_weights,shap",
                        help="comma-separated: connection_weights, shap (default both)")
    args = parser.parse_args()
    main(args.repeats, tuple(args.methods.split(",")))
