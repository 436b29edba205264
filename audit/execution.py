"""One execution layer: run independent chunks of work (refits, null networks, row shards).

A method hands :func:`map` a function and a list of chunks. Two backends run them:

- ``local`` (the default, embedded): ``n_jobs`` workers of joblib in this machine — loky
  processes for refits, which hold the GIL in scikit-learn's Python code; threads for calls of
  an already-loaded model or of torch, which release it.
- ``ray``: one Ray task per chunk. The function, with the data and the large arrays it closes
  over (θ₀, the training matrix, the model), goes into the object store once per call of
  :func:`map` (``ray.put``) and every task receives it by reference; each worker process
  deserializes it once per call of :func:`map` and keeps it for the chunks it runs next (an
  explainer built on first use is built once per worker, not once per chunk). When a session
  starts, every worker imports the run's heavy libraries (:func:`session`'s ``warm``) while the
  driver does its serial work. A task of a method whose device is CUDA asks for a GPU when the
  cluster has one. Ray retries a task whose worker died;
  a task that fails for good raises :class:`ChunkFailed` (the method is marked failed, the
  report is still written).

:func:`map_parquet` is Ray Data's part: Parquet files read on the workers, a function run on
the rows where they were read, only its results sent back, in file and row order.

Results come back in chunk order, so the outcome never depends on the backend, the worker
count or which worker finished first. Randomness and chunking belong to the work, never to the
worker: a chunk either carries its random draws or derives its generator with
:func:`chunk_rng` from the method's seed and the chunk's index, and a method cuts its work with
:func:`split_by` into chunks of a size that does not depend on the number of workers.

The backend is chosen for a whole run with :func:`session` (the runner opens one from
``[execution]`` in the config or ``--backend``/``--ray-address``).

Examples
--------
>>> map(lambda c: c * c, [1, 2, 3], n_jobs=1)
[1, 4, 9]
>>> int(chunk_rng(np.random.SeedSequence(0), 3).integers(100)) == int(chunk_rng(np.random.SeedSequence(0), 3).integers(100))
True
>>> [list(r) for r in split_by(5, 2)]
[[0, 1], [2, 3], [4]]
"""

from __future__ import annotations

import builtins
import functools
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from audit.errors import InvalidConfigError, MissingDependencyError

T = TypeVar("T")
Prefer = Literal["processes", "threads"]
BACKENDS = ("local", "ray")
# A task whose worker process died (killed, out of memory, node lost) is run again this often.
RAY_MAX_RETRIES = 3
RAY_INSTALL = "pip install 'audit-suite[ray]'"
#: Ray Data's largest block (bytes): the most rows a worker holds at once while reading, about
#: the local path's batch. Ray's default is 128 MiB.
RAY_DATA_BLOCK_BYTES = 64 << 20
#: What one Ray Data read may hold in the object store: only small results travel, so little.
RAY_DATA_OBJECT_STORE_BYTES = 512 << 20


class ChunkFailed(RuntimeError):
    """A chunk of a method's work failed for good (its error, or its worker died on every try).
    ``cause``: the task's own exception, when it raised one (a caller whose chunks check the
    inputs re-raises an :class:`~audit.errors.AuditError` there as the local run would)."""

    cause: BaseException | None = None


@dataclass(frozen=True)
class ExecutionConfig:
    """``[execution]``: which backend runs the methods' chunks.

    ``address`` (Ray only): ``"auto"`` (the one Ray instance running on this machine; refused
    when there are several), ``"host:port"`` (a cluster's GCS address, from a machine of the
    cluster) or ``"ray://host:port"`` (a cluster's Ray Client server). Without one a local Ray
    instance is started on this machine's usable cores and shut down when the run ends.
    """

    backend: str = "local"
    address: str | None = None
    #: the address was read from a config file (not given in code or on the command line): an
    #: untrusted config may not choose where the audit's data and model go (:meth:`check_untrusted`)
    from_config: bool = field(default=False, compare=False)

    def check_untrusted(self) -> None:
        """Under ``--untrusted-config`` the config may not name a Ray cluster: its address would
        send the audit's data and model to a machine the config's author chose. Refused (exit 2)
        unless the command line names the cluster itself (``--ray-address``)."""
        if self.address is not None and self.from_config:
            raise InvalidConfigError(
                f"The config's [execution] address {self.address!r} names a Ray cluster, and "
                "--untrusted-config does not let a config choose where the audit's data and model are "
                "sent. Name the cluster on the command line if you trust it (--ray-address "
                f"{self.address}), or remove the address (--backend ray alone starts a Ray instance "
                "on this machine).")

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InvalidConfigError(f"The [execution] 'backend' must be one of {list(BACKENDS)}. "
                                     f"Got {self.backend!r} instead.")
        if self.address is None:
            return
        if self.backend != "ray":
            raise InvalidConfigError(f"The [execution] 'address' {self.address!r} needs backend = \"ray\" "
                                     "(--backend ray); the local backend uses this machine only.")
        if self.address != "auto":
            _check_ray_address(self.address)


