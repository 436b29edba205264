"""Issue 12, hangs / memory / silent wrong results: no input hangs, allocates without bound or is
accepted out of range. The hostile files of the bad-input corpus (tests/bad_inputs/limits_*,
model_*, encoding_*, config_*) run through the real CLI in test_bad_inputs.py; this module
covers what the corpus cannot: `audit check`, the environment variable, every adapter's output
check, the declarative option bounds over every registered method, and the helpers on their own.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from audit.cli import app
from audit.core.adapter import CallableAdapter, SklearnAdapter, check_outputs
from audit.core.limits import ENV_VAR, format_size, memory_budget, memory_limit, parse_size
from audit.core.method import OPTION_BOUNDS, check_bounds
from audit.errors import DataValidationError, InvalidConfigError, ModelLoadError
from audit.registry import METHODS

CORPUS = Path(__file__).resolve().parent / "bad_inputs"


def _case(name: str, tmp_path: Path) -> Path:
    """A corpus case staged over the shared files (as test_bad_inputs does)."""
    work = tmp_path / name
    shutil.copytree(CORPUS / "_shared", work)
    for f in (CORPUS / name).iterdir():
        if f.name != "expect.toml":
            shutil.copy(f, work / f.name)
    return work


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output.strip()


# ---- the deployment gate: NaN weights used to hang fairlearn's ThresholdOptimizer --------------


def test_audit_check_with_nan_weights_is_an_input_error_not_a_hang(tmp_path):
    work = _case("model_nan_weights", tmp_path)
    toml = work / "audit.toml"
    toml.write_text(toml.read_text() + '\n[gate]\n"fairness.sex.demographic_parity_difference" = { max = 0.1 }\n')
    code, text = _cli("check", str(toml), "-q")
    assert code == 2, text
    assert text.startswith("error:") and "returned NaN" in text and "120 of 120 rows" in text


def test_threshold_optimizer_what_if_never_sees_a_non_finite_score():
    """Defence in depth behind the adapter check: fairness' what-if hands fairlearn (which loops
    without end on NaN) only histogram bin midpoints, and no NaN score enters a count table."""
    from audit.methods.fairness.what_if import _what_if
    from audit.stats.counts import GroupTable

    rng = np.random.default_rng(0)
    scores = rng.random(200)
    y = rng.integers(0, 2, 200)
    codes = np.repeat([0, 1], 100)
    table = GroupTable.from_rows(["a", "b"], codes, y, (scores > 0.5).astype(np.int64), scores, n_bins=20)
    out = _what_if(table, np.ones(2, bool), rng=np.random.default_rng(1))
    assert [w.constraint for w in out] == ["demographic_parity", "equalized_odds"]
    assert all(w.error is None and w.accuracy_after is not None for w in out)
    scores[[3, 50]] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        GroupTable.from_rows(["a", "b"], codes, y, (np.nan_to_num(scores) > 0.5).astype(np.int64), scores, n_bins=20)


# ---- the memory budget -----------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [("4GiB", 4 * 1024**3), ("512MB", 512 * 1000**2),
                                            ("2G", 2 * 1024**3), ("1.5 MiB", 1572864),
                                            (3_000_000, 3_000_000)])
def test_memory_sizes_parse_with_binary_and_decimal_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["lots", "4 parsecs", "-1GiB", True, "100KiB", 12])
def test_unreadable_or_tiny_memory_sizes_are_config_errors(bad):
    with pytest.raises(InvalidConfigError, match="memory"):
        parse_size(bad)


def test_the_default_budget_is_half_the_ram_and_the_environment_and_config_override_it(monkeypatch):
    import os

    monkeypatch.delenv(ENV_VAR, raising=False)
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert memory_budget() == (ram // 2, f"the default: half of the {format_size(ram)} of RAM")
    monkeypatch.setenv(ENV_VAR, "2GiB")
    assert memory_budget()[0] == 2 * 1024**3
    with memory_limit(parse_size("3GiB")):  # [limits] memory wins over the environment
        assert memory_budget()[0] == 3 * 1024**3
    assert memory_budget()[0] == 2 * 1024**3


def test_the_environment_variable_budget_refuses_a_gzip_bomb_through_the_cli(tmp_path, monkeypatch):
    work = _case("limits_gzip_bomb", tmp_path)
    toml = work / "audit.toml"
    toml.write_text(toml.read_text().split("[limits]")[0])  # no [limits]: the variable decides
    monkeypatch.setenv(ENV_VAR, "1MiB")
    code, text = _cli("run", str(toml), "--out", str(tmp_path / "out"), "-q")
    assert code == 2 and "decompresses to at least" in text and f"{ENV_VAR}=1MiB" in text, text
    monkeypatch.setenv(ENV_VAR, "64MiB")  # the same file is fine under a larger budget
    code, text = _cli("run", str(toml), "--out", str(tmp_path / "out"), "-q", "--methods", "surrogate")
    assert code == 0, text


def test_npz_headers_are_read_without_allocating_the_declared_array(tmp_path):
    from audit.core.modalities import npz_sizes

    path = tmp_path / "forged.npz"
    path.write_bytes((CORPUS / "limits_npz_forged_header" / "data.npz").read_bytes())
    (shape, dtype, nbytes), = npz_sizes(path).values()
    assert shape == (1_000_000, 1, 1000, 1000) and dtype == np.float64
    assert nbytes == 8 * 10**12  # 7.3 TiB declared; the file is a few hundred bytes
    real = tmp_path / "real.npz"
    np.savez_compressed(real, X=np.zeros((3, 4), np.uint8), y=np.arange(3))
    sizes = npz_sizes(real)
    assert sizes["X"][2] == 12 and sizes["y"][0] == (3,)


def test_a_100000_column_header_with_a_duplicate_is_named_at_once(tmp_path):
    """The duplicate-header check counted each name with list.count (O(n^2): 221 s for 100,000
    columns); it is now one pass."""
    from audit.core.dataset import duplicates, read_table

    names = [f"c{i}" for i in range(100_000)] + ["c77"]
    assert duplicates(names) == ["c77"]
    path = tmp_path / "wide.csv"
    path.write_text(",".join(names) + "\n" + ",".join("1" * len(names)) + "\n")
    with pytest.raises(DataValidationError, match="duplicated column name.*'c77'"):
        read_table(path)


def test_encoding_more_cells_than_the_budget_is_refused_before_allocating():
    import pandas as pd

    from audit.core.dataset import Encoding

    frame = pd.DataFrame({"job": [f"level{i}" for i in range(1000)]})
    enc = Encoding.fit(frame)  # 1,000 one-hot columns
    with memory_limit(parse_size("1MiB")), pytest.raises(DataValidationError, match="1,000 model-input columns"):
        enc.encode(frame)  # 1,000 x 1,000 cells x 12 bytes = 11.4 MiB


def _short_strings_csv(path: Path, n: int, *, late_text: bool = False) -> Path:
    """``n`` rows: two small integers and two columns of unique short strings (f"{i:x}"); with
    ``late_text`` the integer column ``x`` holds one word in its last row only."""
    rows = "\n".join(f"{i % 97},{i % 2},{i:x},{i + 7:x}" for i in range(n))
    tail = "\nword,1,zz,zz" if late_text else ""
    path.write_text("x,y,sex,race\n" + rows + tail + "\n")
    return path


@pytest.mark.parametrize("declared", [("sex", "race"), ()])
def test_the_csv_estimate_covers_a_frame_of_many_short_strings(tmp_path, declared):
    """Short strings cost ~60 bytes each in memory; the old estimate (twice the text) was below
    the parsed frame itself. Declared text columns and inferred ones are both charged."""
    import pandas as pd

    from audit.core.dataset import _scan_csv, read_table

    path = _short_strings_csv(tmp_path / "short.csv", 100_000)
    frame = read_table(path, text=declared)
    in_memory = int(frame.memory_usage(deep=True).sum())
    estimate, what = _scan_csv(path, declared, (), 1 << 40)
    assert "100,000 rows x 4 columns" in what and "'sex', 'race'" in what, what
    assert estimate >= in_memory, (estimate, in_memory)
    # the case discriminates: pandas' own object-string frame (what its parser builds on the
    # way) is beyond twice the text, and the estimate covers it as well
    as_objects = int(pd.read_csv(path, dtype=object).memory_usage(deep=True).sum())
    assert 2 * path.stat().st_size < as_objects <= estimate, (path.stat().st_size, as_objects)


def test_the_budget_refuses_a_csv_of_short_strings_before_pandas_reads_it(tmp_path):
    from audit.core.dataset import read_table

    path = _short_strings_csv(tmp_path / "short.csv", 60_000)  # 0.8 MiB of text
    assert 2 * path.stat().st_size < parse_size("2MiB")  # the old estimate let it through
    with memory_limit(parse_size("2MiB")), pytest.raises(
            DataValidationError, match=r"60,000 rows x 4 columns .*text: 'sex', 'race'.*needs about"):
        read_table(path, text=("sex", "race"))
    with memory_limit(parse_size("64MiB")):
        assert len(read_table(path, text=("sex", "race"))) == 60_000


def test_one_word_in_the_last_row_makes_a_numeric_column_count_as_text(tmp_path):
    """The scan reads every block (1 MiB each), not a sample: a column pandas will hold as text
    because of its last cell is charged as text."""
    from audit.core.dataset import _scan_csv

    path = _short_strings_csv(tmp_path / "late.csv", 200_000, late_text=True)
    assert path.stat().st_size > 3 * 2**20
    numeric_x, what = _scan_csv(path, (), (), 1 << 40)
    assert "3 of them text: 'x', 'sex', 'race'" in what, what
    path.write_text(path.read_text().replace("\nword,", "\n5,"))
    all_numbers, what = _scan_csv(path, (), (), 1 << 40)
    assert "2 of them text: 'sex', 'race'" in what, what
    assert numeric_x - all_numbers >= 64 * 200_000


def test_a_gzip_csv_of_short_strings_is_counted_as_a_stream(tmp_path):
    import gzip

    from audit.core.dataset import read_table

    plain = _short_strings_csv(tmp_path / "short.csv", 60_000)
    packed = tmp_path / "short.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    with memory_limit(parse_size("2MiB")), pytest.raises(DataValidationError, match="60,000 rows"):
        read_table(packed, text=("sex",))


# ---- one output check for every adapter ---------------------------------------------------------


def test_callable_outputs_name_how_many_rows_are_nan():
    def fn(X):
        p = 1 / (1 + np.exp(-X[:, 0]))
        p[:412] = np.nan
        return p
    model = CallableAdapter(task="binary", fn=fn, description="function f")
    with pytest.raises(ModelLoadError, match=r"function f returned NaN: 412 of 1,000 rows"):
        model.predict_proba(np.random.default_rng(0).normal(size=(1000, 2)))


@pytest.mark.parametrize("output, match", [
    (lambda X: np.full(len(X), 3.7), r"outside \[0, 1\]: values from -2.7 to 3.7 in 5 of 5 rows"),
    (lambda X: np.full((len(X), 2), 0.3), r"do not sum to 1 .* 5 of 5 rows"),
    (lambda X: np.full((len(X), 3), 1 / 3), r"3 outputs per row but the task is binary"),
    (lambda X: np.full(len(X) + 1, 0.5), r"6 rows of output for 5 input rows"),
    (lambda X: np.full((len(X), 2, 2), 0.5), r"shape \(5, 2, 2\)"),
    (lambda X: ["yes"] * len(X), r"not an array of numbers"),
    (lambda X: np.where(np.arange(len(X)) == 2, np.inf, 0.5), r"infinite values: 1 of 5 rows .*row 3 of the rows given to it, counted from 1"),
])
def test_callable_outputs_out_of_range_or_of_the_wrong_shape_are_refused(output, match):
    model = CallableAdapter(task="binary", fn=output, description="function f")
    with pytest.raises(ModelLoadError, match=match):
        model.predict(np.zeros((5, 2), np.float32))


def test_float32_softmax_rows_pass_the_sum_tolerance():
    """The tolerances (1e-4 on the range, 1e-3 on row sums) do not reject real probabilities:
    float32 softmax over 10 classes of logits up to +-30, 100,000 rows."""
    rng = np.random.default_rng(1)
    z = rng.normal(scale=10, size=(100_000, 10)).astype(np.float32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    out = check_outputs(p, task="multiclass", n_rows=100_000, what="m", n_classes=10)
    assert out.shape == (100_000, 10) and out.min() >= 0 and out.max() <= 1


def test_a_sklearn_regressor_with_two_outputs_is_refused_for_a_regression_task():
    from sklearn.linear_model import LinearRegression

    X = np.random.default_rng(0).normal(size=(50, 3))
    est = LinearRegression().fit(X, np.column_stack([X[:, 0], X[:, 1]]))
    model = SklearnAdapter(task="regression", estimator=est, description="scikit-learn LinearRegression (m.skops)")
    with pytest.raises(ModelLoadError, match=r"m.skops\) returned 2 outputs per row but the task is regression"):
        model.predict(X.astype(np.float32))


def test_an_onnx_score_read_as_a_probability_outside_0_1_is_refused(tmp_path):
    pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LinearRegression

    from audit.core.loading import ModelSpec, load_model

    X = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    est = LinearRegression().fit(X, 5 * X[:, 0])
    (tmp_path / "m.onnx").write_bytes(skl2onnx.to_onnx(est, X[:1], target_opset=17).SerializeToString())
    model = load_model(ModelSpec(path=str(tmp_path / "m.onnx"), task="binary", output="probability"),
                       encoding=None)
    with pytest.raises(ModelLoadError, match=r"ONNX model m.onnx returned probabilities outside \[0, 1\]"):
        model.predict_proba(X)


def test_a_torch_multiclass_model_with_the_wrong_number_of_classes_is_refused():
    import pandas as pd
    import torch

    from audit.core.adapter import TorchAdapter
    from audit.core.dataset import DatasetSpec, build_audit_data

    frame = pd.DataFrame({"x": np.linspace(0, 1, 30), "y": ["a", "b", "c"] * 10})
    data = build_audit_data(frame, DatasetSpec(target="y", task="multiclass"))
    model = TorchAdapter(task="multiclass", module=torch.nn.Linear(1, 4), description="torch model m.pt")
    with pytest.raises(ModelLoadError, match="4 class probabilities per row but the target has 3 classes"):
        model.predictions(data)


# ---- declarative option bounds -------------------------------------------------------------------


def _options(method):
    hints = typing.get_type_hints(method.Config)
    return [(f, str(hints[f.name])) for f in dataclasses.fields(method.Config)]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_every_integer_option_of_every_method_has_an_upper_bound(method):
    unbounded = [f.name for f, hint in _options(method) if "int" in hint and f.name not in OPTION_BOUNDS]
    assert not unbounded, f"{method.name}: add {unbounded} to audit.core.method.OPTION_BOUNDS"
    for f, hint in _options(method):
        if f.name in OPTION_BOUNDS:
            assert OPTION_BOUNDS[f.name].high is not None


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_every_method_default_is_inside_the_bounds_and_just_past_them_is_refused(method):
    check_bounds(method.Config())
    for f, hint in _options(method):
        if f.name not in OPTION_BOUNDS or "int" not in hint:
            continue
        too_big = OPTION_BOUNDS[f.name].high + 1  # a method may narrow the package-wide bound, never widen it
        value = (too_big,) if "tuple" in hint else too_big
        with pytest.raises(InvalidConfigError, match=rf"'{f.name}' option in \[methods.{method.name}\] of c.toml must.*Got"):
            method.Config.from_dict({f.name: value}, method=method.name, source="c.toml")


@pytest.mark.parametrize("method", [m for m in METHODS if "n_bootstrap" in m.Config.__dataclass_fields__],
                         ids=lambda m: m.name)
def test_a_handful_of_bootstrap_resamples_is_refused_zero_turns_intervals_off(method):
    """One resample gave Grad-CAM a zero-width "95%" interval beside, not around, its estimate."""
    for few in (1, 19):
        with pytest.raises(InvalidConfigError, match="'n_bootstrap' option"):
            method.Config.from_dict({"n_bootstrap": few}, method=method.name)
    assert method.Config.from_dict({"n_bootstrap": 0}, method=method.name).n_bootstrap == 0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_float_options_are_refused(value):
    from audit.methods.counterfactuals import CounterfactualsConfig

    with pytest.raises(InvalidConfigError, match="must be a finite number"):
        CounterfactualsConfig.from_dict({"margin": value}, method="counterfactuals")


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_flag_outside_0_to_2_32_is_a_usage_error(seed, tmp_path):
    work = _case("config_seed_negative", tmp_path)
    toml = work / "audit.toml"
    toml.write_text(toml.read_text().replace("seed = -1", "seed = 0"))
    code, text = _cli("run", str(toml), "--out", str(tmp_path / "out"), "-q", "--seed", seed)
    assert code == 2 and "'--seed'" in text and seed in text, text
    assert not (tmp_path / "out").exists()


def test_sequence_windows_over_the_budget_are_refused_before_they_are_stacked(tmp_path):
    import pandas as pd

    from audit.core.dataset import DatasetSpec
    from audit.core.modalities import SequenceSpec, build_sequence_data

    n = 2000
    pd.DataFrame({"t": np.arange(n), "x": np.sin(np.arange(n) / 10.0)}).to_csv(tmp_path / "s.csv", index=False)
    spec = SequenceSpec(path=str(tmp_path / "s.csv"), window=200, time_column="t")
    with memory_limit(parse_size("1MiB")), pytest.raises(DataValidationError,
                                                          match="1,800 windows of 200 steps x 1 feature"):
        build_sequence_data(spec, DatasetSpec(target="x", task="regression"))
    assert build_sequence_data(spec, DatasetSpec(target="x", task="regression")).X.shape == (1800, 200, 1)


_OOM_SCRIPT = """
import os, resource, sys
import numpy as np, pandas as pd
from audit.core.dataset import read_table
from audit.errors import AuditError
n = 400_000
pd.DataFrame({"a": np.arange(n), "b": ["x" * 40] * n}).to_csv(sys.argv[1], index=False)
vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 30_000_000, resource.RLIM_INFINITY))
try:
    read_table(sys.argv[1])
