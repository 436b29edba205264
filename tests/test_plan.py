"""The plan before work: counted estimates, the time budget, progress logs, parallel chunks.

Nothing here times anything: estimates are checked through the units they are made of (model
rows, model calls, refits), which can be counted exactly; seconds come from unit costs that the
tests set by hand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audit import execution
from audit.cli import app
from audit.config import AuditPlan
from audit.core.cost import (Plan, Reducible, UnitCosts, fit_budget, parse_duration, precision_cost,
                             seconds)
from audit.core.dataset import Encoding
from audit.errors import InvalidConfigError
from audit.stats.permutation import smallest_reaching_b
from tests.conftest import ROW_SHARDED, make_frame

# Planned model rows are within this factor of the rows the method then evaluates (stated in
# the README); refits are planned exactly.
COUNT_FACTOR = 1.5
# Exceptions, each with its reason: (lowest, highest) ratio of performed to planned rows.
COUNT_EXCEPTIONS = {
    # its deletion curves run on the rows earlier methods explained, unknown before they run:
    # the plan assumes faithfulness_rows per source, an upper bound (never an underestimate)
    "agreement": (0.4, 1.0 + 1e-9),
}


def _stderr(result) -> str:  # noqa: ANN001
    try:
        return result.stderr
    except (ValueError, AttributeError):
        return result.output


@pytest.fixture
def sk_dir(tmp_path):
    """A scikit-learn logistic regression saved with skops, with its data and audit.toml."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    frame = make_frame(240)
    enc = Encoding.fit(frame[["age", "hours", "job"]])
    X, y = enc.encode(frame), (frame.income == ">50K").astype(int)
    sio.dump(LogisticRegression(max_iter=500).fit(X, y), tmp_path / "model.skops")
    (tmp_path / "encoding.json").write_text(json.dumps(enc.to_dict()))
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "audit.toml").write_text(
        'name = "sk"\n[model]\npath = "model.skops"\nencoding = "encoding.json"\n'
        '[data]\npath = "data.csv"\ntarget = "income"\npositive_label = ">50K"\nsensitive = ["sex"]\n'
        '[report]\nformats = ["html", "json"]\n'
        '[methods.lime]\nnum_samples = 300\nn_global_rows = 10\nn_seeds = 2\n'
        '[methods.permutation_significance]\nn_permutations = 19\nn_jobs = 1\n'
        '[methods.counterfactuals]\nmax_search_rows = 20\nn_counterfactuals = 1\n'
        '[methods.shap]\nn_bootstrap = 50\n[methods.fairness]\nn_bootstrap = 100\nn_permutations = 99\n')
    return tmp_path


def _run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


# --------------------------------------------------------------------------------------------
# execution.map: chunk order and seeds independent of the worker count
# --------------------------------------------------------------------------------------------


def _draw(index: int) -> bytes:
    return execution.chunk_rng(np.random.SeedSequence(7), index).standard_normal(5).tobytes()


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_map_gives_byte_identical_results_for_one_and_two_workers(backend):
    one = execution.map(_draw, list(range(9)), n_jobs=1, prefer=backend)
    two = execution.map(_draw, list(range(9)), n_jobs=2, prefer=backend)
    assert one == two
    assert len(set(one)) == 9  # every chunk has its own stream


def test_map_reports_progress_in_order_and_n_jobs_defaults_to_usable_cores():
    seen = []
    assert execution.map(lambda c: c + 1, [1, 2, 3], n_jobs=2, prefer="threads",
                         progress=lambda d, t: seen.append((d, t))) == [2, 3, 4]
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert execution.resolve_n_jobs(None) == execution.usable_cores() >= 1
    with pytest.raises(InvalidConfigError, match="n_jobs"):
        execution.resolve_n_jobs(0)


def test_n_jobs_beyond_the_usable_cores_is_capped_at_them():
    assert execution.resolve_n_jobs(256) == execution.usable_cores()
    assert execution.resolve_n_jobs(1) == 1