def _check_ray_address(address: str) -> None:
    """``ray://host:port`` or ``host:port`` with a host and a port in 1-65535, checked before Ray
    waits ~30 s for a cluster that cannot be there."""
    from urllib.parse import urlsplit

    shape = (f"The [execution] 'address' must be \"auto\", \"host:port\" or \"ray://host:port\". "
             f"Got {address!r} instead")
    try:
        parts = urlsplit(address if "://" in address else f"gcs://{address}")
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # an unclosed IPv6 bracket, a port that is not a number or > 65535
        raise InvalidConfigError(f"{shape} ({exc}).") from None
    if (parts.scheme not in ("ray", "gcs") or not host or port is None or parts.path or parts.query
            or parts.fragment):
        raise InvalidConfigError(f"{shape}.")
    if not 1 <= port <= 65535:
        raise InvalidConfigError(f"{shape}: a port is 1-65535 (the Ray Client server listens on 10001 by default).")


@dataclass
class Cluster:
    """Where a run's chunks ran: recorded in the report's provenance."""

    backend: str
    address: str | None = None
    cpus: float = 0.0
    gpus: float = 0.0
    nodes: int = 1
    ran_locally: list[str] = field(default_factory=list)  # maps Ray could not take, and why
    messages: list[str] = field(default_factory=list)  # what Ray logged while connecting

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "address": self.address, "cpus": self.cpus, "gpus": self.gpus,
                "nodes": self.nodes, "ran_locally": list(self.ran_locally), "messages": list(self.messages)}


_LOCAL = Cluster("local")
_active: Cluster = _LOCAL
_TALLIES: dict[str, Tally] = {}  # this process's tallies, by key


class Tally:
    """Counts that add up across workers (e.g. the model rows a method evaluated).

    A copy sent to a Ray worker starts at zero; what a chunk adds there comes back with the
    chunk's result and is added to the original, so the counts do not depend on the backend.

    Examples
    --------
    >>> t = Tally(); t.add(rows=3); t.add(rows=2, calls=1); t.counts["rows"]
    5
    """

    def __init__(self) -> None:
        import threading
        import uuid

        self.key = uuid.uuid4().hex
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._origin = True
        _TALLIES[self.key] = self

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                self.counts[name] = self.counts.get(name, 0) + n

    def close(self) -> None:
        _TALLIES.pop(self.key, None)

    def __getstate__(self) -> dict[str, Any]:
        return {"key": self.key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        import threading

        self.key, self.counts, self._lock, self._origin = state["key"], {}, threading.Lock(), False
        if not getattr(_TALLIES.get(self.key), "_origin", False):  # never replace the original
            _TALLIES[self.key] = self


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


_BY_VALUE: set[str] = set()  # modules that exist only in this process (a config's model.py)


def ship_by_value(module: str) -> None:
    """Send ``module``'s code along with what a Ray task needs from it: it was imported from a
    file under a name that Ray workers cannot import (the config's ``model.py``)."""
    _BY_VALUE.add(module)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            f"The Ray backend needs the 'ray' package, which is not installed. Install it with "
            f"{RAY_INSTALL} (or choose backend = \"local\").") from None
    return ray


def active() -> Cluster:
    """The backend the chunks of the running audit go to."""
    return _active


