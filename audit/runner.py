"""run_audit(): load, validate, run every method in order, collect findings and provenance."""

from __future__ import annotations

import sys
import time
import traceback
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from audit.config import AuditPlan, check_seed
from audit.core.cost import (Lowered, Plan, UnitCosts, fit_budget, format_budget, format_seconds, measure_refit,
                             measure_unit_costs, render_seconds, seconds)
from audit.core.adapter import ModelAdapter, check_width
from audit.core.loading import check_trust_flags, load_model
from audit.core.dataset import AuditData, Encoding, build_audit_data, read_table, text_columns
from audit.core.limits import memory_limit
from audit.core.method import AuditMethod, Finding, MethodResult, Progress, RunContext, Skipped
from audit.core.text import escape_warnings
from audit.errors import AuditError, DataValidationError, InvalidConfigError, did_you_mean
from audit.registry import METHODS, get_method, method_names
from audit.report.card import check_card
from audit.report.model import AuditReport, MethodOutcome, file_record, provenance
from audit.report.predictions import predictions_frame

# Called as (method name, method title) and returns the method's progress callback. A callback
# with a ``finished(seconds)`` attribute is told when the step ends, with the seconds the runner
# measured (those of provenance.plan): one clock per method, on the terminal and in the report.
ProgressFactory = Callable[[str, str], Progress]


def _finished(progress: Any, seconds: float) -> None:
    """Tell a progress callback that can hear it (:data:`ProgressFactory`) that its step ended."""
    finished = getattr(progress, "finished", None)
    if finished is not None:
        finished(seconds)


@dataclass(frozen=True)
class PlannedMethod:
    """One line of the run's plan: what the method will do and what that should cost."""

    name: str
    plan: Plan | None          # None: the method will be skipped
    estimate: float            # seconds
    skip_reason: str | None = None

    def line(self) -> str:
        if self.plan is None:
            return f"{self.name}: skipped ({self.skip_reason})"
        return f"{self.name}: {self.plan.description}, {format_seconds(self.estimate)}"


@dataclass(frozen=True)
class RunPlan:
    """The plan printed before any work: per method, the budget and what was lowered to fit it."""

    methods: tuple[PlannedMethod, ...]
    costs: UnitCosts
    budget: float | None
    lowered: tuple[Lowered, ...]
    # methods left out of a default audit: name -> estimated seconds at their smallest sample sizes
    # (recorded in provenance.plan; the reason the report gives, over_budget_reason, holds no time)
    over_budget: Mapping[str, float] = field(default_factory=dict)
    # Seconds of the budget not spent in methods: loading and measuring (already spent when
    # the plan is made) and writing the report (estimated, audit.core.cost.render_seconds).
    spent: float = 0.0
    writing: float = 0.0

    @property
    def total(self) -> float:
        return self.spent + sum(m.estimate for m in self.methods) + self.writing

    def lines(self) -> list[str]:
        budget = "none (--full)" if self.budget is None else format_budget(self.budget)
        overhead = ([f"  loading and measuring: {format_seconds(self.spent)} (spent)"] if self.spent else []) + \
            ([f"  writing the report: {format_seconds(self.writing)}"] if self.writing else [])
        return ([f"plan (budget {budget}, estimated total {format_seconds(self.total)}):"]
                + overhead + [f"  {m.line()}" + (f", estimated {format_seconds(self.over_budget[m.name])} at its "
                                                 "smallest sample sizes" if m.name in self.over_budget else "")
                              for m in self.methods]
                + [f"  lowered: {x.text()}" for x in self.lowered])


@dataclass(frozen=True)
class LoadedInputs:
    model: ModelAdapter
    data: AuditData
    train: AuditData | None
    files: list[dict[str, Any]]
    notes: list[str]


def method_seed(seed: int, name: str) -> np.random.SeedSequence:
    """Each method's own random stream: stable whichever other methods run."""
    return np.random.SeedSequence([seed, zlib.crc32(name.encode())])


#: Said whenever a model file meets inputs encoded from the audited rows themselves.
ENCODING_FITTED_NOTE = (
    "No [model] encoding was given, so the model's inputs were encoded from the audited rows: numeric "
    "columns standardized with these rows' mean and standard deviation, categories one-hot. A model "
    "trained on other inputs (raw values, or another scaling) is audited on inputs it never saw, and "
    "every number here describes that. Give the encoding used in training ([model] encoding), or "
    "raw_input = true for a model that takes the raw table.")


def load_inputs(plan: AuditPlan, *, trust_code: bool = False, untrusted_config: bool = False,
                trust_pickle: bool | None = None) -> LoadedInputs:
    """Read and validate the data and the model the plan names.

    ``trust_code`` lets model files that are programs run (pickle, TorchScript, ...);
    ``untrusted_config`` refuses every code import the config names (see ``load_model``);
    ``trust_pickle`` is the former name of ``trust_code``.
    """
    trust = _CodeTrust(trust_code or bool(trust_pickle), untrusted_config)
    check_trust_flags(trust_code=trust.trust_code, untrusted_config=untrusted_config)
    if untrusted_config:
        check_untrusted_paths(plan)
    files = _config_files(plan)
    notes: list[str] = []
    encoding = Encoding.load(plan.model.encoding) if plan.model.encoding else None
    if plan.model.encoding:
        files.append(file_record("encoding", plan.model.encoding))

    read = _read_table_data if plan.modal is None else _read_modal_data  # images, sequences
    data, train, model_encoding = read(plan, encoding, files, notes)
    if plan.modal is None and plan.model.path and encoding is None and not plan.model.raw_input:
        notes.append(ENCODING_FITTED_NOTE)
    model = load_model(plan.model, encoding=model_encoding, trust_code=trust.trust_code,
                       untrusted_config=trust.untrusted_config)
    files.extend(_file_entry(rec) for rec in model.loaded)  # every file it read, any code that ran
    check_compatible(model, data)
    return LoadedInputs(model, data, train, files, notes)