@pytest.mark.parametrize("method", sorted(ROW_SHARDED))
def test_row_sharded_explanations_do_not_depend_on_the_local_workers_or_their_order(method, model_dir, tmp_path,
                                                                                      monkeypatch, small_shards):
    cfg = model_dir / "audit.toml"
    cfg.write_text(cfg.read_text() + ROW_SHARDED[method])
    one_worker = execution.map
    shards: list[int] = []

    def two_processes_last_chunk_first(fn, chunks, **kw):  # noqa: ANN001, ANN003, ANN202
        chunks = list(chunks)
        shards.append(len(chunks))
        kw.update(n_jobs=2, prefer="processes")
        return one_worker(fn, chunks[::-1], **kw)[::-1]

    docs = []
    for k in range(2):
        if k:
            monkeypatch.setattr(execution, "map", two_processes_last_chunk_first)
        out = tmp_path / f"out{k}"
        res = _run("run", str(cfg), "--out", str(out), "-q", "-m", method, "--format", "json", "--full")
        assert res.exit_code == 0, res.output
        doc = json.loads((out / "results.json").read_text())
        assert doc["methods"][method]["status"] == "ok", doc["methods"][method]
        docs.append(doc["methods"][method]["result"])
    assert max(shards) > 1  # the rows were explained in several shards
    assert json.dumps(docs[0], sort_keys=True) == json.dumps(docs[1], sort_keys=True)


def test_permutation_significance_is_byte_identical_for_n_jobs_1_and_2():
    from sklearn.linear_model import LogisticRegression

    from audit.core.adapter import as_adapter
    from audit.core.dataset import DatasetSpec, build_audit_data
    from audit.core.method import RunContext
    from audit.methods.permutation_significance import PermutationSignificance, PermutationSignificanceConfig

    frame = make_frame(200)
    data = build_audit_data(frame, DatasetSpec(target="income", features=("age", "hours", "job"),
                                               positive_label=">50K"), None)
    model = as_adapter(LogisticRegression(max_iter=300).fit(data.X, data.y), task="binary",
                       encoding=data.encoding)
    out = []
    for jobs in (1, 2):
        cfg = PermutationSignificanceConfig(n_permutations=19, n_repeats=2, n_jobs=jobs)
        res = PermutationSignificance().run(model, data, cfg, RunContext.default(3))
        out.append(json.dumps(res.to_json(), sort_keys=True))
    assert out[0] == out[1]


def test_agreement_permutation_importance_is_identical_for_n_jobs_1_and_2():
    from sklearn.linear_model import LogisticRegression

    from audit.core.adapter import as_adapter
    from audit.core.dataset import DatasetSpec, build_audit_data
    from audit.methods.agreement import permutation_importance

    frame = make_frame(150)
    data = build_audit_data(frame, DatasetSpec(target="income", features=("age", "hours", "job"),
                                               positive_label=">50K"), None)
    model = as_adapter(LogisticRegression(max_iter=300).fit(data.X, data.y), task="binary",
                       encoding=data.encoding)
    rows = np.arange(data.n_rows)
    a = permutation_importance(model, data, rows, 3, np.random.default_rng(1), n_jobs=1)
    b = permutation_importance(model, data, rows, 3, np.random.default_rng(1), n_jobs=2)
    assert a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------------------------
# The cost model
# --------------------------------------------------------------------------------------------