except AuditError as exc:
    print("AuditError:", exc)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_running_out_of_memory_while_parsing_says_so_not_check_the_delimiter(tmp_path):
    """Under an OS memory limit below what pandas needs (the budget itself allows the file),
    the error names memory, not the delimiter (pandas' C parser reports it as a ParserError)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, ENV_VAR: "8GiB", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", _OOM_SCRIPT, str(tmp_path / "big.csv")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert "ran out of memory while being read" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "delimiter" not in done.stdout


def test_rows_with_missing_fields_are_counted_not_a_reason_to_give_up(tmp_path):
    """pandas pads a short row with missing values where pyarrow refuses it: the scan counts
    such rows (charged as text) and still sees every other row."""
    from audit.core.dataset import _scan_csv, read_table

    path = tmp_path / "short_rows.csv"
    path.write_text("a,b,c\n" + "1,2,3\n" * 5000 + "4,5\n" * 3 + "6,7,8\n" * 5000)
    assert len(read_table(path)) == 10_003
    estimate, what = _scan_csv(path, (), (), 1 << 40)
    assert what.startswith("10,003 rows x 3 columns") and "3 of them text" in what, what
    assert estimate >= (24 + 64) * 3 * 10_003


@pytest.mark.parametrize("name, content", [("bad.csv.xz", b"not xz at all"),
                                           ("bad.csv.zip", b"PK\x03\x04garbage")])
def test_a_corrupt_xz_or_zip_is_an_input_error_not_a_traceback(tmp_path, name, content):
    from audit.core.dataset import read_table

    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataValidationError, match=f"{name}' could not be read: it is truncated or corrupt"):
        read_table(path)


# ---- red-team follow-ups: the environment variable, nesting, non-regular files, figures -------


@pytest.mark.parametrize("value", ["nan", "-5", "1.5e3MiB"])
def test_a_malformed_memory_variable_is_blamed_in_one_line_before_any_file_is_read(
        value, tmp_path, monkeypatch):
    work = _case("csv_utf8_bom", tmp_path)
    (work / "data.csv").unlink()  # were any file read first, this would be "does not exist"
    toml = work / "audit.toml"
    toml.write_text(toml.read_text() + '\n[gate]\n"fairness.sex.demographic_parity_difference" = { max = 0.5 }\n')
    monkeypatch.setenv(ENV_VAR, value)
    for args in (["run", str(work / "audit.toml"), "--out", str(tmp_path / "out"), "-q"],
                 ["check", str(work / "audit.toml"), "-q"]):
        code, text = _cli(*args)
        assert code == 2, text
        assert text.startswith(f"error: The environment variable {ENV_VAR} must be a size"), text
        assert repr(value) in text and "data file" not in text and ".." not in text and "\n" not in text


@pytest.mark.skipif(not Path("/dev/zero").exists() or not hasattr(__import__("os"), "mkfifo"),
                    reason="needs POSIX devices and FIFOs")
@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "folder"])
@pytest.mark.parametrize("name", ["data.csv", "audit.toml", "encoding.json", "architecture.json"])
def test_a_fifo_device_or_folder_is_refused_as_not_a_regular_file_without_reading_it(
        kind, name, tmp_path):
    import os

    work = _case("csv_utf8_bom", tmp_path)
    config = work / "audit.toml"
    if name == "audit.toml":  # the config itself: point the CLI at the odd path
        config = work / "odd.toml"
        target = config
    else:
        target = work / name
        target.unlink()
    if kind == "fifo":
        os.mkfifo(target)  # opening it for reading would block forever: no writer
    elif kind == "dev_zero":
        target.symlink_to("/dev/zero")  # reading it would never end
    else:
        target.mkdir()
    code, text = _cli("run", str(config), "--out", str(tmp_path / "out"), "-q")
    assert code == 2, text
    if kind == "folder" and name == "data.csv":  # a data folder is a streamed decision log, never read in memory
        assert f"{target.name}' is a folder" in text and "point [data] path at one CSV or Parquet file" in text, text
    else:
        assert f"{target.name}' is not a regular file" in text and "does not exist" not in text, text
    assert not (tmp_path / "out").exists()


def test_every_user_json_and_toml_is_read_by_the_one_loader_with_a_nesting_bound(tmp_path):
    from types import SimpleNamespace

    from audit.core.userfiles import MAX_NESTING, load_json, load_toml
    from audit.train.recipe import gather_recipe

    ok = tmp_path / "ok.json"
    ok.write_text("[" * MAX_NESTING + "]" * MAX_NESTING)
    assert load_json(ok, "x") is not None
    for depth in (MAX_NESTING + 1, 900, 100_000):  # under and past the interpreter's recursion limit
        deep = tmp_path / "training.json"
        deep.write_text('{"a":' * depth + "1" + "}" * depth)
        with pytest.raises(InvalidConfigError, match=r"training recipe '.*training.json' is nested too deeply"):
            gather_recipe(SimpleNamespace(loaded=[SimpleNamespace(role="weights", path=str(tmp_path / "m.pt"))]),
                          {}, {}, method="m", action="refitting")
        toml = tmp_path / "a.toml"
        toml.write_text("x = " + "[" * depth + "]" * depth + "\n")
        with pytest.raises(InvalidConfigError, match="nested too deeply"):
            load_toml(toml)
    dotted = tmp_path / "d.toml"  # dotted keys nest tables without recursing in the parser
    dotted.write_text("a." * 1000 + "b = 1\n")
    with pytest.raises(InvalidConfigError, match=r"more than 64 levels of arrays or tables"):
        load_toml(dotted)


def test_control_characters_in_figure_text_are_drawn_as_escapes_and_never_warned_raw():
    import io
    import warnings

    from audit.core.plots import new_figure, plain_text

    fig, ax = new_figure()
    ax.bar(["Female\x1b[31m", "Male\x07"], [0.4, 0.6])  # group names become category tick labels
    ax.set_title("sex\x1b[2J")
    ax.legend(["rate\u202e"])
    plain_text(fig)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    assert not [w for w in caught if "Glyph" in str(w.message)], [str(w.message) for w in caught]
    shown = [t.get_text() for t in ax.get_xticklabels()] + [ax.get_title()] + \
        [t.get_text() for t in ax.get_legend().get_texts()]
    assert shown == ["Female\\x1b[31m", "Male\\x07", "sex\\x1b[2J", "rate\\u202e"]
    # and any warning that still quotes such a string is printed with visible escapes
    line = warnings.formatwarning(UserWarning("Glyph 27 (\x1b) missing"), UserWarning, "f.py", 1, "x\x07")
    assert "\x1b" not in line and "\x07" not in line and "\\x1b" in line


def _typed_parquet(path, n: int):
    """One Parquet column of each kind a decision log holds."""
    import pandas as pd

    rng = np.random.default_rng(0)
    pd.DataFrame({
        "score": rng.random(n), "count": rng.integers(0, 10**9, n), "flag": rng.random(n) < 0.5,
        "sex": rng.choice(["Female", "Male"], n), "id": [f"id-{i:09d}" for i in range(n)],
        "race": pd.Categorical(rng.choice(["A", "B", "C"], n)),
    }).to_parquet(path)
    return path


def test_the_parquet_estimate_covers_the_memory_pandas_takes_to_read_it(tmp_path):
    """The peak resident memory of pd.read_parquet over the interpreter's (VmHWM, in a fresh
    process) stays under the estimate; the old estimate, 8 bytes a cell, was below it."""
    import pyarrow.parquet as pq

    from audit.core.dataset import parquet_read_bytes

    path = _typed_parquet(tmp_path / "log.parquet", 300_000)
    parquet = pq.ParquetFile(path)
    peak = _read_peak(path, _typed_parquet(tmp_path / "tiny.parquet", 10))
    estimate = parquet_read_bytes(parquet.metadata, parquet.schema_arrow)
    assert 8 * 300_000 * 6 < peak <= estimate, (peak, estimate)


def _read_peak(path, tiny) -> int:
    """The peak resident memory of pd.read_parquet(path) over the interpreter's (VmHWM, in a fresh
    process, after a first read of ``tiny`` has done the lazy imports)."""
    code = ("import sys, pandas as pd, pyarrow.parquet\n"
            "def hwm():\n"
            "    return int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]) * 1024\n"
            "pd.read_parquet(sys.argv[2])\n"
            "base = hwm()\n"
            "pd.read_parquet(sys.argv[1])\n"
            "print(hwm() - base)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path), str(tiny)], capture_output=True, text=True,
                          timeout=120)
    return int(proc.stdout.split()[-1])


@pytest.mark.parametrize("dictionary", [True, False])
@pytest.mark.parametrize(("rows", "width"), [(20_000, 1000), (200_000, 12)])
def test_the_parquet_estimate_covers_a_column_of_unique_strings_plain_or_dictionary(tmp_path, rows, width,
                                                                                     dictionary):
    """pandas turns a dictionary column into categories, which cost several times the stored
    dictionary; the old estimate charged 14 bytes a row and nothing for the dictionary (26.6 MB
    estimated for a file whose read took 575 MB). Long plain strings took 2.65-2.75 times their bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from audit.core.dataset import parquet_read_bytes

    def write(path, n):
        values = pa.array([f"{i:08d}" + "x" * (width - 8) for i in range(n)])
        values = values.dictionary_encode() if dictionary else values
        pq.write_table(pa.table({"blob": values, "y": np.zeros(n, dtype=np.int64)}), path)
        return path

    path = write(tmp_path / "dict.parquet", rows)
    parquet = pq.ParquetFile(path)
    peak = _read_peak(path, write(tmp_path / "tiny.parquet", 10))
    estimate = parquet_read_bytes(parquet.metadata, parquet.schema_arrow)
    assert 8 * rows * 2 < peak <= estimate, (peak, estimate)


def test_the_budget_refuses_a_parquet_file_the_old_8_bytes_a_cell_let_through(tmp_path):
    from audit.core.dataset import read_table

    path = _typed_parquet(tmp_path / "log.parquet", 200_000)
    old = 8 * 200_000 * 6  # 9.6 MB
    with memory_limit(int(2.5 * old)), pytest.raises(DataValidationError,
                                                     match=r"200,000 rows x 6 columns; reading it needs about"):
        read_table(path)
    with memory_limit(parse_size("256MiB")):
        assert len(read_table(path)) == 200_000