#: Why a folder is never read into memory (a folder given where rows are needed).
FOLDER_STREAMED = ("A folder of Parquet files is always read in batches keeping only counts (streamed), "
                   "which only a decisions-only audit ([model] predictions) can use.")


def _config_files(plan: AuditPlan) -> list[dict[str, Any]]:
    """The provenance record of the config file the plan was read from (none for the Python API)."""
    return [file_record("config", plan.config_path)] if plan.config_path else []


def _sample_rows(plan: AuditPlan, n_rows: int, what: str, notes: list[str]) -> np.ndarray | None:
    """The rows audited under ``max_rows`` (a seeded random sample, stated in ``notes``), or
    None for all of them."""
    if plan.max_rows is None or n_rows <= plan.max_rows:
        return None
    notes.append(f"The audit used a random sample of {plan.max_rows:,} of the {n_rows:,} {what} "
                 f"(seed {plan.seed}).")
    return np.sort(np.random.default_rng(plan.seed).choice(n_rows, plan.max_rows, replace=False))


def _read_table_data(plan: AuditPlan, encoding: Encoding | None, files: list[dict[str, Any]],
                     notes: list[str]) -> tuple[AuditData, AuditData | None, Encoding | None]:
    """A CSV / Parquet table (and its training table): the audited data, the training data and
    the encoding the model is loaded with."""
    if Path(plan.data_path).is_dir():
        raise InvalidConfigError(
            f"[data] path {plan.data_path!r} is a folder. {FOLDER_STREAMED} "
            + ("Remove [data] stream = false, or point [data] path at one CSV or Parquet file to audit its "
               "rows in memory." if plan.model.predictions else
               "Auditing a model needs its rows in memory: point [data] path at one CSV or Parquet file, "
               "or audit the model's precomputed decisions ([model] predictions) over the folder."))
    text = text_columns(plan.data, encoding)  # codes such as "01" stay as written
    frame = read_table(plan.data_path, na_values=plan.data.na_values, text=text)
    files.append(file_record("data", plan.data_path))
    rows = _sample_rows(plan, len(frame), "rows of the data file", notes)
    if rows is not None:  # sampled before encoding: only the audited rows are validated
        frame = frame.iloc[rows]
    try:
        data = build_audit_data(frame, plan.data, encoding, source=Path(plan.data_path).name, file_rows=rows)
    except MemoryError:
        n = len(frame)
        del frame
        raise DataValidationError(
            f"The {n:,} rows of {Path(plan.data_path).name!r} ran out of memory while being checked "
            "and encoded. Audit a sample of the rows ([data] max_rows), read precomputed decisions in "
            "batches ([data] stream = true), or run on a machine with more memory.") from None
    train = None
    if plan.train_path:
        train_frame = read_table(plan.train_path, na_values=plan.data.na_values, text=text)
        files.append(file_record("training data", plan.train_path))
        train = build_audit_data(train_frame, plan.data, data.encoding,
                                 source=Path(plan.train_path).name)
    return data, train, data.encoding


def load_streamed_inputs(plan: AuditPlan, classes: Sequence[AuditMethod], configs: Mapping[str, Any], *,
                         progress: ProgressFactory | None = None) -> LoadedInputs:
    """Read a decisions-only audit's data in batches into count tables (:mod:`audit.core.stream`).

    Only methods that compute from counts run on it (the fairness method); one chosen by name
    that needs the rows is a usage error, the others are listed as not run with the reason.
    """
    from audit.core.dataset import _show
    from audit.core.stream import AttributeSet, StreamedData, left_out_files, stream_tables
    from audit.methods.fairness import FairnessConfig, attribute_sets, normalize_set_name, set_name

    where = "[data] stream = true" if plan.stream else f"[data] path {Path(plan.data_path).name!r} (a folder)"
    if plan.model.predictions is None:
        raise InvalidConfigError(
            f"{where} is read in batches keeping only counts, which needs precomputed decisions: set "
            "[model] predictions to the column holding them, or audit the model on one CSV or Parquet file.")
    if plan.model.task == "regression":
        raise InvalidConfigError(
            f"{where} is read in batches into count tables, which hold classification decisions; a "
            "regression audit needs the rows: point [data] path at one CSV or Parquet file"
            + (" and remove stream = true." if plan.stream else "."))
    if plan.data.target is None:
        raise InvalidConfigError(f"{where} is read in batches for the fairness method, which needs the "
                                 "true outcome: set [data] target.")
    rows_needed = [m.name for m in classes if not m.from_counts and plan.methods and m.name in plan.methods]
    if rows_needed:
        raise InvalidConfigError(
            f"The method(s) {', '.join(rows_needed)} need the audited rows, but {where} is read in batches "
            "keeping only counts (only fairness runs on it). Drop them from --methods (a [gate] rule "
            "\"performance.<metric>\" asks for the performance method), or audit a file that fits in "
            "memory with [data] stream = false.")
    if plan.save_predictions:
        raise InvalidConfigError(
            f"[report] save_predictions = true writes each row's decision, but {where} is read in batches "
            "keeping only counts, so there are no rows to save. Remove save_predictions, or audit a file "
            "that fits in memory with [data] stream = false.")
    fairness = configs.get("fairness") or FairnessConfig()
    refs = {normalize_set_name(k, f"The fairness 'reference' key {k!r}") for k in fairness.reference}
    sets = [AttributeSet(cols, named=len(cols) > 1 and (fairness.intersections is not None
                                                         or set_name(cols) in refs), name=set_name(cols))
            for cols in attribute_sets(plan.data.sensitive, fairness)]
    report = progress("data", "Reading the data in batches") if progress else None
    start = time.perf_counter()
    total = _rows_in(plan.data_path)
    streamed = stream_tables(plan.data_path, plan.data, threshold=plan.model.threshold, sets=sets,
                             max_groups=fairness.max_groups, n_bins=fairness.score_bins,
                             progress=None if report is None else (lambda n: report(n, max(total, n))))
    _finished(report, time.perf_counter() - start)  # before the plan is shown
    files = [*_config_files(plan), *(file_record("data", f) for f in streamed.files)]
    model = load_model(plan.model, encoding=None)
    notes = [f"The {streamed.n_rows:,} rows of {len(streamed.files):,} file(s) were read in batches and "
             "only their counts kept (per group: outcome × decision"
             + (f", and a histogram of {streamed.n_bins:,} score bins" if streamed.has_scores else "")
             + "); methods that need the rows were not run."]
    skipped = left_out_files(plan.data_path)
    if skipped:
        notes.append(f"{len(skipped):,} other file(s) in the data folder were not read (only *.parquet and "
                     f"*.pq files are): {_show(skipped)}.")
    return LoadedInputs(model, StreamedData.build(plan.data, streamed), None, files, notes)