def test_seconds_price_counted_units_with_measured_costs():
    costs = UnitCosts(per_row=1e-6, per_call=1e-3, refit=2.0, refit_rows=100, cores=4)
    assert seconds(Plan("x", model_rows=1e6, model_calls=10, fixed_seconds=3), costs) == pytest.approx(4.01)
    # 9 refits of 200 rows (twice the measured 100) on 3 workers, each beyond the first adding
    # PARALLEL_EFFICIENCY of one (measured): 9 × 4 s / (1 + 2e)
    p = Plan("r", refits=9, refit_rows=200, n_jobs=3)
    from audit.core.cost import PARALLEL_EFFICIENCY as e
    from audit.core.cost import POOL_STARTUP_SECONDS
    assert seconds(p, costs) == pytest.approx(36 / (1 + 2 * e) + POOL_STARTUP_SECONDS)
    # never more workers than cores
    assert seconds(dataclasses.replace(p, n_jobs=64), costs) == pytest.approx(36 / (1 + 3 * e) + POOL_STARTUP_SECONDS)
    assert seconds(dataclasses.replace(p, n_jobs=1), costs) == pytest.approx(36)


def test_gradient_work_is_priced_by_the_measured_forward_backward_unit():
    costs = UnitCosts(per_row=1e-9, per_call=1e-9, grad_per_row=2e-6, grad_per_call=1e-4)
    p = Plan("g", grad_rows=1e6, grad_calls=100)
    assert seconds(p, costs) == pytest.approx(2.0 + 0.01)


def test_unit_costs_measure_a_backward_pass_for_torch_models(model_dir):
    """The runner's measurement differentiates the model through ``forward``."""
    from audit.core.cost import measure_unit_costs
    from audit.runner import load_inputs

    inputs = load_inputs(AuditPlan.load(model_dir / "audit.toml"))
    model, seen = inputs.model, []
    real = model.forward

    def forward(x):  # noqa: ANN001, ANN202
        seen.append(bool(x.requires_grad))
        return real(x)

    model.forward = forward
    costs = measure_unit_costs(model, inputs.data.X)
    assert any(seen) and costs.grad_per_call > 0


def test_unit_costs_leave_the_gradient_unit_at_zero_without_gradients(sk_dir):
    from audit.core.cost import measure_unit_costs
    from audit.runner import load_inputs

    sk = load_inputs(AuditPlan.load(sk_dir / "audit.toml"))
    costs = measure_unit_costs(sk.model, sk.data.X)
    assert costs.per_call > 0 and costs.grad_per_call == costs.grad_per_row == 0.0


@pytest.mark.parametrize("explainer", ["deep", "gradient"])
def test_shap_plans_the_backward_passes_shap_then_performs(explainer, model_dir):
    """Every torch.autograd.grad call shap makes, and the rows it differentiates, are counted
    and compared with the plan's gradient passes (the explainer's own Python work is priced on
    top by named constants in audit.methods.shap)."""
    import torch

    from audit.methods import shap as shap_method
    from audit.runner import _context, load_inputs

    plan = AuditPlan.load(model_dir / "audit.toml")
    inputs = load_inputs(plan)
    options = {"explainer": explainer, "n_rows": 30, "gradient_n_rows": 20, "background_size": 12,
               "gradient_nsamples": 40, "n_bootstrap": 50}
    config = shap_method.ShapConfig.from_dict(options, method="shap")
    method = shap_method.Shap()
    ctx = _context(plan, inputs, "shap", lambda d, t: None, {})
    p = method.plan(inputs.model, inputs.data, config, ctx)
    calls, rows = [], []
    real = torch.autograd.grad

    def grad(outputs, inputs_, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        first = inputs_[0] if isinstance(inputs_, (list, tuple)) else inputs_
        calls.append(1)
        rows.append(len(first))
        return real(outputs, inputs_, *a, **k)

    torch.autograd.grad = grad
    try:
        method.run(inputs.model, inputs.data, config, _context(plan, inputs, "shap", lambda d, t: None, {}))
    finally:
        torch.autograd.grad = real
    n = 30 if explainer == "deep" else 20  # n_rows (DeepLIFT) or gradient_n_rows
    # one pass per row (one output): of the row against 2 × 12 background rows, or of 40 samples
    assert len(calls) == n and sum(rows) == p.grad_rows == n * (2 * 12 if explainer == "deep" else 40)
    assert p.grad_calls == n
    overhead = (shap_method.DEEP_SECONDS_PER_ROW + 12 * shap_method.DEEP_SECONDS_PER_BACKGROUND_ROW
                if explainer == "deep" else 40 * shap_method.GRADIENT_SECONDS_PER_SAMPLE)
    assert p.fixed_seconds == pytest.approx(n * overhead)


def test_lime_prices_its_own_work_per_continuous_feature_and_sample(model_dir):
    from audit.methods import lime as lime_method
    from audit.runner import _context, load_inputs

    plan = AuditPlan.load(model_dir / "audit.toml")
    inputs = load_inputs(plan)
    config = lime_method.LimeConfig.from_dict({"num_samples": 500}, method="lime")
    p = lime_method.Lime().plan(inputs.model, inputs.data, config,
                                      _context(plan, inputs, "lime", lambda d, t: None, {}))
    continuous = sum(len(c) == 1 for c in inputs.data.encoding.groups.values())
    samples = p.model_rows - inputs.data.n_rows
    assert 0 < continuous < len(inputs.data.encoding.groups)  # the fixture has a categorical feature
    assert p.fixed_seconds == pytest.approx(samples * lime_method.LIME_SECONDS_PER_SAMPLE_FEATURE * continuous)


@pytest.mark.parametrize("text, value", [("90s", 90), ("5m", 300), ("2.5min", 150), ("1h", 3600), (12, 12)])
def test_durations_parse(text, value):
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["5 minutes", "-1s", "0", "abc", True])
def test_bad_durations_are_config_errors(text):
    with pytest.raises(InvalidConfigError, match="--budget"):
        parse_duration(text)