@contextmanager
def session(config: ExecutionConfig | None = None, *, warm: Sequence[str] = ()) -> Iterator[Cluster]:
    """Run every :func:`map` inside on ``config``'s backend.

    For Ray: connect to ``config.address``, to the Ray instance this process already has, or
    start a local one (``num_cpus`` = the usable cores, no dashboard). Only a Ray instance this
    session started is shut down when it ends; a cluster it connected to keeps running.
    ``warm`` names modules (e.g. ``"torch"``, ``"shap"``) that every worker imports as soon as
    the session starts, in one task per CPU that nobody waits for: a worker's first chunk then
    does not pay the imports (torch and shap took 2-4 s per worker here).
    """
    global _active
    config = config or ExecutionConfig()
    if config.backend == "local":
        torch = sys.modules.get("torch")  # counted only where the run already uses torch
        gpus = torch.cuda.device_count() if torch is not None and torch.cuda.is_available() else 0
        cluster = Cluster("local", cpus=float(usable_cores()), gpus=float(gpus))
        previous, _active = _active, cluster
        try:
            yield cluster
        finally:
            _active = previous
        return
    ray = _import_ray()
    started = False
    said: list[str] = []
    address = config.address
    if not ray.is_initialized():
        if address == "auto":
            address = _auto_address()
        _check_reachable(address, said)
        try:
            with _ray_messages(said), _signal_handlers_kept(ray):
                _init_ray(ray, address)
        except (KeyboardInterrupt, SystemExit):  # interrupted while Ray started: stop what it started
            ray.shutdown()
            raise
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidConfigError(
                f"Could not connect to {where} ({first}). Check [execution] address / --ray-address "
                "(\"auto\" needs `ray start --head` on this machine; a remote cluster "
                "\"ray://host:port\" needs its client server port, 10001 by default).") from None
        started = True
    try:
        res = ray.cluster_resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        cluster = Cluster("ray", address, float(res.get("CPU", 0.0)), float(res.get("GPU", 0.0)),
                          max(nodes, 1), messages=said)
        if cluster.cpus < 1:  # every task asks for a CPU: it would wait for one without end
            raise InvalidConfigError(
                f"The Ray cluster{f' at {address!r}' if address else ''} has no CPU (its resources list "
                f"{res.get('CPU', 0):g} CPUs, {nodes} live node(s)), so no task of the audit could start. Add worker nodes with CPUs (ray status shows "
                "them), use another cluster (--ray-address), or run without Ray (--backend local).")
        if not (started and address is None):  # workers this session started run its own code
            _check_same_code(ray)
        if warm:
            _warm_workers(ray, tuple(warm), int(cluster.cpus))
        previous, _active = _active, cluster
        try:
            with _raylet_notices(said):
                yield cluster
        finally:
            _active = previous
            if previous.backend == "ray":  # a session inside another (audit compare's two audits):
                previous.ran_locally.extend(cluster.ran_locally)  # the outer record covers both
                previous.messages.extend(m for m in cluster.messages if m not in previous.messages)
    finally:
        if started:
            ray.shutdown()


#: How long the session waits for a cluster's GCS (``host:port``) to answer before it gives up.
RAY_CONNECT_SECONDS = 30.0


def _check_reachable(address: str | None, said: list[str]) -> None:
    """A GCS address (``host:port``) that does not answer is an error (exit 2) within about
    :data:`RAY_CONNECT_SECONDS` (plus Ray's own 10 s of connection attempts): ``ray.init``
    retries it for many minutes (411 s for a closed port, without end for a host that accepts
    and never answers). Ray Client addresses (``ray://``) give up by themselves after ~30 s.
    What Ray's C++ client logs meanwhile goes to ``said`` (the provenance), not the terminal."""
    target = os.environ.get("RAY_ADDRESS", "").strip() if address == "auto" else address
    if not target or target in ("auto", "local") or "://" in target:
        return
    try:
        from ray._raylet import InnerGcsClient
    except ImportError:  # another Ray: ray.init's own wait applies
        return
    with _stderr_into(said):
        try:
            InnerGcsClient.standalone(target, None, int(RAY_CONNECT_SECONDS * 1000))
        except Exception as exc:
            from ray.exceptions import AuthenticationError

            if isinstance(exc, AuthenticationError):  # it answered: and refused this process's token
                raise InvalidConfigError(
                    f"The Ray cluster at {target!r} refused the connection: it uses token "
                    f"authentication and this process gave no token or another one ({exc.message.rstrip('.')}). "
                    "Give it the cluster's token: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<token> in the "
                    "environment (or the token in a file named by RAY_AUTH_TOKEN_PATH, by default "
                    "~/.ray/auth_token); `ray get-auth-token` on the cluster's head node prints it. "
                    "Or run without Ray (--backend local).") from None
            first = (str(exc).strip().splitlines() or [""])[0].rstrip(".")
            raise InvalidConfigError(
                f"The Ray cluster at {target!r} could not be reached: it did not answer ({type(exc).__name__}: "
                f"{first}). Check [execution] address / "
                "--ray-address: \"host:port\" is the GCS address that `ray start --head` prints (port "
                "6379 by default), reachable from this machine; a remote cluster is usually reached "
                "through its client server, \"ray://host:10001\". Or run without Ray (--backend local).") from None


