"""One execution layer: run independent chunks of work (refits, null draws, feature shards).

A method hands :func:`map` a function and a list of chunks; the local backend runs them on
``n_jobs`` workers (joblib: loky processes for refits, which hold the GIL in scikit-learn's
Python code; threads for calls of an already-loaded model, which need not be picklable).
Results come back in chunk order, so the outcome never depends on the worker count or on which
worker finished first. Randomness belongs to the chunk, never to the worker: a chunk either
carries its random draws or derives its generator with :func:`chunk_rng` from the method's seed
and the chunk's index. A later backend (Ray tasks with the data in the object store) implements
the same :func:`map`.

Examples
--------
>>> map(lambda c: c * c, [1, 2, 3], n_jobs=1)
[1, 4, 9]
>>> int(chunk_rng(np.random.SeedSequence(0), 3).integers(100)) == int(chunk_rng(np.random.SeedSequence(0), 3).integers(100))
True
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import numpy as np

from audit.errors import InvalidConfigError

T = TypeVar("T")
Backend = Literal["processes", "threads"]


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's core count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_n_jobs(n_jobs: int | None) -> int:
    """``None`` means every usable core; an explicit value is capped at the usable cores (more
    local workers than cores only add start-up and contention: 40 workers on 2 cores ran 13x
    slower than 2). Results never depend on the number of workers."""
    if n_jobs is None:
        return usable_cores()
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise InvalidConfigError(f"The 'n_jobs' option must be a positive integer. Got {n_jobs!r} instead.")
    return min(n_jobs, usable_cores())


def chunk_rng(seed: np.random.SeedSequence | int, index: int) -> np.random.Generator:
    """The random generator of chunk ``index``: a function of the seed and the index only."""
    entropy = seed.entropy if isinstance(seed, np.random.SeedSequence) else seed
    key = tuple(seed.spawn_key) if isinstance(seed, np.random.SeedSequence) else ()
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(*key, index)))


def map(fn: Callable[[Any], T], chunks: Sequence[Any], *, n_jobs: int | None = None,  # noqa: A001
        backend: Backend = "processes",
        progress: Callable[[int, int], None] | None = None) -> list[T]:
    """``[fn(c) for c in chunks]``, on ``n_jobs`` workers, in chunk order.

    ``progress(done, total)`` is called in this process as results arrive (in order).
    With one worker (or one chunk) everything runs in this process, with no pickling.
    """
    n = len(chunks)
    jobs = min(resolve_n_jobs(n_jobs), max(n, 1))
    out: list[T] = []
    if jobs == 1:
        for c in chunks:
            out.append(fn(c))
            if progress is not None:
                progress(len(out), n)
        return out
    from joblib import Parallel, delayed

    runner = Parallel(n_jobs=jobs, prefer=backend, return_as="generator")
    for result in runner(delayed(fn)(c) for c in chunks):
        out.append(result)
        if progress is not None:
            progress(len(out), n)
    return out


def split(n: int, parts: int) -> list[range]:
    """``range(n)`` in at most ``parts`` contiguous, nearly equal pieces (none empty)."""
    parts = max(1, min(parts, n))
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return [range(int(a), int(b)) for a, b in builtins.zip(bounds[:-1], bounds[1:]) if b > a]


__all__ = ["chunk_rng", "map", "resolve_n_jobs", "split", "usable_cores"]