def _rows_in(path: str) -> int:
    """Rows of a Parquet file or folder from the footers (0 when unknown, e.g. CSV)."""
    try:
        import pyarrow.parquet as pq

        from audit.core.stream import data_files

        return sum(pq.ParquetFile(f).metadata.num_rows for f in data_files(path))
    except Exception:
        return 0


def check_untrusted_paths(plan: AuditPlan, *, out_dir: str | Path | None = None) -> None:
    """Under ``--untrusted-config`` every file the config names (and its ``[report] out``) must
    lie inside the config's folder, so a config from elsewhere cannot read other files on the
    machine into a report, or point the report at another folder."""
    if not plan.config_path and not plan.model.base_dir:
        return
    folder = (Path(plan.config_path).resolve().parent if plan.config_path
              else Path(plan.model.base_dir).resolve())  # type: ignore[arg-type]
    named = [(key, path) for key, _, path in _named_inputs(plan) if key != "config"]
    for key, value in [*named, ("[report] out", out_dir)]:
        if value and not Path(value).resolve().is_relative_to(folder):
            raise InvalidConfigError(
                f"The config's {key} {str(value)!r} lies outside the config's folder {str(folder)!r}, "
                "and --untrusted-config allows only files inside it (symbolic links are followed). "
                "Copy the file into that folder, or drop --untrusted-config if you trust this config.")
        if value and key != "[report] out" and Path(value).is_dir():
            # a folder's files are read too: each must resolve inside, as a named file must; a
            # link is refused before it is followed, so nothing outside is even listed
            from audit.core.userfiles import folder_files

            def inside(link: Path, target: Path, key: str = key, value: str = value) -> None:
                if not target.is_relative_to(folder):
                    raise InvalidConfigError(
                        f"The symbolic link {str(link.relative_to(value))!r} in the config's {key} folder "
                        f"{str(value)!r} leads to {str(target)!r}, outside the config's folder {str(folder)!r}, "
                        "and --untrusted-config allows only files inside it (the link was not followed). "
                        "Copy what it points to into the folder, or drop --untrusted-config if you trust "
                        "this config.")

            folder_files(value, on_link=inside)  # linked folders followed, as the readers follow them


def _named_inputs(plan: AuditPlan) -> list[tuple[str, str, str]]:
    """(config key, role, path) of every file the plan reads: one list for the output-folder
    preflight (:func:`input_paths`) and the ``--untrusted-config`` check."""
    arch = plan.model.architecture
    named = [("config", "config", plan.config_path),
             ("[data] path", "data", plan.data_path),  # an image folder / npz / series too
             ("[data] train_path", "training data", plan.train_path),
             ("[model] path", "model", plan.model.path), ("[model] encoding", "encoding", plan.model.encoding),
             ("[data] labels", "labels", getattr(plan.modal, "labels", None)),
             ("[model] architecture", "architecture",
              arch if isinstance(arch, str) and arch.endswith(".json") else None)]
    return [(key, role, str(path)) for key, role, path in named if path]


@dataclass(frozen=True)
class _CodeTrust:
    trust_code: bool = False
    untrusted_config: bool = False


def _file_entry(rec: Any) -> dict[str, Any]:
    """A :class:`~audit.core.adapter.LoadRecord` as a provenance file entry."""
    return {"role": rec.role, "path": rec.path, "sha256": rec.sha256, "loader": rec.loader,
            "tensor_sha256": rec.tensor_sha256, "code": rec.code}


def _read_modal_data(plan: AuditPlan, encoding: Encoding | None, files: list[dict[str, Any]],
                     notes: list[str]) -> tuple[AuditData, AuditData | None, Encoding | None]:
    """An image folder / array file or a series (``[data] modality``): as :func:`_read_table_data`."""
    import dataclasses

    from audit.core.modalities import ImageSpec, build_modal_data

    data = build_modal_data(plan.modal, plan.data, encoding=encoding)
    if not Path(plan.modal.path).is_dir():
        files.append(file_record("data", plan.modal.path))
    if isinstance(plan.modal, ImageSpec) and plan.modal.labels:
        files.append(file_record("labels", plan.modal.labels))
    rows = _sample_rows(plan, data.n_rows, "examples", notes)
    if rows is not None:
        data = data.subset(rows)
    train = None
    train_range = getattr(plan.modal, "train_time_range", None)
    if plan.train_path or train_range:
        changes: dict[str, Any] = {"path": plan.train_path or plan.modal.path}
        if not isinstance(plan.modal, ImageSpec):
            changes["time_range"] = train_range
        train = build_modal_data(dataclasses.replace(plan.modal, **changes), plan.data, encoding=encoding)
        if plan.train_path:
            files.append(file_record("training data", plan.train_path))
    return data, train, encoding