@contextmanager
def _stderr_into(said: list[str]) -> Iterator[None]:
    """File descriptor 2 (where Ray's C++ code logs) into ``said`` while the block runs."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said.extend(line for line in sink.read().decode(errors="replace").splitlines() if line.strip())


#: At most this many of Ray's notices about the cluster (e.g. "A worker died") are recorded.
MAX_NOTICES = 20


@contextmanager
def _raylet_notices(said: list[str]) -> Iterator[None]:
    """Ray prints the cluster's error notices ("(raylet) A worker died or was killed ...", with
    colour codes) to stdout from a thread of its own, whatever ``log_to_driver`` says: while the
    session runs they go to ``said`` (the provenance's messages) instead, each once."""
    import ray._private.worker as ray_worker

    original = ray_worker.print_to_stdstream

    def keep(data: dict[str, Any], ignore_prefix: bool = False) -> None:
        for line in data.get("lines", []):
            text = f"({data.get('pid', 'ray')}) {str(line).strip()}"
            if text not in said and len(said) < MAX_NOTICES:
                said.append(text)

    ray_worker.print_to_stdstream = keep
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = original


def resolve_device(device: str, method: str) -> str:
    """The torch device a method's ``device`` option names, checked against where its chunks run.

    ``"auto"`` is ``"cuda"`` when the active backend has a GPU (this machine's CUDA, or GPUs in
    the Ray cluster), else ``"cpu"``. ``"cuda"`` (or ``"cuda:N"``) without one is an
    :class:`~audit.errors.InvalidConfigError` (exit 2). A Ray task of a CUDA method asks for one
    GPU (:func:`map`'s ``gpus``), so the driver itself needs none.

    Examples
    --------
    >>> resolve_device("cpu", "connection_weights")
    'cpu'
    """
    if device == "cpu":
        return device
    if _active.backend == "ray":  # the chunks run on the cluster's workers, not here
        gpus = _active.gpus > 0
    else:
        import torch

        gpus = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if gpus else "cpu"
    if not gpus:
        where = ("the Ray cluster has no GPU" if _active.backend == "ray" else
                 "no CUDA device is available to torch on this machine")
        raise InvalidConfigError(
            f"The 'device' option of {method} is {device!r} but {where}. Set device = \"cpu\" "
            "(or \"auto\": a GPU when there is one), or run where a GPU is.")
    return device


#: What every worker of a Ray instance this package starts or connects to runs first.
RAY_RUNTIME_ENV = {"worker_process_setup_hook": "audit.execution._without_fsspec_http"}


@contextmanager
def _signal_handlers_kept(ray: Any) -> Iterator[None]:
    """Keep this process's SIGTERM and SIGINT handlers through ``ray.init``.

    ``ray.init`` installs a SIGTERM handler of its own (``sys.exit(15)``, which Ray's blocking
    calls turn into ``SystemExit(1)``: `audit check` read "a threshold is breached") and Ray's
    C++ core a crash handler that prints a stack dump ("*** SIGTERM received ... PC: @") on
    SIGTERM. What a signal does is the caller's choice (the CLI's: an interrupted run, README
    "Using it"): Ray's handler is never installed, and the process's handlers are put back at
    the OS level once ``ray.init`` returns, which removes the C++ one.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # only there can handlers change
        yield
        return
    kept = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    utils = ray._private.utils
    original = utils.set_sigterm_handler
    utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        utils.set_sigterm_handler = original
        for signum, handler in kept.items():
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(signum, handler)


def _init_ray(ray: Any, address: str | None) -> None:
    if address is None:
        ray.init(address="local", num_cpus=usable_cores(), include_dashboard=False, runtime_env=RAY_RUNTIME_ENV,
                 log_to_driver=False, logging_level="ERROR", configure_logging=False)
    else:
        ray.init(address=address, runtime_env=RAY_RUNTIME_ENV, log_to_driver=False, logging_level="ERROR",
                 configure_logging=False)


def _auto_address() -> str:
    """What ``address = "auto"`` means: the one Ray instance running on this machine. Ray's own
    "auto" connects to the newest of several (whoever started it, whatever code its workers
    run), so several are refused, listed, for the user to name one. ``RAY_ADDRESS`` set in the
    environment is an explicit choice: Ray reads it."""
    if os.environ.get("RAY_ADDRESS"):
        return "auto"
    from ray._private import services

    found = sorted(services.find_gcs_addresses())  # the --gcs-address of this machine's raylets
    if len(found) > 1:
        raise InvalidConfigError(
            f"[execution] address = \"auto\" (--ray-address auto) found {len(found)} Ray instances on this "
            f"machine: {', '.join(found)}. Name the one to use, e.g. --ray-address {found[0]} "
            "(or [execution] address), instead of connecting to whichever started last.")
    return found[0] if found else "auto"  # none: Ray's own error says so


@functools.cache
def code_fingerprint() -> tuple[str, str, str]:
    """This process's audit-suite: the SHA-256 of its package's source files (paths and bytes),
    its folder and its version. Computed once per process.

    Examples
    --------
    >>> len(code_fingerprint()[0])
    64
    """
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        digest.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    try:
        release = version("audit-suite")
    except PackageNotFoundError:
        release = "not installed"
    return digest.hexdigest(), str(root), release


def _worker_code() -> tuple[str, str, str]:
    """A Ray task: the worker's :func:`code_fingerprint`."""
    return code_fingerprint()


#: How long the session waits for each node's worker to report its code (a worker's start-up).
CODE_CHECK_SECONDS = 300.0


def _check_same_code(ray: Any) -> None:
    """Refuse (exit 2) a cluster whose workers import other audit-suite code than this driver:
    a worker of another checkout computed different counts, which then failed to merge. One task
    per live node, asking for no CPU (it is not queued behind busy workers)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(_worker_code)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    refs = [task.options(num_cpus=0, max_retries=0,
                         scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote() for n in nodes]
    mine = code_fingerprint()
    try:
        theirs = ray.get(refs, timeout=CODE_CHECK_SECONDS)
    except ray.exceptions.GetTimeoutError:
        raise InvalidConfigError(f"The Ray cluster's workers did not start within {CODE_CHECK_SECONDS:.0f} s "
                                 "to report which audit-suite they run; check the cluster (ray status).") from None
    except ray.exceptions.RayError as exc:
        raise InvalidConfigError(
            f"The Ray cluster's workers cannot run audit-suite ({_ray_reason(exc)}). Install this audit-suite "
            f"({mine[2]}, {mine[1]}) on every node, or use another cluster (--ray-address).") from None
    for node, (code, where, release) in zip(nodes, theirs, strict=True):
        if code != mine[0]:
            raise InvalidConfigError(
                f"The Ray cluster's workers run other audit-suite code than this command: node {node[:12]} "
                f"imports audit-suite {release} from {where}, this command {mine[2]} from {mine[1]} (their "
                "source files differ). Their results would not be this version's: use a cluster that runs "
                "this code (without --ray-address, --backend ray starts one), or install the same version there.")


@contextmanager
def _ray_messages(into: list[str], name: str = "ray") -> Iterator[None]:
    """Ray's own log records (e.g. its token-authentication notice) go into ``into`` (the
    report's provenance), not to the terminal. The collecting handler sits on the root logger
    and the loggers from ``name`` up let records through to it, their console handlers set
    aside meanwhile: ``ray.init(configure_logging=False)`` clears the ``ray`` logger's handlers
    before it warns, so a handler there is gone when the notice comes (and Python's last-resort
    handler printed it to stderr). Ray Data (``name="ray.data"``) prints through its own console
    handler, set aside the same way (its log file in the Ray session's folder keeps everything)."""
    import logging

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == "ray" or record.name.startswith("ray."):
                into.append(record.getMessage())

    chain = [logging.getLogger(".".join(name.split(".")[:i])) for i in range(name.count(".") + 1, 0, -1)]
    saved = [(lg, lg.propagate, [h for h in lg.handlers if isinstance(h, logging.StreamHandler)
                                 and not isinstance(h, logging.FileHandler)]) for lg in chain]
    for lg, _, console in saved:
        for h in console:
            lg.removeHandler(h)
        lg.propagate = True
    root, handler = logging.getLogger(), Keep(logging.WARNING)
    root.addHandler(handler)
    try:
        # its Python warnings too (e.g. "Ray Client connection timed out"): the error says it
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                into.extend(str(w.message) for w in caught)
    finally:
        root.removeHandler(handler)
        for lg, propagate, console in saved:
            lg.propagate = propagate
            for h in console:
                if h not in lg.handlers:
                    lg.addHandler(h)


def map(fn: Callable[[Any], T], chunks: Sequence[Any], *, n_jobs: int | None = None,  # noqa: A001
        prefer: Prefer = "processes", gpus: float = 0.0,
        progress: Callable[[int, int], None] | None = None) -> list[T]:
    """``[fn(c) for c in chunks]`` on the active backend, in chunk order.

    Locally: ``n_jobs`` workers (``prefer`` processes or threads); with one worker (or one
    chunk) everything runs in this process, with no pickling. On Ray: one task per chunk,
    ``fn`` (and what it closes over) in the object store once, ``gpus`` GPUs per task when the
    cluster has any; ``n_jobs`` does not apply (the cluster schedules). ``progress(done,
    total)`` is called in this process as chunks complete.
    """
    chunks = list(chunks)
    if _active.backend == "ray" and chunks:
        out = _ray_map(fn, chunks, gpus, progress)
        if out is not None:
            return out
        prefer = "threads"  # what Ray could not pickle, local worker processes could not either
    n = len(chunks)
    jobs = min(resolve_n_jobs(n_jobs), max(n, 1))
    results: list[T] = []
    if jobs == 1:
        for c in chunks:
            results.append(fn(c))
            if progress is not None:
                progress(len(results), n)
        return results
    from joblib import Parallel, delayed

    runner = Parallel(n_jobs=jobs, prefer=prefer, return_as="generator")
    for result in runner(delayed(fn)(c) for c in chunks):
        results.append(result)
        if progress is not None:
            progress(len(results), n)
    return results


def _import_all(modules: tuple[str, ...]) -> None:
    """A warm-up task: import ``modules`` in this worker (one that is missing is left out)."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _warm_workers(ray: Any, modules: tuple[str, ...], cpus: int) -> None:
    """One fire-and-forget task per CPU (at most 1,024) importing ``modules``."""
    task = ray.remote(_import_all).options(num_cpus=1, max_retries=0)
    for _ in range(max(1, min(cpus, 1024))):
        task.remote(modules)


# In a Ray worker: the function of the map call it last ran a chunk of, by its object's id.
_WORKER_FN: dict[str, Any] = {}


def _worker_fn(boxed: list[Any]) -> Callable[[Any], Any]:
    """The map's function, deserialized once per worker and map call (the reference comes in a
    list so that Ray hands the task the reference, not a fresh copy of the object)."""
    ref = boxed[0]
    key = ref.hex()
    fn = _WORKER_FN.get(key)
    if fn is None:
        import ray

        _WORKER_FN.clear()  # one map call's function at a time: the last one
        fn = _WORKER_FN[key] = ray.get(ref)
    return fn


def _run_chunk(boxed: list[Any], chunk: Any) -> tuple[Any, dict[str, dict[str, int]]]:
    """One Ray task: the chunk's result and what it added to the tallies it carried."""
    fn = _worker_fn(boxed)
    before = {k: dict(t.counts) for k, t in _TALLIES.items()}
    out = fn(chunk)
    added = {k: {c: n - before.get(k, {}).get(c, 0) for c, n in t.counts.items()} for k, t in _TALLIES.items()}
    return out, {k: v for k, v in added.items() if any(v.values())}


def _ray_map(fn: Callable[[Any], T], chunks: list[Any], gpus: float,
             progress: Callable[[int, int], None] | None) -> list[T] | None:
    """The Ray backend of :func:`map`; None when ``fn`` cannot be shipped (then it runs locally,
    and the provenance says so)."""
    ray = _import_ray()
    from ray import cloudpickle

    for name in _BY_VALUE:
        if name in sys.modules:
            cloudpickle.register_pickle_by_value(sys.modules[name])
    try:
        fn_ref = ray.put(fn)  # once: every task gets the same reference
    except Exception as exc:  # e.g. a model holding an unpicklable native session
        name = getattr(fn, "__qualname__", type(fn).__name__)
        _active.ran_locally.append(f"{name}: it cannot be sent to Ray workers ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''})")
        return None
    task = ray.remote(_run_chunk).options(**task_options(gpus))
    refs = [task.remote([fn_ref], c) for c in chunks]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(refs)
    pending = list(refs)
    done = 0
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                i = index[ref]
                try:
                    results[i], added = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    failed = ChunkFailed(f"chunk {i + 1} of {len(refs)} failed on the Ray cluster: "
                                         f"{_ray_reason(exc)}")
                    failed.cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else None
                    raise failed from None
                for key, counts in added.items():
                    if key in _TALLIES:
                        _TALLIES[key].add(**counts)
                done += 1
                if progress is not None:
                    progress(done, len(refs))
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return results


def map_parquet(fn: Callable[[Any, str], T], files: Sequence[str], *, columns: Sequence[str]
                ) -> Iterator[tuple[int, int, T | None]]:
    """Ray Data: read the Parquet ``files`` on the cluster's workers (only ``columns``, no
    partition columns: the caller derives those from the paths) and run ``fn(rows, file)`` on the
    worker that read them, for each block's rows of each file (a ``pyarrow.Table``); yield
    ``(file index, rows, fn's result)`` in file order and row order, as the results arrive.

    The read and ``fn`` run in one task (Ray Data fuses ``ReadFiles->MapBatches``: its stats name
    the fused operator ``ReadFilesParquetV2->MapBatches(...)``, ``tests/test_ray.py``), so the rows
    never leave the worker that read them; only ``fn``'s results do. A block holds at most
    :data:`RAY_DATA_BLOCK_BYTES` of rows and may span files (each file's rows go to ``fn``
    separately). When ``fn`` raises an :class:`~audit.errors.AuditError` (the data is bad) the
    result is None and that block's later rows are not read: the caller re-reads that file
    itself to say exactly what is wrong. Ray Data's logs and progress bars stay off the
    terminal (its warnings go to the provenance's messages).
    """
    import pickle

    _import_ray_data()  # first: importing it sets up its logging, which _ray_messages sets aside
    # Ray Data's warnings are about its own settings (progress bars off, deprecated options it
    # copies): they stay in its log file in the Ray session's folder, not in the provenance.
    with _ray_messages([], "ray.data"):
        dataset = _parquet_dataset(fn, files, columns)
        for records in dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=1):
            for i, rows, ok, result in zip(*(records.column(c).to_pylist() for c in ("file", "rows", "ok", "result")),
                                           strict=True):
                yield i, rows, pickle.loads(result) if ok else None  # our workers' own results