def test_precision_cost_states_the_monte_carlo_error_and_interval_widening():
    b = precision_cost("n_permutations", 999, 99, Reducible(99, "permutations", 0.05))
    assert "0.0069 to 0.0219" in b and "0.0010 to 0.0100" in b
    assert "×2.00" in precision_cost("n_rows", 400, 100, Reducible(50, "rows"))


def test_precision_cost_states_what_the_permutation_floor_guarantees_after_bh():
    """At the floor B = F/alpha - 1 a lone effect reaches alpha after Benjamini–Hochberg over F
    features only with zero exceedances: adjusted p = F (k + 1)/(B + 1)."""
    F = 5
    floor = smallest_reaching_b(F, 0.05, "greater", "bh")
    assert F / (floor + 1) <= 0.05 < 2 * F / (floor + 1)
    at_floor = precision_cost("n_permutations", 999, floor, Reducible(floor, "permutations", 0.05, family=F))
    assert f"Benjamini–Hochberg over {F} features only a lone effect with zero exceedances" in at_floor
    above = precision_cost("n_permutations", 999, 399, Reducible(floor, "permutations", 0.05, family=F))
    assert "at most 3 exceedances" in above  # 5 (k + 1)/400 <= 0.05  <=>  k <= 3
    below = precision_cost("n_permutations", 999, 49, Reducible(19, "permutations", 0.05, family=F))
    assert "no lone effect can reach" in below


class _Toy:
    """A method whose cost is its ``n`` option, floor 10."""

    def plan(self, config):  # noqa: ANN001, ANN202
        return Plan("toy", model_rows=config.n, reducible={"n": Reducible(10, "rows")})


@dataclasses.dataclass(frozen=True)
class _ToyConfig:
    n: int = 1000


def _price(method, config):  # noqa: ANN001, ANN202
    p = method.plan(config)
    return p, seconds(p, UnitCosts(per_row=0.01))


def test_budget_lowers_defaulted_sizes_to_fit_but_never_a_user_set_one():
    entries = [("a", _Toy(), _ToyConfig(), set()), ("b", _Toy(), _ToyConfig(), {"n"})]
    configs, lowered, total = fit_budget(entries, _price, budget=12.0)   # 10 s + 10 s as configured
    assert configs["b"].n == 1000                                        # the user's value stands
    assert 10 <= configs["a"].n <= 200 and total <= 12.0
    assert [(x.method, x.option, x.old) for x in lowered] == [("a", "n", 1000)]
    # below the floors: the floors come back and the caller must stop
    configs, _, total = fit_budget(entries, _price, budget=1.0)
    assert configs["a"].n == 10 and total > 1.0


