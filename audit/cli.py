"""The ``audit`` command line: parse, call the library, map the outcome to an exit code.

Exit codes: 0 success, 1 a gate threshold is breached, 2 usage or input error,
3 insufficient evidence, 4 a method failed with an internal error (the report is still written),
or audit-suite itself failed (:func:`main` names a log file holding the traceback). A run
interrupted by SIGINT or SIGTERM ends by that signal (exit status 130 / 143), never with a code
above.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from audit.errors import EXIT_METHOD_FAILED, EXIT_OK, AuditError

app = typer.Typer(
    name="audit",
    help="Interpretability and fairness audits of trained models, with HTML/PDF/JSON reports.",
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    # Help texts are plain text: rich markup would eat "[gate]", "[model]", "[methods.NAME]".
    rich_markup_mode=None,
)

# Without --budget or [run] budget, a run is planned to fit this many seconds (audit.core.cost).
DEFAULT_BUDGET = "3m"  # issue 13: every default audit of an ordinary model within 3 minutes
_BUDGET_HELP = (f"Time budget, e.g. 90s, 5m, 1h (default: [run] budget, else {DEFAULT_BUDGET}). Above "
                "it, sample sizes the config leaves at their defaults are lowered (printed, and stated "
                "in the report with the precision lost); a run that cannot fit stops before any work.")
_FULL_HELP = "No time budget: run every method with its configured and default sample sizes."
_BACKEND_HELP = ("Where the methods' chunks of work run: local (this machine, the default) or ray "
                 "(Ray tasks; needs pip install 'audit-suite[ray]'). Overrides [execution] backend.")
_RAY_ADDRESS_HELP = ("The Ray cluster to use: auto (the one Ray instance running on this machine; "
                     "refused when there are several), host:port (a cluster's GCS address) or "
                     "ray://host:port. Without it --backend ray starts a local Ray instance for the "
                     "run. Overrides [execution] address; implies --backend ray.")
# One declaration for every command that runs audits (run, check, compare).
BackendOption = Annotated[str | None, typer.Option("--backend", help=_BACKEND_HELP)]
RayAddressOption = Annotated[str | None, typer.Option("--ray-address", help=_RAY_ADDRESS_HELP)]

# The trust model, in one place for --help and `audit methods` (README: "What runs code").
_TRUST_CODE_HELP = ("Let model files that are programs load: pickle/joblib, TorchScript, torch "
                    "pickles beyond plain tensors, skops types outside its safe list. Their code "
                    "runs; the report records it. (--trust-pickle is the former name.)")
_UNTRUSTED_CONFIG_HELP = ("Audit a config from an untrusted source: refuse every Python import it "
                          "names (an architecture \"module:Class\", a model.py beside it) and its "
                          "trusted_types key, and any file or report folder it names outside its "
                          "own folder. Cannot be combined with --trust-code.")
CODE_NOTE = ("Code from the inputs: an architecture \"module:Class\" imports that module, which runs "
             "its code (a model.py beside the config included); only torch.nn.Module subclasses are "
             "then constructed. --untrusted-config refuses every such import. Pickle/joblib, "
             "TorchScript and skops types outside its safe list are code too and load only with "
             "--trust-code. Every file whose code ran is listed, with SHA-256, in the report's "
             "provenance.")


def _fail(exc: AuditError) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/bold red] {_plain(exc)}")
    return typer.Exit(exc.exit_code)


def _plain(value: object) -> str:
    """A user-derived string for the terminal: control characters and bidi controls spelled
    out (an ESC sequence in a column name cannot recolour or rewrite the screen, an override
    cannot reverse the line) and rich markup ("[bold]" in a name) escaped."""
    from rich.markup import escape

    from audit.core.text import visible

    return escape(visible(value))


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"audit-suite {version('audit-suite')}")
        except PackageNotFoundError:
            typer.echo("audit-suite (not installed)")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """audit-suite: explain and audit a trained model."""


def _split(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    return tuple(v.strip() for item in values for v in item.split(",") if v.strip())


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="The audit.toml describing model, data and methods.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: reports/<name>/).")] = None,
    methods: Annotated[list[str] | None, typer.Option("--methods", "-m", help="Only these methods (comma-separated).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (overrides the config).")] = None,
    formats: Annotated[str | None, typer.Option("--format", "-f", help="Comma-separated subset of html,pdf,json.")] = None,
    trust_code: Annotated[bool, typer.Option("--trust-code", "--trust-pickle", help=_TRUST_CODE_HELP)] = False,
    untrusted_config: Annotated[bool, typer.Option("--untrusted-config", help=_UNTRUSTED_CONFIG_HELP)] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing report folder of audit-suite (atomically, once the new report is complete); a folder holding inputs or other files is never replaced.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No plan, no progress display.")] = False,
    budget: Annotated[str | None, typer.Option("--budget", help=_BUDGET_HELP)] = None,
    full: Annotated[bool, typer.Option("--full", help=_FULL_HELP)] = False,
    backend: BackendOption = None,
    ray_address: RayAddressOption = None,
) -> None:
    """Run an audit and write report.html, report.pdf and results.json.

    An architecture "module:Class" in the config imports that module (a model.py beside the
    config included), which runs its code; --untrusted-config refuses every such import.
    """
    started = time.perf_counter()  # the time budget counts from here (audit.runner.plan_run)
    from audit.config import AuditPlan, check_formats
    from audit.report.output import reserve_output
    from audit.report.render import write_report
    from audit.runner import input_paths, run_audit

    try:
        plan = AuditPlan.load(config)
        fmt = _split([formats]) if formats else None
        if fmt is not None:
            check_formats(fmt)
        plan = _with_execution(_with_budget(plan.with_overrides(seed=seed, methods=_split(methods), formats=fmt),
                                            budget, full), backend, ray_address)
        out_dir = out or (Path(plan.out_dir) if plan.out_dir else Path("reports") / plan.name)
        if untrusted_config and out is None and plan.out_dir:
            from audit.runner import check_untrusted_paths

            check_untrusted_paths(plan, out_dir=plan.out_dir)
        # Before any work: the folder must be writable and replaceable, and held until written.
        with reserve_output(out_dir, overwrite=overwrite, inputs=input_paths(plan)), \
                _progress(quiet or as_json, show_plan=not quiet) as display:
            report = run_audit(plan, trust_code=trust_code, untrusted_config=untrusted_config,
                               progress=display.factory, on_plan=display.plan, started=started)
            files = write_report(report, out_dir, formats=plan.formats, overwrite=overwrite)
    except AuditError as exc:
        raise _fail(exc) from None
    failed = [o.name for o in report.outcomes if not o.ok and getattr(o.result, "failed", False)]
    if as_json:
        typer.echo(json.dumps({"report": {k: str(v) for k, v in files.items()},
                               "findings": [f.to_json() for f in report.findings],
                               "failed_methods": failed}, indent=2))
    else:
        _print_summary(report, files)
    raise typer.Exit(EXIT_METHOD_FAILED if failed else EXIT_OK)


@app.command()
def check(
    config: Annotated[Path, typer.Argument(help="The audit.toml with a [gate] table of fairness and performance thresholds.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON on stdout.")] = False,
    junit: Annotated[Path | None, typer.Option("--junit", help="Also write JUnit XML (one test case per threshold) to this file.")] = None,
    inconclusive: Annotated[str | None, typer.Option("--inconclusive", help="Treat an interval that straddles a threshold as 'fail' or 'warn' (overrides [gate]).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (overrides the config).")] = None,
    trust_code: Annotated[bool, typer.Option("--trust-code", "--trust-pickle", help=_TRUST_CODE_HELP)] = False,
    untrusted_config: Annotated[bool, typer.Option("--untrusted-config", help=_UNTRUSTED_CONFIG_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No plan, no progress display.")] = False,
    budget: Annotated[str | None, typer.Option("--budget", help=_BUDGET_HELP)] = None,
    full: Annotated[bool, typer.Option("--full", help=_FULL_HELP)] = False,
    backend: BackendOption = None,
    ray_address: RayAddressOption = None,
) -> None:
    """Deployment gate: judge the [gate] fairness and performance thresholds on confidence intervals.

    Exit codes: 0 every threshold passes, 1 a threshold is breached (or inconclusive, when
    counted as a failure), 2 usage or input error, 3 insufficient evidence (a group too small).
    """
    started = time.perf_counter()
    from audit.config import AuditPlan
    from audit.errors import InvalidConfigError
    from audit.gate import to_junit
    from audit.runner import resolve_plan, run_audit

    try:
        plan = AuditPlan.load(config)
        if not plan.gate:
            raise InvalidConfigError(
                f"The config {str(config)!r} has no [gate] table; add thresholds such as "
                "\"fairness.sex.demographic_parity_difference\" = { max = 0.10 }.")
        gate_table = dict(plan.gate)
        if inconclusive is not None:
            if inconclusive not in ("fail", "warn"):
                raise InvalidConfigError(f"The '--inconclusive' option must be 'fail' or 'warn'. Got {inconclusive!r} instead.")
            gate_table = {k: ({**v, "inconclusive": inconclusive} if isinstance(v, dict) else v)
                          for k, v in gate_table.items() if k != "inconclusive"}
        # the methods the rules read: fairness, and performance when a rule names it
        methods = ("fairness", *(("performance",) if any(str(k).startswith("performance.") for k in gate_table) else ()))
        plan = _with_execution(_with_budget(plan.with_overrides(seed=seed, methods=methods, gate=gate_table,
                                                                formats=("json",)), budget, full),  # no report to write
                               backend, ray_address)
        resolved = resolve_plan(plan, gate_required=True)  # options and gate rules, once for the whole run
        if junit is not None:  # before the audit: never an input, a link or someone else's file
            from audit.report.output import check_output_file, is_our_junit, write_file_atomic
            from audit.runner import input_paths

            def junit_target(read: list[tuple[str, str]]) -> Path:
                return check_output_file(junit, what="JUnit file", inputs=[*input_paths(plan), *read],
                                         ours=is_our_junit)
            junit_target([])
        with _progress(quiet or as_json, show_plan=not quiet) as display:
            report = run_audit(plan, trust_code=trust_code, untrusted_config=untrusted_config,
                               progress=display.factory, on_plan=display.plan, resolved=resolved,
                               started=started)
        gate = report.gate
        if junit is not None:
            try:
                read = [(str(f.get("role", "input")), str(f["path"]))  # e.g. a model.py that ran
                        for f in report.provenance.get("files", []) if f.get("path")]
                write_file_atomic(junit_target(read), to_junit(gate, name=f"audit-gate:{plan.name}").encode())
            except OSError as exc:
                from audit.errors import ReportRenderError

                raise ReportRenderError(f"Could not write the JUnit file {str(junit)!r}: {exc}.") from None
    except AuditError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps({"name": plan.name, **gate.to_json()}, indent=2, allow_nan=False))
    else:
        _print_gate(gate, plan.name)
    raise typer.Exit(gate.exit_code)


@app.command()
def compare(
    configs: Annotated[list[Path], typer.Argument(help="CHAMPION.toml CHALLENGER.toml, or one config with [models.champion] and [models.challenger], or two saved reports (results.json, saved with [report] save_predictions = true) and optionally a TOML with [compare].")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: reports/<champion>-vs-<challenger>/).")] = None,
    methods: Annotated[list[str] | None, typer.Option("--methods", "-m", help="Only these methods in each model's audit (comma-separated); the paired statistics need none.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed of both audits and the comparison (default: the champion's).")] = None,
    formats: Annotated[str | None, typer.Option("--format", "-f", help="Comma-separated subset of html,pdf,json.")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Also write JUnit XML (one test case per [compare.gate] rule) to this file.")] = None,
    inconclusive: Annotated[str | None, typer.Option("--inconclusive", help="Treat an interval that straddles a margin as 'fail' or 'warn' (overrides [compare.gate]).")] = None,
    trust_code: Annotated[bool, typer.Option("--trust-code", "--trust-pickle", help=_TRUST_CODE_HELP)] = False,
    untrusted_config: Annotated[bool, typer.Option("--untrusted-config", help=_UNTRUSTED_CONFIG_HELP)] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing report folder of audit-suite (atomically, once the new report is complete).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the gate verdicts and the report's files as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No plan, no progress display.")] = False,
    budget: Annotated[str | None, typer.Option("--budget", help=_BUDGET_HELP + " Applies to each model's audit.")] = None,
    full: Annotated[bool, typer.Option("--full", help=_FULL_HELP)] = False,
    backend: BackendOption = None,
    ray_address: RayAddressOption = None,
) -> None:
    """Champion vs challenger: audit both models on the same rows and compare them, paired.

    Writes report.html, report.pdf and results.json. With a [compare.gate] table the exit codes
    are those of audit check: 0 every rule passes, 1 a margin is breached (or inconclusive,
    when counted as a failure), 3 insufficient evidence; 2 usage or input error (e.g. the two
    configs' data are not the same rows).
    """
    from audit.compare import load_pair, run_comparison
    from audit.compare.report import write_comparison
    from audit.config import check_formats
    from audit.report.output import reserve_output
    from audit.runner import input_paths

    from audit.compare.saved import is_saved_report
    from audit.errors import InvalidConfigError

    if len(configs) in (2, 3) and all(is_saved_report(c) for c in configs[:2]):
        _compare_saved(configs, out=out, formats=formats, junit=junit, inconclusive=inconclusive,
                       overwrite=overwrite, as_json=as_json)
    saved = [str(c) for c in configs if is_saved_report(c)]
    if saved or len(configs) not in (1, 2):
        got = (f"{len(configs)} argument(s), of which {', '.join(repr(s) for s in saved)} "
               f"{'is a saved report' if len(saved) == 1 else 'are saved reports'}" if saved
               else f"{len(configs)} argument(s)")
        raise _fail(InvalidConfigError(
            "audit compare takes two configs (champion, challenger), one config with [models.champion] and "
            "[models.challenger], or two saved reports (results.json or their folders, saved with "
            f"[report] save_predictions = true) and optionally a TOML with [compare]. Got {got} instead."))
    try:
        plan_a, plan_b, table = load_pair(configs)
        fmt = _split([formats]) if formats else None
        if fmt is not None:
            check_formats(fmt)
        plans = [_with_execution(_with_budget(p.with_overrides(seed=seed, methods=_split(methods), formats=fmt),
                                              budget, full), backend, ray_address)
                 for p in (plan_a, plan_b)]
        table = _with_inconclusive(table, inconclusive)
        name = f"{plans[0].name}-vs-{plans[1].name}"
        out_dir = out or Path("reports") / name
        inputs = [*input_paths(plans[0]), *input_paths(plans[1])]
        _check_junit(junit, inputs)
        with reserve_output(out_dir, overwrite=overwrite, inputs=inputs), \
                _progress(quiet or as_json, show_plan=not quiet) as display:
            result = run_comparison(plans, table, trust_code=trust_code, untrusted_config=untrusted_config,
                                    progress=display.factory, on_plan=display.plan, name=name)
            files = write_comparison(result, out_dir, formats=plans[0].formats, overwrite=overwrite)
        _write_junit(junit, inputs, result, name)
    except AuditError as exc:
        raise _fail(exc) from None
    _finish_comparison(result, files, name, as_json)


def _compare_saved(paths: list[Path], *, out: Path | None, formats: str | None, junit: Path | None,
                   inconclusive: str | None, overwrite: bool, as_json: bool) -> None:
    """``audit compare A/results.json B/results.json [COMPARE.toml]``: from saved predictions."""
    from audit.compare.report import write_comparison
    from audit.compare.saved import compare_saved
    from audit.config import FORMATS, check_formats
    from audit.core.userfiles import load_toml

    try:
        table = load_toml(paths[2], "config file").get("compare", {}) if len(paths) == 3 else {}
        fmt = _split([formats]) if formats else FORMATS
        check_formats(fmt)
        table = _with_inconclusive(table, inconclusive)
        result = compare_saved((paths[0], paths[1]), table)
        name = result.name
        out_dir = out or Path("reports") / name
        inputs = [(f["role"], f["path"]) for f in result.provenance["files"]]
        _check_junit(junit, inputs)
        files = write_comparison(result, out_dir, formats=fmt, overwrite=overwrite)
        _write_junit(junit, inputs, result, name)
    except AuditError as exc:
        raise _fail(exc) from None
    _finish_comparison(result, files, name, as_json)


def _with_inconclusive(table: dict, inconclusive: str | None) -> dict:
    """The [compare] table with --inconclusive applied to every gate rule."""
    from audit.errors import InvalidConfigError

    if inconclusive is None:
        return table
    if inconclusive not in ("fail", "warn"):
        raise InvalidConfigError(f"The '--inconclusive' option must be 'fail' or 'warn'. Got {inconclusive!r} instead.")
    if not isinstance(table, dict) or not isinstance(table.get("gate", {}), dict):
        return table  # malformed: audit.compare.options says what is wrong with it
    gate = {k: ({**v, "inconclusive": inconclusive} if isinstance(v, dict) else v)
            for k, v in table.get("gate", {}).items() if k != "inconclusive"}
    return {**table, "gate": gate}


def _check_junit(junit: Path | None, inputs: list) -> None:  # before any work: never an input or a foreign file
    if junit is not None:
        from audit.report.output import check_output_file, is_our_junit

        check_output_file(junit, what="JUnit file", inputs=inputs, ours=is_our_junit)


def _write_junit(junit: Path | None, inputs: list, result, name: str) -> None:  # noqa: ANN001
    if junit is None or result.gate is None:
        return
    from audit.gate import to_junit
    from audit.report.output import check_output_file, is_our_junit, write_file_atomic

    try:
        write_file_atomic(check_output_file(junit, what="JUnit file", inputs=inputs, ours=is_our_junit),
                          to_junit(result.gate, name=f"audit-compare:{name}").encode())
    except OSError as exc:
        from audit.errors import ReportRenderError

        raise ReportRenderError(f"Could not write the JUnit file {str(junit)!r}: {exc}.") from None


def _finish_comparison(result, files, name: str, as_json: bool) -> None:  # noqa: ANN001
    code = result.gate.exit_code if result.gate is not None else EXIT_OK
    if as_json:
        typer.echo(json.dumps({"name": name, "report": {k: str(v) for k, v in files.items()},
                               "gate": result.gate_json()},
                              indent=2, allow_nan=False))
    else:
        _print_comparison(result, files)
        if result.gate is not None:
            _print_gate(result.gate, name)
        else:
            from audit.compare.gate import NO_GATE

            typer.echo(f"  {NO_GATE}")
    raise typer.Exit(code)


def _print_comparison(result, files) -> None:  # noqa: ANN001
    from rich.console import Console

    from audit.core.text import fixed

    console = Console(stderr=False, highlight=False, soft_wrap=True)
    for c in result.performance.values():
        e = c.change
        ci = f" (paired CI {fixed(e.lower, '+.4f')} to {fixed(e.upper, '+.4f')})" if e.lower is not None else ""
        value = fixed(e.value, "+.4f") if e.value is not None else "undefined"
        console.print(f"  {c.label}: change {value}{ci}")
    d = result.decisions
    console.print(f"  {d.changed:,} of {d.rows:,} rows change decision")
    for kind, path in files.items():
        console.print(f"  wrote {kind}: {_plain(path)}")


def _print_gate(gate, name: str) -> None:  # noqa: ANN001
    from rich.console import Console

    console = Console(stderr=False, highlight=False, soft_wrap=True)
    style = {"pass": "green", "breach": "red", "inconclusive": "yellow", "insufficient": "magenta"}
    for v in gate.verdicts:
        tag = v.status.upper() + (" (warn)" if v.status == "inconclusive" and not v.fails else "")
        console.print(f"  [{style[v.status]}]{tag:<18}[/{style[v.status]}] {_plain(v.rule)}: {_plain(v.message)}")
    counts = ", ".join(f"{n} {k}" for k, n in gate.counts().items() if n)
    console.print(f"gate {_plain(name)}: [bold]{gate.outcome}[/bold] ({counts}; exit {gate.exit_code})")


@app.command("card")
def card(
    results: Annotated[Path, typer.Argument(help="A results.json written by 'audit run'.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="The card's file (default: model_card.md beside results.json). An existing file is replaced only if it is a model card written by audit-suite.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Take the [card] table from this audit.toml instead of the one stored in results.json.")] = None,
) -> None:
    """Write the model card of a finished audit from its results.json, without running it again.

    Measured sections come from the results, each line naming its results.json key; the
    authors' sections from the [card] table (of --config, else the one the run stored).
    """
    from audit.report.card import is_model_card
    from audit.report.model import model_card_from_files
    from audit.report.output import check_output_file, write_file_atomic

    target = out if out is not None else results.parent / "model_card.md"
    inputs = [("results", str(results))] + ([("config", str(config))] if config is not None else [])
    try:
        check_output_file(target, what="model card", inputs=inputs, ours=is_model_card)
        text = model_card_from_files(results, config)
        try:
            write_file_atomic(check_output_file(target, what="model card", inputs=inputs, ours=is_model_card),
                              text.encode("utf-8"))
        except OSError as exc:
            from audit.errors import ReportRenderError

            raise ReportRenderError(f"Could not write the model card {str(target)!r}: {exc}.") from None
    except AuditError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote card: {_plain(target)}")


@app.command("methods")
def list_methods(
    name: Annotated[str | None, typer.Argument(help="A method's name: list its options (the [methods.NAME] table), with type, default, bounds and meaning.")] = None,
) -> None:
    """List the available audit methods and what each needs (and what in the inputs is code);
    with NAME, that method's options."""
    from rich.console import Console
    from rich.table import Table

    from audit.registry import METHODS

    if name is not None:
        _method_options(name)
        return
    table = Table(box=None, header_style="bold")
    for col in ("name", "title", "needs", "tasks"):
        table.add_column(col, no_wrap=col == "name")  # a wrapped name cannot be copied
    for m in METHODS:
        table.add_row(m.name, m.title, ", ".join(sorted(m.requires)) or "-", ", ".join(sorted(m.tasks)))
    console = Console()
    console.print(table)
    console.print(f"\n{CODE_NOTE}", highlight=False, markup=False)


def _method_options(name: str) -> None:
    """``audit methods NAME``: the method's options from its Config (types, defaults, bounds,
    the one-line help of its docstring) and what it supports; every cell is plain text."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from audit.errors import InvalidConfigError, did_you_mean
    from audit.registry import METHODS

    by_name = {m.name: m for m in METHODS}
    if name not in by_name:
        raise _fail(InvalidConfigError(f"Unknown method {name!r}.{did_you_mean(name, by_name)} "
                                       f"Methods: {', '.join(by_name)}."))
    m = by_name[name]
    console = Console(highlight=False, soft_wrap=False)
    console.print(Text(f"{m.name}: {m.title}", style="bold"))
    for label, values in (("tasks", m.tasks), ("modalities", m.modalities),
                          ("needs a model with", m.requires)):
        console.print(Text(f"{label}: {', '.join(sorted(values)) or '-'}"))
    if m.needs_target:
        console.print(Text("needs the true outcome (a target column)"))
    console.print(Text(f"\nOptions ([methods.{m.name}] in audit.toml; omitted ones take the default):"))
    table = Table(box=None, header_style="bold")
    for col in ("option", "type", "default", "bounds", "meaning"):
        table.add_column(col, no_wrap=col == "option", overflow="fold")
    for o in m.Config.options():
        table.add_row(*(Text(v) for v in (o.name, o.type, o.default, o.bounds or "-", o.help)))
    console.print(table)


def _with_budget(plan, budget: str | None, full: bool):  # noqa: ANN001, ANN202
    """The plan with the run's time budget: --full (none), --budget, [run] budget, the default."""
    import dataclasses

    from audit.core.cost import parse_duration
    from audit.errors import InvalidConfigError

    if full and budget is not None:
        raise InvalidConfigError("The '--full' and '--budget' options cannot be combined: --full runs "
                                 "without a budget. Got both instead.")
    if full:
        return dataclasses.replace(plan, budget=None)
    if budget is not None:
        return dataclasses.replace(plan, budget=parse_duration(budget, "--budget"))
    return plan if plan.budget is not None else dataclasses.replace(plan, budget=parse_duration(DEFAULT_BUDGET))


def _with_execution(plan, backend: str | None, address: str | None):  # noqa: ANN001, ANN202
    """The plan with --backend / --ray-address applied over [execution] (an address means Ray)."""
    import dataclasses

    from audit.execution import ExecutionConfig

    if backend is None and address is None:
        return plan
    if backend is None:
        backend = "ray"
    if backend == "ray" and address is None and plan.execution.backend == "ray":
        return plan  # the config's own address (marked as read from it: --untrusted-config refuses it)
    return dataclasses.replace(plan, execution=ExecutionConfig(backend, address))


class _progress:
    """The plan and the progress of a run on stderr.

    On a terminal: a rich progress bar per method. Otherwise (CI, ``> log``): plain log lines —
    a method's start, its progress at most every ``interval`` seconds, its end with the elapsed
    time, and the total. ``quiet`` silences the progress (``show_plan`` the plan).
    """

    interval = 10.0

    def __init__(self, quiet: bool, *, show_plan: bool = True) -> None:
        self.quiet = quiet
        self.show_plan = show_plan
        self.live = not quiet and sys.stderr.isatty()
        self.bar = None
        self.factory = None
        self.current: tuple[str, float] | None = None

    def _log(self, text: str) -> None:
        import time

        sys.stderr.write(f"[{time.perf_counter() - self.t0:7.1f} s] {_visible(text)}\n")
        sys.stderr.flush()

    def plan(self, run_plan) -> None:  # noqa: ANN001
        """Print the plan (before any method runs)."""
        if not self.show_plan:
            return
        if self.bar is not None:  # above the live bars, through their console
            for line in run_plan.lines():
                self.bar.console.print(_plain(line), highlight=False, soft_wrap=True)
        else:
            for line in run_plan.lines():
                sys.stderr.write(_visible(line) + "\n")
            sys.stderr.flush()

    def _finish_current(self) -> None:
        import time

        if self.current is not None:
            name, started = self.current
            self._log(f"{name}: finished in {time.perf_counter() - started:.1f} s")
            self.current = None

    def __enter__(self):  # noqa: ANN204
        import time

        self.t0 = time.perf_counter()
        if self.quiet:
            return self
        if not self.live:
            def log_factory(name: str, title: str):  # noqa: ANN202
                self._finish_current()
                self.current = (name, time.perf_counter())
                self._log(f"{name}: started")
                last = [time.perf_counter()]

                def update(done: int, total: int) -> None:
                    now = time.perf_counter()
                    if now - last[0] >= self.interval:
                        last[0] = now
                        self._log(f"{name}: {done:,} of {total:,} done")

                def finished(seconds: float) -> None:  # the runner's clock (provenance.plan)
                    if self.current is not None and self.current[0] == name:
                        self.current = None
                        self._log(f"{name}: finished in {seconds:.1f} s")
                update.finished = finished  # type: ignore[attr-defined]
                return update
            self.factory = log_factory
            return self
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                            TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        self.bar.__enter__()

        def factory(name: str, title: str):  # noqa: ANN202
            task = self.bar.add_task(title, total=None)

            def update(done: int, total: int) -> None:
                self.bar.update(task, completed=done, total=total)

            def finished(seconds: float) -> None:  # the runner's clock (provenance.plan)
                self.bar.update(task, description=f"{title} ({seconds:.1f} s)")
                self.bar.stop_task(task)
            update.finished = finished  # type: ignore[attr-defined]
            return update
        self.factory = factory
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
        elif not self.quiet and not self.live and exc[0] is None:  # a stopped run finished nothing
            self._finish_current()
            self._log("audit finished")


def _visible(value: object) -> str:
    from audit.core.text import visible

    return visible(value)


def _print_summary(report, files) -> None:  # noqa: ANN001
    from rich.console import Console

    console = Console(stderr=False, highlight=False, soft_wrap=True)
    colour = {"alert": "red", "warning": "yellow", "info": "cyan"}
    for o in report.outcomes:
        status = "[green]ran[/green]" if o.ok else (
            "[red]failed[/red]" if o.result.failed else "[yellow]skipped[/yellow]")
        extra = "" if o.ok else f" — {_plain(o.result.reason)}"
        console.print(f"  {_plain(o.title)}: {status} ({o.seconds:.1f} s){extra}")
    for f in report.findings:
        console.print(f"  [{colour[f.level]}]{f.level}[/{colour[f.level]}] {_plain(f.text)}")
    for kind, path in files.items():
        console.print(f"  wrote {kind}: {_plain(path)}")


# The signals that interrupt a run, and the first one received (README "Using it": exit codes).
_INTERRUPTS = ("SIGINT", "SIGTERM")
_received: list[int] = []


def _interrupt(signum: int, frame: object) -> None:
    """Stop the run: KeyboardInterrupt is the one exception that Ray's and joblib's waits, Typer
    and every ``except Exception`` pass on unchanged, so each ``finally`` on the way up runs
    (a half-written report folder is removed, a Ray instance the run started is shut down).
    A second signal while that cleanup runs ends the process at once."""
    import signal

    if _received:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    _received.append(signum)
    raise KeyboardInterrupt


def _end_interrupted(signum: int) -> None:
    """Say that the run was interrupted, then end by that same signal (the exit status a shell
    shows as 128 + N: 130 for SIGINT, 143 for SIGTERM), never with a code that reads as a
    result; a shell loop around `audit` stops on Ctrl-C, as it does for any program."""
    import atexit
    import signal

    from rich.console import Console

    name = signal.Signals(signum).name
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]interrupted:[/bold red] audit-suite received {name} and stopped before it finished; "
        f"nothing was judged (exit status {128 + signum}, the signal's). A report folder is only "
        "ever written complete: none was left half-written.")
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()  # what a normal exit runs (e.g. Ray's and joblib's shutdown)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def main() -> None:
    """Console-script entry point."""
    import signal

    # Libraries' own tqdm bars (shap's explainers) would write raw bars into a CI log and over the
    # live display: the CLI reports progress itself. tqdm reads this when it is imported.
    os.environ.setdefault("TQDM_DISABLE", "1")
    for name in _INTERRUPTS:
        signal.signal(getattr(signal, name), _interrupt)
    try:
        app()
    except BaseException as exc:
        if _received:  # whatever the interrupt became on its way up (Typer makes it SystemExit(130))
            _end_interrupted(_received[0])
        if isinstance(exc, AuditError):  # raised outside a command (should not happen; never a traceback)
            raise SystemExit(_fail(exc).exit_code) from None
        if isinstance(exc, Exception):  # a bug in audit-suite: never a traceback, never exit 1 (= breach)
            raise SystemExit(_internal_error(exc)) from None
        raise


def _internal_error(exc: Exception) -> int:
    """Say that audit-suite itself failed, with the traceback in a log file, and return exit 4:
    an unexpected exception must never read as a breach (1) or a pass, nor flood a CI log."""
    import tempfile
    import traceback

    from rich.console import Console

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    fd, log = tempfile.mkstemp(prefix="audit-internal-error-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"audit {' '.join(sys.argv[1:])}\n{text}")
    detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]internal error:[/bold red] audit-suite failed: {_plain(detail)}. This is a bug in "
        f"audit-suite, not in your inputs; nothing was judged. The traceback is in {_plain(log)} "
        "(please include it in a bug report).")
    return EXIT_METHOD_FAILED


__all__ = ["app", "main"]