def _parquet_dataset(fn: Callable[[Any, str], Any], files: Sequence[str], columns: Sequence[str]) -> Any:
    """The Ray Data pipeline of :func:`map_parquet`: read (only ``columns`` and each row's file),
    then ``fn`` per file in each block (batch_size None: the whole block, which lets Ray Data
    fuse the map into the read task; a batch size would re-bundle blocks and ship them)."""
    ray = _import_ray_data()
    _without_fsspec_http()
    files = [str(f) for f in files]
    index = {os.path.normpath(f): i for i, f in enumerate(files)}
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.target_max_block_size, ctx.execution_options)
    try:  # a Dataset keeps a copy of the context it was made under
        ctx.enable_progress_bars = False
        ctx.target_max_block_size = RAY_DATA_BLOCK_BYTES
        options = ctx.execution_options = ray.data.ExecutionOptions()
        options.preserve_order = True  # blocks in file and row order, whoever finishes first
        options.resource_limits = options.resource_limits.copy(object_store_memory=RAY_DATA_OBJECT_STORE_BYTES)
        # Ray Data retries a task whose worker died without end (max_retries -1): one that dies on
        # every try would hang the run. The same cap as map's tasks, on both operators (equal
        # remote args: Ray Data still fuses them); then the read fails and the caller counts here.
        retries = {"max_retries": RAY_MAX_RETRIES}
        # every file named, none filtered by extension; partition folders are the caller's to read
        return (ray.data.read_parquet(files, partitioning=None, include_paths=True, file_extensions=None,
                                      ray_remote_args=retries)
                .select_columns([*columns, "path"])
                .map_batches(_BlockResults(fn, files, index), batch_size=None, batch_format="pyarrow",
                             zero_copy_batch=True, **retries))
    finally:
        ctx.enable_progress_bars, ctx.target_max_block_size, ctx.execution_options = saved