# --------------------------------------------------------------------------------------------
# Plans against what runs: counts, budget, stop before work
# --------------------------------------------------------------------------------------------


def test_planned_model_rows_and_refits_match_what_the_methods_perform(sk_dir):
    out = sk_dir / "out"
    result = _run("run", str(sk_dir / "audit.toml"), "--out", str(out), "--full", "-q")
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    record = doc["provenance"]["plan"]
    by_name = {m["method"]: m for m in record["methods"]}
    assert {"fairness", "surrogate", "shap", "lime", "counterfactuals", "permutation_significance",
            "agreement"} <= set(by_name)
    for name, m in by_name.items():
        assert m["estimated_seconds"] >= 0 and m["actual_seconds"] > 0
        done = m["performed"]["model_rows"]
        if m["model_rows"]:
            ratio = done / m["model_rows"]
            low, high = COUNT_EXCEPTIONS.get(name, (1 / COUNT_FACTOR, COUNT_FACTOR))
            assert low <= ratio <= high, (name, m["model_rows"], done)
    perm = doc["methods"]["permutation_significance"]["result"]
    assert by_name["permutation_significance"]["refits"] == perm["n_permutations"] + 1 == 20
    assert perm["n_null_used"] + perm["failed_refits"] + 1 == by_name["permutation_significance"]["refits"]
    html = (out / "report.html").read_text()
    assert "Plan and cost" in html and "estimated" in html


@contextlib.contextmanager
def _hand_set_costs(sk_dir):
    """The plan's inputs, with unit costs hand-set (each model row 10 µs, a refit 50 ms) so that
    only the sample sizes decide and two plans in one test price the same work the same."""
    import audit.runner as runner
    from audit.runner import load_inputs, select_methods

    plan = AuditPlan.load(sk_dir / "audit.toml")
    inputs = load_inputs(plan)
    classes = [c() for c in select_methods(None)]
    configs = {m.name: m.Config.from_dict(plan.method_options.get(m.name, {}), method=m.name) for m in classes}
    real = (runner.measure_unit_costs, runner.measure_refit)
    runner.measure_unit_costs = lambda model, X, **kw: UnitCosts(per_row=1e-5, per_call=1e-4, cores=1)
    runner.measure_refit = lambda model, X, y, costs: dataclasses.replace(costs, refit=0.05, refit_rows=len(X))
    try:
        yield plan, inputs, classes, configs
    finally:
        runner.measure_unit_costs, runner.measure_refit = real


def test_a_small_budget_lowers_defaults_states_the_precision_and_keeps_user_options(sk_dir):
    from audit.runner import plan_run

    with _hand_set_costs(sk_dir) as (plan, inputs, classes, configs):
        full, same = plan_run(plan, inputs, classes, configs)          # no budget: nothing lowered
        assert full.lowered == () and same == configs
        budget = 0.8 * full.total
        run_plan, new = plan_run(dataclasses.replace(plan, budget=budget), inputs, classes, configs)
    lowered = {(x.method, x.option): x for x in run_plan.lowered}
    assert lowered and run_plan.total <= budget
    assert ("lime", "num_samples") not in lowered            # set in the config: the user's
    assert new["lime"].num_samples == 300 and new["permutation_significance"].n_permutations == 19
    assert all("widen" in x.cost or "error" in x.cost for x in lowered.values())
    for (name, option), x in lowered.items():
        assert getattr(new[name], option) == x.new < x.old