def input_paths(plan: AuditPlan) -> list[tuple[str, str]]:
    """(role, path) of every file the plan reads, for the output-folder preflight check."""
    return [(role, path) for _, role, path in _named_inputs(plan)]


def check_compatible(model: ModelAdapter, data: AuditData) -> None:
    """Fail early, with the fix, when the model cannot take this data."""
    check_width(model, data)
    model.bind(data)
    if data.task == "multiclass" and data.classes is not None and model.n_classes not in (len(data.classes), 2):
        if model.n_classes != len(data.classes):
            raise DataValidationError(
                f"The model has {model.n_classes} outputs but the target has {len(data.classes)} "
                "classes. List the model's classes in the encoding JSON (\"classes\").")
    if {"predict", "predictions"} & model.capabilities and data.n_rows:
        try:
            # Every audited row once: outputs that are NaN, out of range or of the wrong shape
            # on any row are an input error (exit 2) before a method can report on them; a
            # predictions column passes the same check (scores within tolerance of [0, 1]).
            model.predictions(data)
        except AuditError:
            raise
        except Exception as exc:
            raise DataValidationError(
                f"The model failed on the first rows of the encoded data ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}). Check the encoding and the "
                "model's input width.") from None


@dataclass(frozen=True)
class ResolvedPlan:
    """What a run's config means, resolved once: the methods to run, each one's options and the
    parsed ``[gate]`` rules (empty without a gate). Every later step reads these; no option is
    parsed twice."""

    methods: tuple[AuditMethod, ...]
    configs: Mapping[str, Any]
    gate: tuple[Any, ...] = ()  # audit.gate.GateRule


def resolve_plan(plan: AuditPlan, *, gate_required: bool = False) -> ResolvedPlan:
    """Check the plan's method tables, options, gate and seed before any file is read: a bad
    option is a config error (exit 2) whatever the data, and costs no loading time.
    ``gate_required`` (``audit check``): a ``[gate]`` without rules is an error too."""
    for key in plan.method_options:
        if key not in method_names():
            raise InvalidConfigError(f"Unknown method table [methods.{key}] in the config."
                                     f"{did_you_mean(key, method_names())} Methods: {', '.join(method_names())}.")
    check_seed(plan.seed, "seed")
    methods = tuple(cls() for cls in select_methods(plan.methods))
    configs = {m.name: m.Config.from_dict(plan.method_options.get(m.name, {}), method=m.name,
                                          source=plan.config_path)
               for m in methods}
    rules: tuple[Any, ...] = ()
    if plan.gate or gate_required:  # a malformed [gate] is a usage error before any work (audit.gate)
        from audit.gate import parse_gate

        fairness = configs.get("fairness")
        if fairness is None:  # the gate names attribute sets even when fairness does not run
            fairness = get_method("fairness").Config.from_dict(plan.method_options.get("fairness", {}),
                                                                method="fairness", source=plan.config_path)
        rules = tuple(parse_gate(plan.gate, sensitive=plan.data.sensitive, task=plan.model.task,
                                 fairness=fairness))
    return ResolvedPlan(methods, configs, rules)


def select_methods(names: Sequence[str] | None) -> list[type[AuditMethod]]:
    if names is None:
        return list(METHODS)
    for n in names:
        get_method(n)
    return [m for m in METHODS if m.name in set(names)]