def _import_ray_data() -> Any:
    ray = _import_ray()
    try:
        import ray.data
    except ImportError:
        raise MissingDependencyError(
            f"Reading Parquet files on Ray needs Ray Data ('ray[data]'), which is not installed. "
            f"Install it with {RAY_INSTALL} (or choose backend = \"local\").") from None
    return ray


def _without_fsspec_http() -> None:
    """Ray Data lists files in threads (on the driver, and in its ListFiles task on a worker),
    each asking whether fsspec's HTTP file system (which needs aiohttp, not a dependency of
    ray[data]) is importable; two threads importing it at once made one fail with ImportError
    instead of the ModuleNotFoundError Ray expects, and the read failed (3 runs in 4 with 7 files).
    When it cannot be imported, say so once for this process (None in sys.modules: every later
    import raises ModuleNotFoundError at once). Run here before a read, and on every worker as it
    starts (:data:`RAY_RUNTIME_ENV`)."""
    name = "fsspec.implementations.http"
    if name in sys.modules:
        return
    try:
        import importlib

        importlib.import_module(name)
    except ImportError:
        sys.modules[name] = None  # type: ignore[assignment]


class _BlockResults:
    """A Ray Data block -> one record per file in it: the file's index, its rows, and ``fn``'s
    result for them (pickled), or ``ok`` false when ``fn`` found the data bad. ``fn`` gets the
    file as the caller named it (Ray Data's ``path`` column may spell it otherwise)."""

    def __init__(self, fn: Callable[[Any, str], Any], files: list[str], index: dict[str, int]) -> None:
        self.fn, self.files, self.index = fn, files, index

    def __call__(self, block: Any) -> Any:
        import pickle

        import pyarrow as pa
        import pyarrow.compute as pc

        from audit.errors import AuditError

        paths = pc.dictionary_encode(block.column("path")).combine_chunks()
        codes = paths.indices.to_numpy(zero_copy_only=False)
        starts = [0, *(np.flatnonzero(np.diff(codes)) + 1).tolist()]
        stops = [*starts[1:], block.num_rows] if block.num_rows else []
        rows = block.drop_columns(["path"])
        out: dict[str, list[Any]] = {"file": [], "rows": [], "ok": [], "result": []}
        for start, stop in zip(starts, stops, strict=False):
            i = self.index[os.path.normpath(paths.dictionary[codes[start]].as_py())]
            try:
                result, ok = pickle.dumps(self.fn(rows.slice(start, stop - start), self.files[i])), True
            except AuditError:
                result, ok = b"", False
            out["file"].append(i)
            out["rows"].append(stop - start)
            out["ok"].append(ok)
            out["result"].append(result)
            if not ok:
                break
        return pa.table({"file": pa.array(out["file"], pa.int64()), "rows": pa.array(out["rows"], pa.int64()),
                         "ok": pa.array(out["ok"], pa.bool_()), "result": pa.array(out["result"], pa.binary())})