def test_the_budget_counts_the_time_already_spent_loading_and_the_time_to_write_the_report(sk_dir):
    import time

    from audit.core.cost import render_seconds
    from audit.runner import plan_run

    with _hand_set_costs(sk_dir) as (plan, inputs, classes, configs):
        free, _ = plan_run(plan, inputs, classes, configs)  # methods alone, nothing lowered
        writing = render_seconds(plan.formats, sum(m.plan is not None for m in free.methods))
        spent = 10 + 0.2 * free.total
        budget = free.total + writing + 10  # the methods alone would fit; with loading, not
        run_plan, new = plan_run(dataclasses.replace(plan, budget=budget), inputs, classes, configs,
                                 started=time.perf_counter() - spent)
    assert free.spent == free.writing == 0.0                     # no start given: methods only
    assert run_plan.spent >= spent and run_plan.writing == pytest.approx(writing) and writing > 0
    assert run_plan.lowered and run_plan.total <= budget          # spent + methods + writing
    assert run_plan.total == pytest.approx(run_plan.spent + run_plan.writing
                                           + sum(m.estimate for m in run_plan.methods))
    text = "\n".join(run_plan.lines())
    assert "loading and measuring" in text and "writing the report" in text
    assert render_seconds(("json",), 5) == 0.0


def test_lowered_permutations_still_reach_the_configured_level(sk_dir):
    from audit.runner import load_inputs, plan_run, select_methods

    options = {"permutation_significance": {"n_jobs": 1}}
    plan = dataclasses.replace(AuditPlan.load(sk_dir / "audit.toml"), budget=1.0,
                               method_options=options, methods=("permutation_significance",))
    inputs = load_inputs(plan)
    classes = [c() for c in select_methods(plan.methods)]
    configs = {m.name: m.Config.from_dict(options[m.name], method=m.name) for m in classes}
    import audit.runner as runner

    real = (runner.measure_unit_costs, runner.measure_refit)
    runner.measure_unit_costs = lambda model, X, **kw: UnitCosts(per_row=1e-6, per_call=1e-4, cores=1)
    runner.measure_refit = lambda model, X, y, costs: dataclasses.replace(costs, refit=0.01, refit_rows=len(X))
    try:
        run_plan, new = plan_run(plan, inputs, classes, configs)
    finally:
        runner.measure_unit_costs, runner.measure_refit = real
    B = new["permutation_significance"].n_permutations
    assert B is not None and smallest_reaching_b(3, 0.05, "greater", "bh") <= B < 119  # default 119
    (x,) = run_plan.lowered
    assert x.option == "n_permutations" and "Monte Carlo standard error" in x.cost
    assert "Benjamini–Hochberg over 3 features" in x.cost  # what the lowered B still guarantees


def test_a_budget_lowered_permutation_count_says_so_in_the_result(sk_dir):
    from audit.methods.permutation_significance import PermutationSignificance, PermutationSignificanceConfig
    from audit.runner import _context, load_inputs

    plan = AuditPlan.load(sk_dir / "audit.toml")
    inputs = load_inputs(plan)
    config = PermutationSignificanceConfig.from_dict({"n_jobs": 1, "n_permutations": 59},
                                                     method="permutation_significance")
    method = PermutationSignificance()
    ctx = _context(plan, inputs, method.name, lambda d, t: None, {})
    lowered = method.run(inputs.model, inputs.data, config, dataclasses.replace(ctx, lowered=frozenset({"n_permutations"})))
    assert lowered.n_permutations_chosen == "lowered to fit the time budget (n_permutations)"
    ctx = _context(plan, inputs, method.name, lambda d, t: None, {})
    assert method.run(inputs.model, inputs.data, config, ctx).n_permutations_chosen == "configured (n_permutations)"


def test_a_budget_that_cannot_fit_exits_2_before_any_work_and_writes_nothing(sk_dir):
    out = sk_dir / "nested" / "out"
    result = _run("run", str(sk_dir / "audit.toml"), "--out", str(out), "--budget", "0.001s",
                  "--methods", "permutation_significance")  # chosen: never left out
    assert result.exit_code == 2
    text = result.output
    assert "cannot fit the time budget" in text and "--full" in text and "Traceback" not in text
    assert not out.exists() and not (sk_dir / "nested").exists()
    assert "started" not in text  # no method ran