def run_audit(plan: AuditPlan, *, trust_code: bool = False, untrusted_config: bool = False,
              progress: ProgressFactory | None = None,
              inputs: LoadedInputs | None = None, trust_pickle: bool | None = None,
              on_plan: Callable[[RunPlan], None] | None = None,
              resolved: ResolvedPlan | None = None,
              started: float | None = None) -> AuditReport:
    """Run the plan's methods and return the report (nothing is written here).

    Parameters
    ----------
    plan : AuditPlan
    trust_code : bool
        Let model files that are programs load: pickle/joblib, TorchScript, torch pickles beyond
        plain tensors, skops types outside its safe list (their code runs; recorded in the
        report). The CLI's ``--trust-code``; ``trust_pickle`` is its former name.
    untrusted_config : bool
        Refuse every Python import the config names (``"module:Class"`` architectures, a
        ``model.py`` beside it) and its ``trusted_types``: the CLI's ``--untrusted-config``.
    progress : callable, optional
        ``progress(name, title)`` returns a per-method ``(done, total)`` callback.
    inputs : LoadedInputs, optional
        Pre-loaded model and data (the Python API path); loaded from the plan when omitted.
    on_plan : callable, optional
        Called with the :class:`RunPlan` (per-method estimates, what the budget lowered) after
        the inputs are loaded and before any method runs. Above ``plan.budget`` the defaulted
        sample sizes are lowered; when even their floors exceed it, InvalidConfigError (exit 2)
        is raised before any method runs.
    resolved : ResolvedPlan, optional
        The plan already resolved by :func:`resolve_plan` (``audit check`` resolves it before it
        reserves its output); resolved here when omitted.
    started : float, optional
        ``time.perf_counter()`` when the run began (the CLI's command start); the time budget
        counts from it, loading and writing the report included. Default: this call.
    """
    started = time.perf_counter() if started is None else started
    resolved = resolved or resolve_plan(plan)
    escape_warnings()  # a warning quoting a user's name never carries raw control bytes
    trust_code = trust_code or bool(trust_pickle)
    classes = list(resolved.methods)
    from audit import execution

    if untrusted_config:  # before connecting to any cluster
        plan.execution.check_untrusted()
    if inputs is None and plan.streams and untrusted_config:  # before any file is read, here or on a Ray worker
        check_untrusted_paths(plan)
    # The chunks of every method (and a streamed audit's files) run on the configured backend,
    # whose workers import the methods' libraries while the inputs load; a Ray instance this run
    # started is shut down when it ends (one it connected to keeps running).
    warm = {"audit.execution"} | {m for cls in classes for m in (
        cls.__module__, *cls.libraries, *(("torch",) if cls.uses_torch else ()))}
    with memory_limit(plan.memory_limit), \
            execution.session(plan.execution, warm=sorted(warm)) as cluster:  # readers check sizes against the budget
        if inputs is None and plan.streams:
            inputs = load_streamed_inputs(plan, classes, resolved.configs, progress=progress)
        inputs = inputs or load_inputs(plan, trust_code=trust_code, untrusted_config=untrusted_config)
        run_plan, configs = plan_run(plan, inputs, classes, dict(resolved.configs), started=started)
        if on_plan is not None:
            on_plan(run_plan)
        report = _run_methods(plan, inputs, classes, configs,
                              _CodeTrust(trust_code, untrusted_config), progress, run_plan, resolved.gate)
    report.provenance["execution"] = cluster.to_json()  # each method's seconds: provenance.plan
    return report


@contextmanager
def _torch_state(method: AuditMethod, seq: np.random.SeedSequence) -> Iterator[None]:
    """Seed torch from the method's stream and run the method on one thread (measured: 1
    thread beats 2 for the small models audited here), leaving the caller's setting as it was.

    torch is imported only for a method that may use it (``uses_torch``) or when it is loaded
    already (a torch model): a decisions-only fairness audit never pays its import (~1.7 s).
    A method that does not use torch draws nothing from its generator, so its results do not
    depend on whether torch was seeded.
    """
    if not method.uses_torch and "torch" not in sys.modules:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(int(seq.generate_state(1)[0]))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _context(plan: AuditPlan, inputs: LoadedInputs, name: str, progress: Progress,
             earlier: dict[str, MethodResult], lowered: frozenset[str] = frozenset()) -> RunContext:
    """The context a method runs (or is planned) with: its own seeded stream and the run's inputs."""
    rng = np.random.default_rng(method_seed(plan.seed, name))
    return RunContext(rng=rng, progress=progress, train=inputs.train, earlier=dict(earlier),
                      seed=plan.seed, training=dict(plan.model.training), lowered=lowered)


def plan_run(plan: AuditPlan, inputs: LoadedInputs, classes: list[AuditMethod],
             configs: dict[str, Any], *, started: float | None = None) -> tuple[RunPlan, dict[str, Any]]:
    """Each method's plan, priced with unit costs measured once on this model; above
    ``plan.budget``, the defaulted sample sizes lowered to fit (:func:`audit.core.cost.fit_budget`).

    The budget covers the whole run: with ``started`` (a ``time.perf_counter()`` reading when
    the run began), the time spent loading and measuring so far and the estimated time to write
    the report in ``plan.formats`` are taken from it before the methods are fitted to the rest.

    Raises InvalidConfigError when even the lowest sample sizes cannot fit the budget.
    """
    from audit.execution import usable_cores

    model, data = inputs.model, inputs.data
    runs = {m.name: m.skip_reason(model, data, configs[m.name]) is None for m in classes}

    def plan_of(method: AuditMethod, config: Any) -> Plan:
        try:
            return method.plan(model, data, config, _context(plan, inputs, method.name, lambda d, t: None, {}))
        except InvalidConfigError:
            raise  # the same options would stop the method itself: say so before any work
        except Exception as exc:  # a planning bug must not stop the audit: no estimate for it
            return Plan(f"no estimate ({type(exc).__name__} while planning)")

    # Workers beyond the cores other processes leave free add nothing: parallel work is priced
    # on the free cores (the 1-minute load average; all usable cores on an idle machine).
    import os

    cores = usable_cores()
    free = max(1, min(cores, int(round(cores + 1 - os.getloadavg()[0]))))
    costs = measure_unit_costs(model, data.X, cores=free)
    refit_plans = [plan_of(m, configs[m.name]) for m in classes if runs[m.name]]
    refit_rows = max((p.refit_rows for p in refit_plans if p.refits), default=0)
    if refit_rows and hasattr(model, "estimator"):
        source = inputs.train if inputs.train is not None and inputs.train.y is not None else data
        if source.y is not None:
            rows = min(refit_rows, source.n_rows)
            costs = measure_refit(model, np.asarray(source.X[:rows].reshape(rows, -1), dtype=np.float64),
                                  np.asarray(source.y[:rows]), costs)

    def price(method: AuditMethod, config: Any) -> tuple[Plan, float]:
        p = plan_of(method, config)
        return p, seconds(p, costs)

    entries = [(m.name, m, configs[m.name], set(plan.method_options.get(m.name, {})))
               for m in classes if runs[m.name]]
    lowered: list[Lowered] = []
    over_budget: dict[str, float] = {}
    spent = time.perf_counter() - started if started is not None else 0.0
    writing = render_seconds(plan.formats, len(entries)) if started is not None else 0.0
    if plan.budget is not None:
        left = plan.budget - spent - writing  # what the methods may use
        new, lowered, total = floors = fit_budget(entries, price, left)
        # A default audit leaves out, costliest first, the methods that cannot fit even at their
        # smallest sample sizes (each is listed as not run, with how to run it); a method the
        # user chose (--methods, or enabled = true in its table) is never left out.
        everything = list(entries)
        chosen = set(plan.methods or ()) | {n for n, o in plan.method_options.items() if o.get("enabled") is True}
        while total > left:
            droppable = [(price(m, new[name])[1], name) for name, m, _, _ in entries if name not in chosen]
            if not droppable:
                break
            cost, name = max(droppable)
            over_budget[name] = cost
            entries = [e for e in entries if e[0] != name]
            new, lowered, total = fit_budget(entries, price, left)
        if not entries and everything:  # nothing left to run is no audit: say what all would cost
            entries, (new, lowered, total) = everything, floors
        if total > left:
            overhead = (f", plus {format_seconds(spent + writing)} to load, measure and write the report"
                        if started is not None else "")
            raise InvalidConfigError(
                f"The audit cannot fit the time budget of {format_budget(plan.budget)}: "
                f"with every defaulted sample size at its floor its methods are estimated at "
                f"{format_seconds(total)} ({_costliest(entries, new, price)}){overhead}. Nothing was run or "
                f"written. Give a budget above that (--budget {_budget_above(total + spent + writing)}, or "
                "[run] budget), run everything as configured with --full, or choose fewer methods "
                "(--methods).")
        configs = {**configs, **new}
    methods = []
    for m in classes:
        if not runs[m.name] or m.name in over_budget:
            reason = (over_budget_reason(m.name, plan.budget) if m.name in over_budget
                      else m.skip_reason(model, data, configs[m.name]))
            methods.append(PlannedMethod(m.name, None, 0.0, reason))
            continue
        p, est = price(m, configs[m.name])
        methods.append(PlannedMethod(m.name, p, est))
    return RunPlan(tuple(methods), costs, plan.budget, tuple(lowered), over_budget, spent, writing), configs