def task_options(gpus: float) -> dict[str, Any]:
    """The resources each Ray task of a :func:`map` asks for: one CPU, and ``gpus`` GPUs when
    the cluster has any (a method on a CUDA device asks for 1), with Ray's retries.

    Examples
    --------
    >>> task_options(0.0)
    {'num_cpus': 1, 'num_gpus': 0, 'max_retries': 3}
    """
    return {"num_cpus": 1, "num_gpus": gpus if _active.gpus > 0 else 0, "max_retries": RAY_MAX_RETRIES}


def _ray_reason(exc: BaseException) -> str:
    """The failure in one line: the task's own exception, or why its worker was lost."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}".rstrip(": ")
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''} (after {RAY_MAX_RETRIES} retries)"


def split(n: int, parts: int) -> list[range]:
    """``range(n)`` in at most ``parts`` contiguous, nearly equal pieces (none empty)."""
    parts = max(1, min(parts, n))
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return [range(int(a), int(b)) for a, b in builtins.zip(bounds[:-1], bounds[1:]) if b > a]


def split_by(n: int, size: int) -> list[range]:
    """``range(n)`` in contiguous pieces of ``size`` (the last may be shorter): chunks whose
    boundaries depend on the work alone, never on the number of workers."""
    size = max(1, int(size))
    return [range(a, min(n, a + size)) for a in range(0, n, size)]


__all__ = ["BACKENDS", "ChunkFailed", "Cluster", "ExecutionConfig", "Tally", "active", "chunk_rng", "code_fingerprint", "map",
           "map_parquet", "resolve_device", "resolve_n_jobs", "session", "ship_by_value", "split", "split_by", "task_options",
           "usable_cores"]