def test_full_and_budget_together_and_a_bad_budget_exit_2(sk_dir):
    r = _run("run", str(sk_dir / "audit.toml"), "--full", "--budget", "5m")
    assert r.exit_code == 2 and "--full" in r.output
    r = _run("run", str(sk_dir / "audit.toml"), "--budget", "soon")
    assert r.exit_code == 2 and "duration" in r.output


def test_run_table_budget_is_read_and_unknown_run_keys_are_refused(tmp_path):
    base = {"data": {"path": "d.csv", "target": "y"}, "model": {"predictions": "s"}}
    assert AuditPlan.from_dict({**base, "run": {"budget": "2m"}}, base_dir=tmp_path).budget == 120
    assert AuditPlan.from_dict(base, base_dir=tmp_path).budget is None
    with pytest.raises(InvalidConfigError, match="budget"):
        AuditPlan.from_dict({**base, "run": {"budgit": "2m"}}, base_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# Progress when not on a terminal (CliRunner is not a TTY)
# --------------------------------------------------------------------------------------------


def test_without_a_terminal_the_plan_and_plain_log_lines_go_to_stderr(sk_dir):
    out = sk_dir / "out"
    result = _run("run", str(sk_dir / "audit.toml"), "--out", str(out), "-m", "fairness,surrogate",
                  "--format", "json")
    assert result.exit_code == 0, result.output
    err = _stderr(result)
    lines = err.splitlines()
    assert lines[0].startswith("plan (budget 3 min")
    assert any(line.strip().startswith("fairness: predictions on 240 rows") for line in lines)
    for needle in ("fairness: started", "fairness: finished in", "surrogate: finished in", "audit finished"):
        assert needle in err, err
    assert "\x1b" not in err  # no terminal control sequences in a log


def test_quiet_silences_the_plan_and_the_progress(sk_dir):
    result = _run("run", str(sk_dir / "audit.toml"), "--out", str(sk_dir / "out"), "-q",
                  "-m", "surrogate", "--format", "json")
    assert result.exit_code == 0, result.output
    err = _stderr(result)
    assert "plan (" not in err and "started" not in err


def test_check_prints_the_plan_for_the_fairness_run(sk_dir):
    toml = (sk_dir / "audit.toml").read_text() + (
        '[gate]\n"fairness.sex.demographic_parity_difference" = { max = 0.9 }\n')
    (sk_dir / "audit.toml").write_text(toml)
    result = _run("check", str(sk_dir / "audit.toml"))
    assert result.exit_code in (0, 1, 3), result.output
    err = _stderr(result)
    assert "plan (" in err and "fairness:" in err and "shap" not in err


def test_counts_are_not_disturbed_by_the_counter(sk_dir):
    """The runner's counter wraps the adapter only while a method runs."""
    from audit.runner import _Counted, load_inputs

    inputs = load_inputs(AuditPlan.load(sk_dir / "audit.toml"))
    model = inputs.model
    X = inputs.data.X[:7]
    with _Counted(model) as c:
        model.predict_proba(X)
        model.predict(X)
    assert (c.rows, c.calls) == (14, 2)
    assert "scores" not in vars(model)
    pd.testing.assert_frame_equal(pd.DataFrame(model.predict_proba(X)), pd.DataFrame(model.predict_proba(X)))


@pytest.mark.parametrize("kind", ["torch", "sklearn"])
def test_every_registered_method_plans_without_error_in_countable_units(kind, request):
    from audit.core.cost import Plan as PlanType
    from audit.registry import METHODS
    from audit.runner import _context, load_inputs

    # one fixture only: model_dir and sk_dir write into the same tmp_path, so asking for both
    # left the "torch" case auditing the scikit-learn model
    folder = request.getfixturevalue("model_dir" if kind == "torch" else "sk_dir")
    plan = AuditPlan.load(folder / "audit.toml")
    assert ("torch" in load_inputs(plan).model.capabilities) == (kind == "torch")
    inputs = load_inputs(plan)
    for cls in METHODS:
        method = cls()
        config = cls.Config.from_dict({}, method=cls.name)
        if method.skip_reason(inputs.model, inputs.data, config) is not None:
            continue
        p = method.plan(inputs.model, inputs.data, config, _context(plan, inputs, cls.name, lambda d, t: None, {}))
        assert isinstance(p, PlanType) and p.description, cls.name
        assert min(p.model_rows, p.model_calls, p.uncounted_rows, p.grad_rows, p.grad_calls, p.refits,
                   p.fixed_seconds) >= 0, cls.name
        for option, spec in p.reducible.items():
            assert hasattr(config, option) and spec.minimum >= 1, (cls.name, option)


def _plan_with_slow_refits(sk_dir, methods):
    from audit.runner import load_inputs, plan_run, select_methods

    plan = dataclasses.replace(AuditPlan.load(sk_dir / "audit.toml"), budget=60.0, methods=methods)
    inputs = load_inputs(plan)
    classes = [c() for c in select_methods(plan.methods)]
    configs = {m.name: m.Config.from_dict(plan.method_options.get(m.name, {}), method=m.name) for m in classes}
    import audit.runner as runner

    real = (runner.measure_unit_costs, runner.measure_refit)
    runner.measure_unit_costs = lambda model, X, **kw: UnitCosts(per_row=1e-7, per_call=1e-5, cores=1)
    runner.measure_refit = lambda model, X, y, costs: dataclasses.replace(costs, refit=10.0, refit_rows=len(X))
    try:
        return plan_run(plan, inputs, classes, configs)
    finally:
        runner.measure_unit_costs, runner.measure_refit = real


def test_a_default_audit_leaves_out_a_method_that_cannot_fit_and_says_how_to_run_it(sk_dir):
    run_plan, _ = _plan_with_slow_refits(sk_dir, None)   # default methods: ~20 refits of 10 s minimum
    assert run_plan.over_budget["permutation_significance"] > 60.0  # its estimate, kept for provenance.plan
    line = next(m for m in run_plan.methods if m.name == "permutation_significance")
    reason = line.skip_reason
    assert "not run" in reason and "--methods permutation_significance" in reason and "--full" in reason
    assert line.plan is None and "not run" in line.line()
    assert re.findall(r"[\d.]+ s\b", reason) == ["60 s"], reason  # the budget; no estimate: it depends on the machine
    assert run_plan.total <= 60.0 and any(m.plan is not None for m in run_plan.methods)


def test_a_method_the_user_chose_is_never_left_out_the_run_stops_instead(sk_dir):
    with pytest.raises(InvalidConfigError, match=r"cannot fit the time budget of 60 s.*--budget \d+m"):
        _plan_with_slow_refits(sk_dir, ("permutation_significance", "fairness"))


def test_a_model_audited_without_its_encoding_says_its_inputs_were_encoded_from_the_audited_rows(sk_dir):
    """A model trained on raw values would see standardized ones: the report must say so."""
    from audit.runner import ENCODING_FITTED_NOTE

    out = sk_dir / "out"
    with_enc = _run("run", str(sk_dir / "audit.toml"), "--out", str(out), "-q", "--methods", "performance",
                    "--format", "json")
    assert with_enc.exit_code == 0, with_enc.output
    assert ENCODING_FITTED_NOTE not in json.loads((out / "results.json").read_text())["limitations"]
    toml = (sk_dir / "audit.toml").read_text().replace('encoding = "encoding.json"\n', "")
    (sk_dir / "audit.toml").write_text(toml)
    res = _run("run", str(sk_dir / "audit.toml"), "--out", str(out), "-q", "--methods", "performance",
               "--format", "json", "--overwrite")
    assert res.exit_code == 0, res.output
    assert ENCODING_FITTED_NOTE in json.loads((out / "results.json").read_text())["limitations"]