def over_budget_reason(name: str, budget: float | None) -> str:
    """Why a default audit left ``name`` out. No estimate in it: estimates depend on the
    machine, and results.json's findings and reasons must not (provenance.plan has them)."""
    return (f"not run: even at its smallest sample sizes its estimated time (provenance.plan.over_budget) "
            f"exceeds the time budget of {format_budget(budget or 0.0)} with the other methods; run it with "
            f"--full, a larger --budget, or on its own with --methods {name}")


def _budget_above(seconds: float) -> str:
    """A --budget value comfortably above ``seconds``: 1.5× rounded up to whole 5 minutes."""
    return f"{int(5 * np.ceil(1.5 * seconds / 300.0))}m"


def _costliest(entries: list[Any], configs: dict[str, Any], price: Any) -> str:
    costs = sorted(((price(m, configs[name])[1], name) for name, m, _, _ in entries), reverse=True)
    return ", ".join(f"{name} {format_seconds(s)}" for s, name in costs[:3])


class _CountingScores:
    """``model.scores`` that adds each call's rows to a tally (picklable: a copy in a Ray
    worker counts there, and its counts come back with the chunk's result)."""

    def __init__(self, scores: Callable[[np.ndarray], np.ndarray], tally: Any) -> None:
        self.scores, self.tally = scores, tally

    def __call__(self, X: np.ndarray) -> np.ndarray:
        self.tally.add(rows=len(X), calls=1)
        return self.scores(X)


class _Counted:
    """Counts the rows and calls the audited model evaluates while a method runs (the plan's
    units, compared with the plan in results.json), wherever its chunks run."""

    def __init__(self, model: ModelAdapter) -> None:
        from audit.execution import Tally

        self.tally = Tally()
        self._model = model
        self._scores = model.scores

    @property
    def rows(self) -> int:
        return self.tally.counts.get("rows", 0)

    @property
    def calls(self) -> int:
        return self.tally.counts.get("calls", 0)

    def __enter__(self) -> _Counted:
        try:
            self._model.scores = _CountingScores(self._scores, self.tally)  # type: ignore[method-assign]
        except (AttributeError, TypeError):  # a frozen or slotted adapter: nothing is counted
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        self.tally.close()
        try:
            del self._model.scores
        except AttributeError:
            pass


def _run_methods(plan: AuditPlan, inputs: LoadedInputs, classes: list[AuditMethod],
                 configs: dict[str, Any], trust: _CodeTrust,
                 progress: ProgressFactory | None, run_plan: RunPlan | None = None,
                 rules: Sequence[Any] = ()) -> AuditReport:
    model, data = inputs.model, inputs.data
    outcomes: list[MethodOutcome] = []
    findings: list[Finding] = []
    earlier: dict[str, MethodResult] = {}
    performed: dict[str, dict[str, int]] = {}
    for method in classes:
        config = configs[method.name]
        reason = method.skip_reason(model, data, config)
        if reason is None and run_plan is not None and method.name in run_plan.over_budget:
            reason = over_budget_reason(method.name, run_plan.budget)
        counted = _Counted(model)
        start = time.perf_counter()
        if reason is not None:
            result: Any = Skipped(method.name, method.title, reason)
        else:
            seq = method_seed(plan.seed, method.name)
            report_progress = progress(method.name, method.title) if progress else (lambda d, t: None)
            try:
                budget_lowered = frozenset(x.option for x in (run_plan.lowered if run_plan else ())
                                           if x.method == method.name)
                ctx = _context(plan, inputs, method.name, report_progress, earlier, budget_lowered)
                with _torch_state(method, seq), counted:
                    result = method.run(model, data, config, ctx)
            except InvalidConfigError:
                raise  # the user's options are wrong: stop, say which (exit 2)
            except AuditError as exc:
                # the model or data cannot support this method (e.g. a class the model never
                # predicts): the other methods still run and the report says why this one did not
                result = Skipped(method.name, method.title, str(exc).rstrip("."))
            except Exception as exc:  # a bug must show in the report, not vanish or abort it
                detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
                result = Skipped(method.name, method.title, f"failed with an internal error: {detail}",
                                 failed=True)
        outcome = MethodOutcome(method, config, result, time.perf_counter() - start)
        if reason is None:
            _finished(report_progress, outcome.seconds)
        outcomes.append(outcome)
        performed[method.name] = {"model_rows": counted.rows, "model_calls": counted.calls}
        if outcome.ok:
            earlier[method.name] = result
            findings.extend(Finding(f.level, f.text, method.name)
                            for f in method.findings(result, config))
        elif isinstance(result, Skipped) and result.failed:
            findings.append(Finding("alert", f"{method.title} failed: {result.reason}", method.name))
    gate = None
    if rules:
        from audit.gate import judge_outcomes

        gate = judge_outcomes(rules, outcomes)  # the verdicts `audit check` gives
    if gate is not None:
        level = {"breach": "alert", "inconclusive": "warning", "insufficient": "warning"}
        findings.extend(Finding("alert" if v.fails else level[v.status],
                                f"Gate {v.status}: {v.rule} — {v.message}.", "gate")
                        for v in gate.verdicts if v.status != "pass")
    order = {"alert": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: order[f.level])

    prov = provenance(seed=plan.seed, files=inputs.files, trust_code=trust.trust_code,
                      untrusted_config=trust.untrusted_config, trusted_types=plan.model.trusted_types)
    lowered: list[str] = []
    if run_plan is not None:
        prov["plan"] = plan_record(run_plan, outcomes, performed)
        lowered = [x.text() for x in run_plan.lowered]
        if lowered:
            lowered.append("Sample sizes lowered to fit the time budget depend on the measured speed of "
                           "this machine, so a rerun elsewhere may lower them differently; run with "
                           "--full, or set the options explicitly, for results that do not depend on it.")
    return AuditReport(
        name=plan.name,
        title=plan.title or f"Model audit: {plan.name}",
        model=model_summary(model, plan),
        data_summary=data_summary(data, inputs.train),
        outcomes=outcomes,
        findings=findings,
        provenance=prov,
        data=data,
        limitations=[*inputs.notes, *lowered,
                     *standard_limitations(model, data, fairness=any(o.name == "fairness" and o.ok for o in outcomes))],
        gate=gate,
        card=dict(plan.card) or None,
        predictions=predictions_frame(model, data) if plan.save_predictions else None,
    )


def plan_record(run_plan: RunPlan, outcomes: list[MethodOutcome],
                performed: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The plan as results.json's provenance records it: estimate next to what happened."""
    actual = {o.name: o for o in outcomes}
    methods = []
    for m in run_plan.methods:
        if m.plan is None:
            continue
        o = actual.get(m.name)
        methods.append({"method": m.name, **m.plan.to_json(), "estimated_seconds": round(m.estimate, 3),
                        "actual_seconds": round(o.seconds, 3) if o is not None else None,
                        "performed": performed.get(m.name)})
    return {"budget_seconds": run_plan.budget, "estimated_total_seconds": round(run_plan.total, 3),
            "loading_seconds": round(run_plan.spent, 3), "estimated_writing_seconds": round(run_plan.writing, 3),
            "unit_costs": run_plan.costs.to_json(), "methods": methods,
            "lowered": [x.to_json() for x in run_plan.lowered],
            "over_budget": [{"method": name, "estimated_seconds": round(s, 3)} for name, s in run_plan.over_budget.items()]}


def model_summary(model: ModelAdapter, plan: AuditPlan) -> dict[str, Any]:
    return {"description": model.description, "task": model.task,
            "capabilities": sorted(model.capabilities), "threshold": model.threshold,
            "n_inputs": model.n_inputs}


def data_summary(data: AuditData, train: AuditData | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "source": data.source, "rows": data.n_rows, "task": data.task,
        "target": data.spec.target, "classes": list(data.classes) if data.classes else None,
        "features": data.layout.raw_features,
        "encoded_columns": len(data.columns),
        "sensitive": list(data.spec.sensitive), "modality": data.modality,
        "training_rows": train.n_rows if train is not None else None,
    }
    if data.layout.elementwise:
        out["input_shape"] = list(data.X.shape[1:])
    if data.positive_rate is not None:
        out["positive_rate"] = data.positive_rate
    return out


def standard_limitations(model: ModelAdapter, data: AuditData, *, fairness: bool) -> list[str]:
    """The limitations every report states; the one about group fairness metrics only when
    ``fairness`` (the fairness method ran)."""
    notes = [
        f"All results describe this model on these {data.n_rows:,} rows"
        f"{' of ' + repr(data.source) if data.source else ''}; they carry over to other populations "
        "only as far as those rows represent them.",
        "Explanations describe what the model computes, not causal effects in the world: a feature "
        "the model relies on may stand in for another (a proxy), and removing it need not remove "
        "the dependence.",
    ]
    if fairness:
        notes.append("Group fairness metrics compare rates between groups; no single metric captures "
                     "fairness, and several of them cannot all be equal at once when base rates differ.")
    constant = [f for f in ([] if data.layout.elementwise else data.feature_names)
                if f in data.frame.columns and _distinct(data.frame[f]) <= 1]
    if constant:
        notes.append(f"Feature(s) {', '.join(repr(f) for f in constant)} are constant in the audited "
                     "rows, so no method here can measure the model's dependence on them: an "
                     "importance of zero for them is by construction, not evidence of no effect.")
    if data.left_out:
        notes.append("Column(s) " + ", ".join(f"{c!r} ({why})" for c, why in data.left_out) + " were not "
                     "used as features (the surrogate's inputs) of this decisions-only audit. To use "
                     "one, fill or convert it and list the features in [data] features.")
    if "predict" not in model.capabilities:
        notes.append("Only precomputed predictions were available, so methods that must query the "
                     "model on new inputs were skipped (listed in their sections).")
    return notes




def _distinct(column: Any) -> int:
    """Distinct values of a column, lists and dicts (Parquet nested types) compared by their text."""
    try:
        return int(column.nunique(dropna=False))
    except TypeError:  # unhashable cells
        return int(column.map(repr).nunique(dropna=False))


def audit_model(model: Any, frame: Any, *, target: str | None, sensitive: Sequence[str] = (),
                features: Sequence[str] | None = None, positive_label: Any = None,
                task: str = "binary", encoding: Encoding | None = None, raw_input: bool = False,
                threshold: float = 0.5, methods: Sequence[str] | None = None,
                method_options: dict[str, dict[str, Any]] | None = None, seed: int = 0,
                name: str = "audit", train_frame: Any = None,
                progress: ProgressFactory | None = None, execution: Any = None,
                card: Mapping[str, Any] | None = None) -> AuditReport:
    """Audit an in-memory model on a data frame (the Python API).

    Parameters
    ----------
    model : torch.nn.Module, scikit-learn estimator, callable or ModelAdapter
        Callables and estimators receive the encoded matrix, or the raw frame with
        ``raw_input=True``.
    frame : pandas.DataFrame
        The rows to audit.
    execution : audit.execution.ExecutionConfig, optional
        Where the methods' chunks run (``ExecutionConfig("ray", "ray://host:10001")``); default local.
    card : mapping, optional
        The authors' part of the model card, with the keys of the config's ``[card]`` table
        (``intended_use``, ``owners``, ``license``, ...); see :meth:`AuditReport.model_card`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> df = pd.DataFrame({"x": np.linspace(-2, 2, 60), "g": ["a", "b"] * 30})
    >>> df["y"] = (df.x > 0).astype(int)
    >>> report = audit_model(lambda X: 1 / (1 + np.exp(-4 * X[:, 0])), df, target="y",
    ...                      sensitive=["g"], methods=["surrogate"])
    >>> round(report.outcome("surrogate").result.fidelity, 2)
    1.0
    """
    plan, inputs = memory_inputs(model, frame, target=target, sensitive=sensitive, features=features,
                                 positive_label=positive_label, task=task, encoding=encoding,
                                 raw_input=raw_input, threshold=threshold, methods=methods,
                                 method_options=method_options, seed=seed, name=name,
                                 train_frame=train_frame)
    plan = plan.with_overrides(card=check_card(card or {}))
    if execution is not None:
        plan = replace(plan, execution=execution)
    return run_audit(plan, progress=progress, inputs=inputs,
                     trust_code=any(rec.trusted_pickle for rec in getattr(inputs.model, "loaded", ())))


def memory_inputs(model: Any, frame: Any, *, target: str | None, sensitive: Sequence[str] = (),
                  features: Sequence[str] | None = None, positive_label: Any = None,
                  task: str = "binary", encoding: Encoding | None = None, raw_input: bool = False,
                  threshold: float = 0.5, methods: Sequence[str] | None = None,
                  method_options: dict[str, dict[str, Any]] | None = None, seed: int = 0,
                  name: str = "audit", train_frame: Any = None) -> tuple[AuditPlan, LoadedInputs]:
    """The plan and validated inputs of an in-memory audit (:func:`audit_model`, and
    :func:`audit.compare_models` for each of its two models)."""
    from audit.core.adapter import as_adapter
    from audit.core.loading import ModelSpec
    from audit.core.dataset import DatasetSpec

    spec = DatasetSpec(target=target, features=tuple(features) if features is not None else None,
                       sensitive=tuple(sensitive), positive_label=positive_label, task=task)  # type: ignore[arg-type]
    data = build_audit_data(frame, spec, encoding, source=None)
    train = build_audit_data(train_frame, spec, data.encoding) if train_frame is not None else None
    adapter = as_adapter(model, task=task, encoding=data.encoding, raw_input=raw_input,  # type: ignore[arg-type]
                         threshold=threshold)
    check_compatible(adapter, data)
    plan = AuditPlan(name=name, seed=seed, model=ModelSpec(task=task, threshold=threshold),  # type: ignore[arg-type]
                     data=spec, data_path="", methods=tuple(methods) if methods else None,
                     method_options=method_options or {})
    # a model loaded with audit.load_model keeps its load records: its provenance (and any
    # code that ran, e.g. with trust_code=True) reaches the report
    loaded = getattr(adapter, "loaded", ())
    return plan, LoadedInputs(adapter, data, train, [_file_entry(rec) for rec in loaded], [])


__all__ = ["LoadedInputs", "PlannedMethod", "ResolvedPlan", "RunPlan", "audit_model", "check_untrusted_paths",
           "input_paths", "load_inputs", "load_streamed_inputs", "memory_inputs", "method_seed", "plan_run",
           "resolve_plan", "run_audit"]
