"""Regenerate the bad-input corpus: ``python tests/bad_inputs/_generate.py``.

Every case is a folder with the input files that differ from ``_shared/`` (the model, its
architecture and encoding, a clean ``data.csv`` and the default ``audit.toml``) and an
``expect.toml``:

    exit = 2                         # the CLI's exit code
    fragments = ["...", "..."]       # each must appear in the one-line error (exit 2) or,
                                     # for a run that succeeds, in results.json
    methods = "fairness,surrogate"   # optional: the --methods flag (default in the test)
    requires = ["onnxruntime"]       # optional: modules without which the case is skipped
    command = "check"                # optional: run `audit check CONFIG` instead of `audit run`
    absent = ["..."]                 # optional: text that must not be in results.json
    flags = ["--untrusted-config"]   # optional: extra flags for `audit run`

The files are committed; this script documents how each was made and rewrites them all.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from tests.conftest import make_frame  # noqa: E402

SHARED = HERE / "_shared"
BASE_TOML = """name = "bad"
seed = 0

[model]
path = "model.safetensors"
architecture = "architecture.json"
encoding = "encoding.json"
task = "binary"

[data]
path = "data.csv"
target = "income"
positive_label = ">50K"
sensitive = ["sex"]

[report]
formats = ["json"]
"""


def shared() -> None:
    """The model every case uses unless it brings its own (trained on the planted rule)."""
    from safetensors.torch import save_file

    from audit.core.dataset import Encoding
    from tests.conftest import fit_torch_mlp

    SHARED.mkdir(exist_ok=True)
    train = make_frame(600)
    enc = Encoding.fit(train[["age", "hours", "job"]])
    net, spec = fit_torch_mlp(train, enc, hidden=4)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(SHARED / "model.safetensors"))
    (SHARED / "architecture.json").write_text(json.dumps(spec, indent=1) + "\n")
    (SHARED / "encoding.json").write_text(json.dumps(enc.to_dict(), indent=1) + "\n")
    (SHARED / "data.csv").write_text(clean_csv())
    (SHARED / "audit.toml").write_text(BASE_TOML)


def clean_csv(n: int = 120) -> str:
    return make_frame(n, seed=1).to_csv(index=False, lineterminator="\n")


def lines() -> list[str]:
    return clean_csv().splitlines()


def join(rows: list[str]) -> str:
    return "\n".join(rows) + "\n"


def replace_cell(col: str, row: int, value: str, text: str | None = None) -> str:
    rows = (text or clean_csv()).splitlines()
    header = rows[0].split(",")
    cells = rows[row + 1].split(",")
    cells[header.index(col)] = value
    rows[row + 1] = ",".join(cells)
    return join(rows)


def map_column(col: str, fn, text: str | None = None) -> str:
    rows = (text or clean_csv()).splitlines()
    header = rows[0].split(",")
    i = header.index(col) if col in header else 3  # a renamed 'sex' column stays 4th
    out = [rows[0]]
    for r, line in enumerate(rows[1:]):
        cells = line.split(",")
        cells[i] = fn(r, cells[i])
        out.append(",".join(cells))
    return join(out)


def toml_with(*edits: tuple[str, str]) -> str:
    text = BASE_TOML
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    return text


LONG = "x" * 3000
RTL = "\u05de\u05d2\u05d3\u05e8 \u202egender\u202c \u0627\u0644\u062c\u0646\u0633"  # Hebrew, RLO, Arabic


def cases() -> dict[str, dict]:
    c: dict[str, dict] = {}

    def case(name, expect, **files):
        c[name] = {"expect": expect, "files": files}

    def err(*fragments, **extra):
        return {"exit": 2, "fragments": list(fragments), **extra}

    def ok(*fragments, **extra):
        return {"exit": 0, "fragments": list(fragments), **extra}

    # ---- malformed CSV ------------------------------------------------------------------
    case("csv_ragged_row", err("data.csv", "not a well-formed CSV", "same number of fields"),
         **{"data.csv": join(lines()[:5] + [lines()[5] + ",extra,fields"] + lines()[6:])})
    case("csv_semicolon_delimiter", err("data.csv", "semicolon", "comma"),
         **{"data.csv": clean_csv().replace(",", ";")})
    case("csv_tab_delimiter", err("data.csv", "tab", "comma"),
         **{"data.csv": clean_csv().replace(",", "\t")})
    case("csv_utf8_bom", ok('"status": "ok"'),
         **{"data.csv": "\ufeff" + clean_csv()})
    case("csv_crlf_line_endings", ok('"status": "ok"'),
         **{"data.csv": clean_csv().replace("\n", "\r\n")})
    case("csv_latin1_not_utf8", err("data.csv", "not UTF-8", "Re-save it as UTF-8"),
         **{"data.csv": map_column("job", lambda r, v: "caf\u00e9" if r == 3 else v).encode("latin-1")})
    case("csv_binary_garbage", err("data.csv", "not UTF-8"),
         **{"data.csv": bytes(range(256)) * 4})
    case("csv_empty_file", err("data.csv", "is empty"), **{"data.csv": b""})
    case("csv_blank_lines_only", err("data.csv", "is empty"), **{"data.csv": "\n\n  \n"})
    case("csv_header_only", err("data.csv", "header but no rows"),
         **{"data.csv": lines()[0] + "\n"})
    case("csv_duplicated_columns", err("data.csv", "duplicated column", "'age'"),
         **{"data.csv": join([lines()[0].replace("hours", "age")] + lines()[1:])})
    case("csv_unclosed_quote", err("data.csv", "not a well-formed CSV"),
         **{"data.csv": join(lines()[:4] + ['40,"41.2,clerk,Male,<=50K'] + lines()[5:])})
    case("csv_gzip_corrupt", err("data.csv.gz", "could not be read"),
         **{"data.csv.gz": gzip.compress(clean_csv().encode(), mtime=0)[:60],
            "audit.toml": toml_with(('path = "data.csv"', 'path = "data.csv.gz"'))})
    case("parquet_that_is_csv", err("data.parquet", "could not be read"),
         **{"data.parquet": clean_csv(),
            "audit.toml": toml_with(('path = "data.csv"', 'path = "data.parquet"'))})

    # ---- missing and non-finite values ---------------------------------------------------
    case("nan_in_feature", err("In 'data.csv'", "'age'", "missing", "1 row(s)", "first at row 8 (rows counted from 1, the header not counted)", "Impute or drop"),
         **{"data.csv": replace_cell("age", 7, "")})
    case("nan_text_in_feature", err("In 'data.csv'", "'hours'", "'NaN'", "missing-value markers", "na_values", "first at row 3 (rows counted from 1, the header not counted)"),
         **{"data.csv": replace_cell("hours", 2, "NaN")})
    case("inf_in_feature", err("In 'data.csv'", "'hours'", "infinite", "first at row 5 (rows counted from 1, the header not counted)"),
         **{"data.csv": replace_cell("hours", 4, "inf")})
    case("nan_in_target", err("target column 'income'", "missing", "first at row 10 (rows counted from 1, the header not counted)", "Drop those rows"),
         **{"data.csv": replace_cell("income", 9, "")})
    case("nan_in_sensitive", err("sensitive column 'sex'", "missing", "first at row 1 (rows counted from 1, the header not counted)"),
         **{"data.csv": replace_cell("sex", 0, "")})
    case("nan_in_categorical_feature", err("In 'data.csv'", "'job'", "missing values", "first at row 12 (rows counted from 1, the header not counted)"),
         **{"data.csv": replace_cell("job", 11, "")})

    # ---- values the model or the config cannot take ---------------------------------------
    case("unseen_category", err("In 'data.csv'", "'job'", "'pilot'", "encoding does not know", "first at row 4 (rows counted from 1, the header not counted)"),
         **{"data.csv": replace_cell("job", 3, "pilot")})
    case("numbers_with_thousands_separators", err("In 'data.csv'", "'hours'", "thousands separators", "3 row(s)"),
         **{"data.csv": map_column("hours", lambda r, v: '"1,040.5"' if r < 3 else v)})
    case("numbers_with_units", err("In 'data.csv'", "'age'", "should be numeric", "'42 years'"),
         **{"data.csv": replace_cell("age", 5, "42 years")})
    case("target_three_classes_for_binary", err("'income'", "3 distinct values", "multiclass"),
         **{"data.csv": replace_cell("income", 0, "unknown")})
    case("positive_label_absent", err("positive label", "'>100K'", "positive_label"),
         **{"audit.toml": toml_with(('positive_label = ">50K"', 'positive_label = ">100K"'))})
    case("single_class_target", err("'income'", "only one class", "'<=50K'", "both outcomes"),
         **{"data.csv": map_column("income", lambda r, v: "<=50K")})
    case("model_input_width_mismatch", err("expects 5 input columns", "encoded data has 6"),
         **{"encoding.json": (lambda e: json.dumps({**e, "features": e["features"] + [
             {"name": "hours2", "type": "numeric", "center": 40.0, "scale": 8.0}]}))(
             json.loads((SHARED / "encoding.json").read_text())),
            "data.csv": join([lines()[0] + ",hours2"] + [l + ",40" for l in lines()[1:]])})
    case("feature_missing_from_data", err("In 'data.csv'", "'hours'", "lacks column", "Available columns"),
         **{"data.csv": join([",".join(x for i, x in enumerate(l.split(",")) if i != 1)
                              for l in lines()])})
    case("target_also_feature", err("target 'income'", "also listed as a feature"),
         **{"audit.toml": toml_with(('sensitive = ["sex"]',
                                     'sensitive = ["sex"]\nfeatures = ["age", "hours", "job", "income"]'))})
    case("sensitive_column_misspelt", err("'gender'", "not in", "Available columns"),
         **{"audit.toml": toml_with(('sensitive = ["sex"]', 'sensitive = ["gender"]'))})

    # ---- groups ----------------------------------------------------------------------------
    case("high_cardinality_sensitive", err("'sex'", "120 distinct values"),
         **{"data.csv": map_column("sex", lambda r, v: f"person-{r:03d}")})
    case("single_group_sensitive", err("'sex'", "single group"),
         **{"data.csv": map_column("sex", lambda r, v: "Female")})
    case("tiny_group", ok("too small to judge"),
         **{"data.csv": map_column("sex", lambda r, v: "Other" if r < 2 else v)})
    case("one_row", err("data.csv", "only 1 row", "at least 2"),
         **{"data.csv": join(lines()[:2])})
    case("constant_feature", ok("'hours'", "constant"),
         **{"data.csv": map_column("hours", lambda r, v: "40.0")})

    # ---- names -----------------------------------------------------------------------------
    case("very_long_column_name", ok('"status": "ok"', LONG),
         **{"data.csv": join([lines()[0].replace("sex", LONG)] + lines()[1:]),
            "audit.toml": toml_with(('sensitive = ["sex"]', f'sensitive = ["{LONG}"]'))})
    case("unicode_rtl_names", ok('"status": "ok"', RTL, "\u0630\u0643\u0631"),
         **{"data.csv": map_column("sex", lambda r, v: "\u0630\u0643\u0631" if v == "Male" else "\u05e0\u05e7\u05d1\u05d4",
                                   join([lines()[0].replace("sex", RTL)] + lines()[1:])),
            "audit.toml": toml_with(('sensitive = ["sex"]', f'sensitive = ["{RTL}"]'))})

    # ---- model files -----------------------------------------------------------------------
    weights = (SHARED / "model.safetensors").read_bytes()
    case("model_is_text", err("model.safetensors", "not a readable safetensors file"),
         **{"model.safetensors": "this is not a model\n"})
    case("model_truncated_safetensors", err("model.safetensors", "truncated"),
         **{"model.safetensors": weights[: len(weights) // 2]})
    case("model_truncated_torch_pt", err("model.pt", "Could not load the weights file", "truncated"),
         **{"model.pt": truncated_pt(),
            "audit.toml": toml_with(('path = "model.safetensors"', 'path = "model.pt"'))})
    case("model_csv_as_skops", err("model.skops", "not a readable skops file"),
         **{"model.skops": clean_csv(),
            "audit.toml": toml_with(('path = "model.safetensors"', 'path = "model.skops"'),
                                    ('architecture = "architecture.json"\n', ""))})
    case("model_unknown_suffix", err("Unknown model format '.h5'"),
         **{"model.h5": b"\x89HDF\r\n\x1a\n",
            "audit.toml": toml_with(('path = "model.safetensors"', 'path = "model.h5"'))})
    case("model_pickle_refused", err("model.pkl", "--trust-code"),
         **{"model.pkl": b"\x80\x04K\x01.",
            "audit.toml": toml_with(('path = "model.safetensors"', 'path = "model.pkl"'),
                                    ('architecture = "architecture.json"\n', ""))})
    case("weights_do_not_fit_architecture", err("do not fit the architecture", "size mismatch"),
         **{"architecture.json": json.dumps({"type": "mlp", "input_dim": 5, "hidden": [7],
                                             "activation": "relu", "output_dim": 1})})
    case("architecture_not_json", err("architecture.json", "not valid JSON"),
         **{"architecture.json": "{type: mlp"})
    case("encoding_not_json", err("encoding.json", "JSON"),
         **{"encoding.json": "[1, 2,"})
    case("encoding_wrong_shape", err("encoding", "\"features\" list"),
         **{"encoding.json": json.dumps({"columns": ["age"]})})
    case("model_file_missing", err("model.safetensors", "does not exist"),
         **{"audit.toml": toml_with(('path = "model.safetensors"', 'path = "model.safetensors"'))},
         _delete=["model.safetensors"])

    # ---- ONNX models (optional extra: skipped where onnxruntime is not installed) ------------
    onnx_toml = toml_with(('path = "model.safetensors"', 'path = "model.onnx"'),
                          ('architecture = "architecture.json"\n', ""))
    case("onnx_truncated", err("model.onnx", "not a loadable ONNX model", "truncated"),
         **{"model.onnx": onnx_model(5)[:200], "audit.toml": onnx_toml}, _requires=["onnxruntime"])
    case("onnx_input_width_mismatch", err("expects 4 input columns", "encoded data has 5"),
         **{"model.onnx": onnx_model(4), "audit.toml": onnx_toml}, _requires=["onnxruntime"])
    case("onnx_fine", ok('"status": "ok"', "onnxruntime"),
         **{"model.onnx": onnx_model(5), "audit.toml": onnx_toml}, _requires=["onnxruntime"])

    # ---- config files ----------------------------------------------------------------------
    case("config_unknown_key", err("Unknown key 'trget' in [data]", "Did you mean 'target'"),
         **{"audit.toml": toml_with(('target = "income"', 'trget = "income"'))})
    case("config_unknown_top_level_table", err("Unknown key 'modle'", "Did you mean 'model'"),
         **{"audit.toml": BASE_TOML + '\n[modle]\nx = 1\n'})
    case("config_wrong_type_threshold", err("'threshold'", "must be a number", "'high'"),
         **{"audit.toml": toml_with(('task = "binary"', 'task = "binary"\nthreshold = "high"'))})
    case("config_threshold_out_of_range", err("'threshold'", "between 0 and 1", "1.5"),
         **{"audit.toml": toml_with(('task = "binary"', 'task = "binary"\nthreshold = 1.5'))})
    case("config_sensitive_not_a_list", err("[data] sensitive", "list of strings"),
         **{"audit.toml": toml_with(('sensitive = ["sex"]', 'sensitive = "sex"'))})
    case("config_not_toml", err("audit.toml", "not valid TOML"),
         **{"audit.toml": BASE_TOML.replace("[data]", "[data")})
    case("config_not_utf8", err("audit.toml", "not UTF-8"),
         **{"audit.toml": BASE_TOML.replace('"bad"', '"caf\u00e9"').encode("latin-1")})
    case("config_unknown_method_option", err("max_deph", "Did you mean 'max_depth'"),
         **{"audit.toml": BASE_TOML + "\n[methods.surrogate]\nmax_deph = 3\n"})
    case("config_renamed_option", err("'n_boot' option in [methods.performance]", "renamed 'n_bootstrap'",
                                      "n_bootstrap = 200", methods="performance"),
         **{"audit.toml": BASE_TOML + "\n[methods.performance]\nn_boot = 200\n"})
    case("config_training_recipe_unknown_key",
         err("training recipe from [model.training]", "no key 'weight_decy'", "Did you mean 'weight_decay'?",
             methods="connection_weights"),
         **{"audit.toml": BASE_TOML.replace("[data]", '[model.training]\noptimizer = "adam"\nlr = 0.01\n'
                                            'epochs = 1\nbatch_size = 64\nweight_decy = 0.1\n\n[data]')})
    case("config_max_rows_zero", err("'max_rows'", "positive"),
         **{"audit.toml": toml_with(('target = "income"', 'target = "income"\nmax_rows = 0'))})
    case("config_bad_run_name", err("'name'", "plain folder name"),
         **{"audit.toml": toml_with(('name = "bad"', 'name = "../escape"'))})
    resource_cases(case, err)
    trust_boundary_cases(case, err, ok)
    code_cases(case, err)
    red_team_cases(case, err, ok)
    booster_cases(case, err, ok)
    return c


# ---- hangs, memory and out-of-range outputs (issue 12): hostile files are generated small ------
TINY_BUDGET = '\n[limits]\nmemory = "1MiB"\n'
FOUR_GIB = '\n[limits]\nmemory = "4GiB"\n'  # explicit, so the case does not depend on the RAM
IMAGE_TOML = toml_with(('[data]\npath = "data.csv"', '[data]\nmodality = "image"\npath = "."\nlabels = "labels.csv"'))


def resource_cases(case, err) -> None:
    weights = _shared_state()
    arch = json.loads((SHARED / "architecture.json").read_text())
    enc = json.loads((SHARED / "encoding.json").read_text())

    def feature_edit(name, **changes):
        return json.dumps({**enc, "features": [{**f, **changes} if f["name"] == name else f
                                               for f in enc["features"]]})

    big_csv = (lines()[0] + "\n" + (lines()[1] + "\n") * 80_000).encode()  # 2 MiB of text
    case("limits_gzip_bomb", err("data.csv.gz", "decompresses to at least", "memory budget of 1 MiB",
                                 "[limits] memory"),
         **{"data.csv.gz": gzip.compress(big_csv, 9, mtime=0),
            "audit.toml": toml_with(('path = "data.csv"', 'path = "data.csv.gz"')) + TINY_BUDGET})
    # 15,000 unique short 'sex' codes: 0.3 MiB of text (twice that passed the old estimate), but a
    # Python string per cell in pandas: the stream scan charges per cell and refuses it
    short = [lines()[0]] + [f"47,37.5,tech,{i:x},>50K" for i in range(15_000)]
    case("limits_csv_short_strings_over_budget",
         err("data.csv.gz", "15,000 rows x 5 columns", "text: 'job', 'sex'", "memory budget of 1 MiB"),
         **{"data.csv.gz": gzip.compress(join(short).encode(), 9, mtime=0),
            "audit.toml": toml_with(('path = "data.csv"', 'path = "data.csv.gz"')) + TINY_BUDGET})
    case("limits_parquet_over_budget", err("data.parquet", "200,000 rows x 5 columns", "memory budget of 1 MiB"),
         **{"data.parquet": parquet_of(make_frame(1, seed=2).loc[[0] * 200_000]),
            "audit.toml": toml_with(('path = "data.csv"', 'path = "data.parquet"')) + TINY_BUDGET})
    case("limits_memory_not_a_size", err("[limits] memory", "\"4GiB\"", "'lots'"),
         **{"audit.toml": BASE_TOML + '\n[limits]\nmemory = "lots"\n'})
    case("limits_npz_forged_header", err("data.npz", "shape (1000000, 1, 1000, 1000)", "14.6 TiB", "memory budget of 4 GiB"),
         **{"data.npz": forged_npz((1_000_000, 1, 1000, 1000)),
            "audit.toml": toml_with(('[data]\npath = "data.csv"',
                                     '[data]\nmodality = "image"\npath = "data.npz"')) + FOUR_GIB})
    case("limits_png_decompression_bomb", err("bomb.png", "decompression bomb"),
         **{"bomb.png": png_header(100_000, 100_000), "labels.csv": "file,income,sex\nbomb.png,>50K,Male\n",
            "audit.toml": IMAGE_TOML})
    case("limits_png_over_budget", err("big.png", "2,000 x 2,000 pixels", "memory budget of 1 MiB"),
         **{"big.png": png_header(2000, 2000), "labels.csv": "file,income,sex\nbig.png,>50K,Male\n",
            "audit.toml": IMAGE_TOML + TINY_BUDGET})
    case("architecture_billion_hidden_units", err("architecture.json", "7,000,000,001 parameters",
                                                  "52.2 GiB", "memory budget of 4 GiB"),
         **{"architecture.json": json.dumps({**arch, "hidden": [1_000_000_000]}),
            "audit.toml": BASE_TOML + FOUR_GIB})
    case("architecture_float_width", err("'hidden' widths", "positive integers", "1000000000.0"),
         **{"architecture.json": json.dumps({**arch, "hidden": [1e9]})})
    case("architecture_negative_width", err("'hidden' widths", "positive integers", "-4"),
         **{"architecture.json": json.dumps({**arch, "hidden": [-4]})})
    case("encoding_nan_center", err("encoding.json", "'center'", "'age'", "finite number", "nan"),
         **{"encoding.json": feature_edit("age", center=float("nan"))})
    case("encoding_center_is_text", err("encoding.json", "'center'", "'hours'", "'40'"),
         **{"encoding.json": feature_edit("hours", center="40")})
    case("encoding_infinite_scale", err("encoding.json", "'scale'", "positive finite number", "inf"),
         **{"encoding.json": feature_edit("hours", scale=float("inf"))})
    nan_weights = {k: v.clone() for k, v in weights.items()}
    nan_weights["0.bias"][0] = float("nan")
    case("model_nan_weights", err("model.safetensors", "returned NaN", "120 of 120 rows"),
         **{"model.safetensors": safetensors_bytes(nan_weights)})
    case("model_probabilities_out_of_range", err("model.safetensors", "outside [0, 1]", "output = \"logit\""),
         **{"architecture.json": json.dumps({**arch, "output": "probability"})})
    three = {k: v.clone() for k, v in weights.items()}
    three["2.weight"] = three["2.weight"].repeat(3, 1)
    three["2.bias"] = three["2.bias"].repeat(3)
    case("model_three_outputs_for_binary", err("model.safetensors", "3 outputs per row", "task is binary"),
         **{"model.safetensors": safetensors_bytes(three),
            "architecture.json": json.dumps({**arch, "output_dim": 3})})
    case("model_returns_an_extra_row", err("model.safetensors", "121 rows of output for 120 input rows"),
         **{"model.py": EXTRA_ROW_MODEL,
            "audit.toml": toml_with(('architecture = "architecture.json"', 'architecture = "model:ExtraRow"'))})
    case("config_n_permutations_huge", err("'n_permutations' option in [methods.fairness] of", "audit.toml", "100,000", "1000000000"),
         **{"audit.toml": BASE_TOML + "\n[methods.fairness]\nn_permutations = 1000000000\n"})
    case("config_n_bootstrap_huge", err("'n_bootstrap' option in [methods.fairness] of", "audit.toml", "100,000",
                                        "10000000"),
         **{"audit.toml": BASE_TOML + "\n[methods.fairness]\nn_bootstrap = 10000000\n"})
    case("config_calibration_bins_huge", err("'calibration_bins' option in [methods.fairness] of", "audit.toml", "1,000", "1000000000"),
         **{"audit.toml": BASE_TOML + "\n[methods.fairness]\ncalibration_bins = 1000000000\n"})
    case("config_max_depth_huge", err("'max_depth' option in [methods.surrogate] of", "audit.toml", "64", "1000000"),
         **{"audit.toml": BASE_TOML + "\n[methods.surrogate]\nmax_depth = 1000000\n"})
    case("config_option_infinite", err("'learning_rate' option in [methods.counterfactuals] of", "audit.toml", "finite number", "inf"),
         **{"audit.toml": BASE_TOML + "\n[methods.counterfactuals]\nlearning_rate = inf\n"},
         _methods="counterfactuals")
    case("config_seed_negative", err("'seed'", "0 to 4,294,967,295", "-1"),
         **{"audit.toml": toml_with(("seed = 0", "seed = -1"))})
    case("config_seed_huge", err("'seed'", "0 to 4,294,967,295", "1099511627776"),
         **{"audit.toml": toml_with(("seed = 0", f"seed = {2**40}"))})
    case("config_seed_not_integer", err("'seed'", "int", "1.5"),
         **{"audit.toml": toml_with(("seed = 0", "seed = 1.5"))})


EXTRA_ROW_MODEL = '''"""The bad-input model: the shared MLP, but it returns one row more than it was given."""
import torch
import torch.nn as nn


class ExtraRow(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))

    def forward(self, x):
        out = super().forward(x)
        return torch.cat([out, out[:1]])
'''


def _shared_state():
    from safetensors.torch import load_file

    return load_file(str(SHARED / "model.safetensors"))


def safetensors_bytes(state) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in state.items()})


def parquet_of(frame) -> bytes:
    import io

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def forged_npz(shape: tuple[int, ...]) -> bytes:
    """An .npz whose X.npy header claims ``shape`` (float64) but holds no data at all."""
    import io
    import zipfile

    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "<f8", "fortran_order": False, "shape": shape})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        info = zipfile.ZipInfo("X.npy", date_time=(1980, 1, 1, 0, 0, 0))
        zf.writestr(info, npy.getvalue())
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A grayscale PNG whose IHDR claims width x height, with one tiny IDAT (not the pixels)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))



GATE = '\n[gate]\n'  # every gate case is refused before any method runs
DP_SEX = '"fairness.sex.demographic_parity_difference"'


def trust_boundary_cases(case, err, ok) -> None:
    """Issue 12: data read as written, user strings escaped wherever they go, the gate."""
    enc = json.loads((SHARED / "encoding.json").read_text())

    def renamed(old: str, new: str) -> str:
        return json.dumps({**enc, "features": [{**f, "name": new} if f["name"] == old else f
                                               for f in enc["features"]]}, indent=1)

    def parquet(frame) -> bytes:
        import io

        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return buf.getvalue()

    frame = make_frame(120, seed=1)
    parquet_toml = toml_with(('path = "data.csv"', 'path = "data.parquet"'))

    # ---- data read as written ----------------------------------------------------------------
    when = frame.assign(hours=pd.date_range("2020-01-01", periods=len(frame), freq="D"))
    case("parquet_datetime_feature", err("data.parquet", "'hours'", "dates or times", "nanoseconds"),
         **{"data.parquet": parquet(when), "audit.toml": parquet_toml})
    codes = {"clerk": "01", "exec": "02", "tech": "03"}
    case("category_codes_with_leading_zeros", ok('"status": "ok"'),
         **{"data.csv": map_column("job", lambda r, v: codes[v]),
            "encoding.json": json.dumps({**enc, "features": [
                {**f, "levels": [codes[x] for x in f["levels"]]} if f["name"] == "job" else f
                for f in enc["features"]]}, indent=1)})
    case("sensitive_codes_with_leading_zeros", ok('"01"', '"001"', '"1"'),
         **{"data.csv": map_column("sex", lambda r, v: ("01", "001", "1")[r % 3])})
    case("target_also_sensitive", err("target 'income'", "sensitive attribute", "Remove 'income'"),
         **{"audit.toml": toml_with(('sensitive = ["sex"]', 'sensitive = ["sex", "income"]'))})
    case("parquet_columns_collide_after_strip",
         err("data.parquet", "duplicated column", "'age'", "'age '"),
         **{"data.parquet": parquet(frame.assign(**{"age ": frame["age"]})), "audit.toml": parquet_toml})
    series = "date,x,y\n" + "".join(
        f"{d},{i % 7}.5,{i % 5}.0\n" for i, d in enumerate(
            [f"2000-{m:02d}-01" for m in range(1, 13)] + ["2001-13-01"] + [f"2002-{m:02d}-01" for m in range(1, 6)]))
    case("sequence_time_unparsable",
         err("time column 'date'", "series.csv", "'2001-13-01'", "first at row 13 (rows counted from 1, the header not counted)", "sort in time order"),
         **{"series.csv": series,
            "audit.toml": toml_with(('path = "data.csv"', 'path = "series.csv"\nmodality = "sequence"\n'
                                     'time_column = "date"\nwindow = 3'),
                                    ('target = "income"', 'target = "y"'),
                                    ('positive_label = ">50K"\n', ""), ('sensitive = ["sex"]\n', ""),
                                    ('task = "binary"', 'task = "regression"'))})

    # ---- user strings that reach matplotlib, the terminal and the report ---------------------
    both = toml_with(('formats = ["json"]', 'formats = ["json", "html"]'))
    # the attribute name reaches the figure titles, the group name the tick labels and legends
    drawn = {"absent": ["could not be drawn"]}
    case("mathtext_in_column_name", ok('"status": "ok"', "a$^$b", **drawn),
         **{"data.csv": join([lines()[0].replace("sex", "a$^$b")] + lines()[1:]),
            "audit.toml": toml_with(('formats = ["json"]', 'formats = ["json", "html"]'),
                                    ('sensitive = ["sex"]', 'sensitive = ["a$^$b"]'))})
    case("mathtext_in_group_name", ok('"status": "ok"', "frac{$", **drawn),
         **{"data.csv": map_column("sex", lambda r, v: "$\\frac{$" if v == "Female" else v),
            "audit.toml": both})
    esc = "sex\x1b[2J\x07[bold]x"
    case("escape_sequences_in_names", ok('"status": "ok"', "[bold]x"),
         **{"data.csv": join([lines()[0].replace("sex", esc)] + lines()[1:]),
            "audit.toml": toml_with(('sensitive = ["sex"]', 'sensitive = ["sex\\u001b[2J\\u0007[bold]x"]'))})
    case("config_utf8_bom", ok('"status": "ok"'), **{"audit.toml": "\ufeff" + BASE_TOML})

    # ---- the gate (audit check) ----------------------------------------------------------------
    check = {"command": "check"}
    case("gate_threshold_nan", err(DP_SEX.replace('"', "'"), "'max'", "finite number", "nan", "never be breached", **check),
         **{"audit.toml": BASE_TOML + GATE + f"{DP_SEX} = {{ max = nan }}\n"})
    case("gate_threshold_infinite", err(DP_SEX.replace('"', "'"), "'min'", "finite number", "-inf", "tests nothing", **check),
         **{"audit.toml": BASE_TOML + GATE + f"{DP_SEX} = {{ min = -inf, max = 0.2 }}\n"})
    case("gate_without_rules", err("[gate]", "no thresholds", "tested nothing", **check),
         **{"audit.toml": BASE_TOML + GATE + 'inconclusive = "warn"\n'})
    case("gate_without_rules_in_run", err("[gate]", "no thresholds"),
         **{"audit.toml": BASE_TOML + GATE + 'small_groups = "ignore"\n'})



DEEP = 100_000  # the red team's depth; any depth past the parsers' recursion limit is the same


def predictions_csv(score) -> str:
    """The clean data plus a 'score' column (precomputed predictions): ``score(row) -> text``."""
    rows = lines()
    return join([rows[0] + ",score"] + [l + "," + score(r) for r, l in enumerate(rows[1:])])


PREDICTIONS_TOML = toml_with(('path = "model.safetensors"\narchitecture = "architecture.json"\n'
                              'encoding = "encoding.json"\n', 'predictions = "score"\n'))


def red_team_cases(case, err, ok) -> None:
    """Input-validation holes found by the red team after issue 12 (numbers as in its report)."""
    enc = json.loads((SHARED / "encoding.json").read_text())
    arch = json.loads((SHARED / "architecture.json").read_text())
    check = {"command": "check"}
    gate = GATE + f"{DP_SEX} = {{ max = 0.5 }}\n"

    # 4. nesting past the parsers' recursion limit: one helper (audit.core.userfiles) for all
    deep_toml = "x = " + "[" * DEEP + "]" * DEEP + "\n" + BASE_TOML
    case("config_nested_too_deeply", err("audit.toml", "nested too deeply"), **{"audit.toml": deep_toml})
    case("config_nested_too_deeply_check", err("audit.toml", "nested too deeply", **check),
         **{"audit.toml": deep_toml + gate})
    case("config_nested_under_the_recursion_limit",
         err("audit.toml", "nested too deeply", "more than 64 levels"),
         **{"audit.toml": BASE_TOML + "\n[model.init_args]\nx = " + "[" * 500 + "]" * 500 + "\n"})
    case("encoding_nested_too_deeply", err("encoding.json", "nested too deeply"),
         **{"encoding.json": "[" * DEEP + "]" * DEEP})
    case("encoding_nested_too_deeply_check", err("encoding.json", "nested too deeply", **check),
         **{"encoding.json": "[" * DEEP + "]" * DEEP, "audit.toml": BASE_TOML + gate})
    case("architecture_nested_too_deeply", err("architecture.json", "nested too deeply"),
         **{"architecture.json": '{"a":' * DEEP + "1" + "}" * DEEP})

    # 5. finite cells whose encoded value overflows float32
    def feature_edit(name, **changes):
        return json.dumps({**enc, "features": [{**f, **changes} if f["name"] == name else f
                                               for f in enc["features"]]})

    case("encoded_value_overflows_float32",
         err("In 'data.csv'", "'hours'", "overflow", "float32", "'1e+308'", "first at row 5 (rows counted from 1, the header not counted)", "fix or drop"),
         **{"data.csv": replace_cell("hours", 4, "1e308")})
    case("encoded_value_overflows_float32_negative",
         err("In 'data.csv'", "'hours'", "overflow", "'-1e+300'", "first at row 7 (rows counted from 1, the header not counted)"),
         **{"data.csv": replace_cell("hours", 6, "-1e300")})
    case("encoding_scale_tiny_overflows_float32",
         err("In 'data.csv'", "'hours'", "overflow", "scale 1e-300", "120 row(s)", "center/scale"),
         **{"encoding.json": feature_edit("hours", scale=1e-300)})

    # 6. target labels compared as written
    case("target_labels_one_number_two_spellings",
         err("target column 'income'", "'01' in 69 rows", "'1' in 51 rows", "compared as written"),
         **{"data.csv": map_column("income", lambda r, v: "1" if r < 51 else "01"),
            "audit.toml": toml_with(('positive_label = ">50K"', 'positive_label = "1"'))})
    case("target_float_labels_integer_positive_label",
         err("positive label '1' does not occur", "'0.0'", "'1.0'"),
         **{"data.csv": map_column("income", lambda r, v: "1.0" if v == ">50K" else "0.0"),
            "audit.toml": toml_with(('positive_label = ">50K"', 'positive_label = "1"'))})
    case("target_integer_labels_as_written", ok('"status": "ok"', '"positive_label": "1"'),
         **{"data.csv": map_column("income", lambda r, v: "1" if v == ">50K" else "0"),
            "audit.toml": toml_with(('positive_label = ">50K"', 'positive_label = "1"'))})

    # 7. a column listed twice
    case("sensitive_listed_twice", err("[data] sensitive", "'sex'", "more than once"),
         **{"audit.toml": toml_with(('sensitive = ["sex"]', 'sensitive = ["sex", "sex"]'))})
    case("sensitive_listed_twice_gate_self_intersection", err("[data] sensitive", "'sex'", "more than once", **check),
         **{"audit.toml": toml_with(('sensitive = ["sex"]', 'sensitive = ["sex", "sex"]')) + GATE
            + '"fairness.sex*sex.demographic_parity_difference" = { max = 0.5 }\n'})
    case("intersection_of_an_attribute_with_itself", err("'intersections' option in [methods.fairness]", "distinct", "['sex', 'sex']"),
         **{"audit.toml": BASE_TOML + '\n[methods.fairness]\nintersections = [["sex", "sex"]]\n'})
    case("features_listed_twice", err("[data] features", "'age'", "more than once"),
         **{"audit.toml": toml_with(('sensitive = ["sex"]',
                                     'sensitive = ["sex"]\nfeatures = ["age", "hours", "job", "age"]'))})
    case("predictions_column_is_the_target", err("predictions column 'income'", "also the target"),
         **{"audit.toml": toml_with(('path = "model.safetensors"\narchitecture = "architecture.json"\n'
                                     'encoding = "encoding.json"\n', 'predictions = "income"\n'))})

    # 10. control characters in names drawn into figures (html)
    case("escape_sequences_in_figures", ok('"status": "ok"', **{"absent": ["could not be drawn"]}),
         **{"data.csv": map_column("sex", lambda r, v: v + "\x1b[31m\x07"),
            "audit.toml": toml_with(('formats = ["json"]', 'formats = ["json", "html"]'))})

    # 11. (a) predictions within the documented tolerance of [0, 1] are clipped, beyond it refused
    case("predictions_score_within_tolerance", ok('"status": "ok"'), _methods="fairness",
         **{"data.csv": predictions_csv(lambda r: "1.00005" if r == 0 else f"{(r % 10) / 10:.1f}"),
            "audit.toml": PREDICTIONS_TOML})
    case("predictions_score_beyond_tolerance",
         err("'score'", "outside [0, 1]", "1.01", "labels or scores in [0, 1]"), _methods="fairness",
         **{"data.csv": predictions_csv(lambda r: "1.01" if r == 0 else f"{(r % 10) / 10:.1f}"),
            "audit.toml": PREDICTIONS_TOML})
    # (d) no model: the messages do not speak of a model or an encoding
    case("predictions_only_infinite_score",
         err("predictions column 'score'", "'data.csv'", "infinite", "first at row 4 (rows counted from 1, the header not counted)", "finite prediction"),
         _methods="fairness",
         **{"data.csv": predictions_csv(lambda r: "inf" if r == 3 else "0.5"), "audit.toml": PREDICTIONS_TOML})
    case("predictions_only_hex_score",
         err("predictions column 'score'", "'0x1p-1'", "target's labels"), _methods="fairness",
         **{"data.csv": predictions_csv(lambda r: "0x1p-1" if r == 3 else "0.5"), "audit.toml": PREDICTIONS_TOML})
    # (f) TRUE/FALSE are neither scores nor the target's labels (">50K"/"<=50K"): refused
    case("predictions_true_false_refused",
         err("predictions column 'score'", "'FALSE'", "'TRUE'", "target's labels"), _methods="fairness",
         **{"data.csv": predictions_csv(lambda r: "TRUE" if r % 2 else "FALSE"), "audit.toml": PREDICTIONS_TOML})


def code_cases(case, err) -> None:
    """Inputs that would run code: refused unless the user opts in (tests/test_security_code.py
    runs the real attacks with marker files; these are their one-line errors)."""
    weights_only = ('architecture = "architecture.json"\n', "")

    def arch(ref: str, init_args: str = "") -> str:
        extra = f"\n[model.init_args]\n{init_args}\n" if init_args else ""
        return toml_with(('architecture = "architecture.json"', f'architecture = "{ref}"'),
                         ("\n[data]", f"{extra}\n[data]"))

    case("code_torchscript_refused", err("model.pt", "TorchScript", "--trust-code"),
         **{"model.pt": torchscript_model(),
            "audit.toml": toml_with(('path = "model.safetensors"', 'path = "model.pt"'), weights_only)})
    case("code_torchscript_as_weights_refused", err("model.pt", "TorchScript", "--trust-code"),
         **{"model.pt": torchscript_model(),
            "audit.toml": toml_with(('path = "model.safetensors"', 'path = "model.pt"'))})
    case("code_torch_pickle_object_refused", err("model.pt", "beyond plain tensors", "--trust-code"),
         **{"model.pt": pickled_object_pt(),
            "audit.toml": toml_with(('path = "model.safetensors"', 'path = "model.pt"'))})
    case("code_arch_subprocess_run", err("'subprocess:run'", "not a torch.nn.Module subclass"),
         **{"audit.toml": arch("subprocess:run", 'args = ["false"]')})
    case("code_arch_subprocess_popen", err("'subprocess:Popen'", "not a torch.nn.Module subclass"),
         **{"audit.toml": arch("subprocess:Popen", 'args = ["false"]')})
    case("code_arch_os_system", err("'os:system'", "not a torch.nn.Module subclass"),
         **{"audit.toml": arch("os:system", 'command = "false"')})
    case("code_arch_builtins_eval", err("'builtins:eval'", "not a torch.nn.Module subclass"),
         **{"audit.toml": arch("builtins:eval", 'source = "1"')})
    case("code_arch_model_py_function", err("'model:make_net'", "not a torch.nn.Module subclass"),
         **{"model.py": "def make_net(**kwargs):\n    raise SystemExit('called')\n",
            "audit.toml": arch("model:make_net")})
    case("code_arch_missing_module", err("no_such_pkg_for_audit", "Could not import"),
         **{"audit.toml": arch("no_such_pkg_for_audit:Net")})
    case("code_arch_file_path", err("'../model:Net'", "dotted identifiers only"),
         **{"audit.toml": arch("../model:Net")})
    case("code_untrusted_config_model_py", err("'model:Net'", "--untrusted-config"),
         _flags=["--untrusted-config"],
         **{"model.py": ("import torch.nn as nn\n\nclass Net(nn.Sequential):\n    def __init__(self):\n"
                         "        super().__init__(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))\n"),
            "audit.toml": arch("model:Net")})
    for name, value, says in (("config_trusted_types_wildcard", '["*"]', "'*' is not a type path"),
                              ("config_trusted_types_not_strings", "[1]", "must be a list of strings")):
        case(name, err("trusted_types", says),
             **{"model.skops": skops_with_extra_type(),
                "audit.toml": toml_with(('path = "model.safetensors"', 'path = "model.skops"'), weights_only,
                                        ('task = "binary"', f'task = "binary"\ntrusted_types = {value}'))})
    case("code_untrusted_config_trusted_types", err("trusted_types", "--untrusted-config"),
         _flags=["--untrusted-config"],
         **{"model.skops": skops_with_extra_type(),
            "audit.toml": toml_with(('path = "model.safetensors"', 'path = "model.skops"'), weights_only,
                                    ('task = "binary"', 'task = "binary"\ntrusted_types = ["_operator.pos"]'))})
    case("code_skops_extra_type_refused", err("model.skops", "_operator.pos", "trusted_types", "--trust-code"),
         **{"model.skops": skops_with_extra_type(),
            "audit.toml": toml_with(('path = "model.safetensors"', 'path = "model.skops"'), weights_only)})
    case("code_untrusted_config_with_trust_code", err("--untrusted-config", "--trust-code", "cannot be combined"),
         _flags=["--untrusted-config", "--trust-code"])
    case("code_untrusted_config_reads_outside_folder", err("[data] path", "outside the config's folder"),
         _flags=["--untrusted-config"],
         **{"audit.toml": toml_with(('path = "data.csv"', 'path = "../outside.csv"'))})
    case("code_onnx_external_data_outside_folder", err("model.onnx", "outside the model's folder"),
         _requires=["onnx", "onnxruntime"],
         **{"model.onnx": onnx_external_data("../secret.bin"),
            "audit.toml": toml_with(('path = "model.safetensors"', 'path = "model.onnx"'), weights_only)})


def _shared_mlp():
    from safetensors.torch import load_file

    from audit.core.adapter import build_mlp

    net = build_mlp(json.loads((SHARED / "architecture.json").read_text()))
    net.load_state_dict(load_file(str(SHARED / "model.safetensors")))
    return net.eval()


def torchscript_model() -> bytes:
    """The shared MLP as a (harmless) TorchScript archive: refused all the same, as TorchScript."""
    import io

    import torch

    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(_shared_mlp()), buf)
    return buf.getvalue()


def pickled_object_pt() -> bytes:
    """The shared weights plus one (harmless) non-tensor object that a weights-only load refuses."""
    import fractions
    import io

    import torch

    buf = io.BytesIO()
    torch.save({**_shared_mlp().state_dict(), "note": fractions.Fraction(1, 3)}, buf)
    return buf.getvalue()


def skops_with_extra_type() -> bytes:
    """A pipeline whose FunctionTransformer holds operator.pos, a type outside skops' safe list."""
    import operator

    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from audit.core.dataset import Encoding

    frame = make_frame(600)
    enc = Encoding.from_dict(json.loads((SHARED / "encoding.json").read_text()))
    pipe = make_pipeline(FunctionTransformer(operator.pos), LogisticRegression(max_iter=500))
    return sio.dumps(pipe.fit(enc.encode(frame), frame.income == ">50K"))


def onnx_external_data(location: str) -> bytes:
    """A 5-input linear ONNX graph whose weight tensor is external data at ``location``."""
    from onnx import TensorProto, helper

    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[5, 1])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "20")):
        w.external_data.add(key=k, value=v)
    graph = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 5])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
                              initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                             ir_version=8).SerializeToString()


def onnx_model(width: int) -> bytes:
    """A logistic regression on the first ``width`` encoded columns, converted by skl2onnx."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    from audit.core.dataset import Encoding

    frame = make_frame(600)
    enc = Encoding.from_dict(json.loads((SHARED / "encoding.json").read_text()))
    X = enc.encode(frame).astype(np.float32)[:, :width]
    est = LogisticRegression().fit(X, frame.income)
    return to_onnx(est, X[:1], options={id(est): {"zipmap": False}},
                   target_opset=17).SerializeToString()


def truncated_pt() -> bytes:
    import io

    import torch
    from safetensors.torch import load_file

    buf = io.BytesIO()
    torch.save(load_file(str(SHARED / "model.safetensors")), buf)
    data = buf.getvalue()
    return data[: len(data) // 2]


# ---- XGBoost / LightGBM in their own formats (issue 13): data, not code, yet parsed in C++ ------
def _boosters() -> dict[str, bytes]:
    """A small XGBoost classifier (JSON, UBJSON), an XGBoost regressor and a LightGBM classifier
    (text), trained on the shared encoding's columns."""
    import tempfile

    import lightgbm
    import xgboost

    from audit.core.dataset import Encoding

    train = make_frame(600)
    enc = Encoding.load(SHARED / "encoding.json")
    X, y = enc.encode(train), (train.income == ">50K").astype(int).to_numpy()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        clf = xgboost.XGBClassifier(n_estimators=8, max_depth=3, random_state=0).fit(X, y)
        for name in ("model.json", "model.ubj"):
            clf.save_model(Path(tmp, name))
            out[name] = Path(tmp, name).read_bytes()
        xgboost.XGBRegressor(n_estimators=4, random_state=0).fit(X, train.age).save_model(Path(tmp, "r.json"))
        out["regressor.json"] = Path(tmp, "r.json").read_bytes()
        lgbm = lightgbm.LGBMClassifier(n_estimators=8, random_state=0, verbose=-1).fit(X, y)
        lgbm.booster_.save_model(str(Path(tmp, "model.txt")))
        out["model.txt"] = Path(tmp, "model.txt").read_bytes()
    return out


def booster_cases(case, err, ok) -> None:
    b = _boosters()
    path_is = lambda name, extra="": toml_with(  # noqa: E731
        ('path = "model.safetensors"', f'path = "{name}"{extra}'), ('architecture = "architecture.json"\n', ""))
    xgb, lgb = ["xgboost"], ["lightgbm"]
    unreadable_xgb = ("model.json", "not a readable XGBoost model file", "save_model")
    case("booster_xgboost_json_fine", ok('"status": "ok"', "xgboost", "no code"),
         **{"model.json": b["model.json"], "audit.toml": path_is("model.json"), "_requires": xgb,
            "_flags": ["--untrusted-config"]})
    case("booster_lightgbm_txt_fine", ok('"status": "ok"', "lightgbm", "no code"),
         **{"model.txt": b["model.txt"], "audit.toml": path_is("model.txt"), "_requires": lgb})
    case("booster_xgboost_json_truncated", err(*unreadable_xgb, "EOF"),
         **{"model.json": b["model.json"][: len(b["model.json"]) // 2], "audit.toml": path_is("model.json"),
            "_requires": xgb})
    # each of these crashed the C++ parser in-process (SIGABRT / SIGSEGV) before the child probe
    case("booster_xgboost_json_empty_aborts_parser", err(*unreadable_xgb, "crashed"),
         **{"model.json": b"", "audit.toml": path_is("model.json"), "_requires": xgb})
    case("booster_xgboost_json_deeply_nested", err(*unreadable_xgb, "crashed", "SIGSEGV"),
         **{"model.json": b'{"learner":' * 30_000 + b"1" + b"}" * 30_000, "audit.toml": path_is("model.json"),
            "_requires": xgb})
    case("booster_xgboost_json_not_a_model", err(*unreadable_xgb, "Invalid cast"),
         **{"model.json": b'{"learner": 5, "version": [3, 2, 0]}', "audit.toml": path_is("model.json"),
            "_requires": xgb})
    case("booster_xgboost_ubj_truncated", err("model.ubj", "not a readable XGBoost model file"),
         **{"model.ubj": b["model.ubj"][: len(b["model.ubj"]) // 2], "audit.toml": path_is("model.ubj"),
            "_requires": xgb})
    case("booster_xgboost_regressor_for_binary_task", err("reg:squarederror", 'task = "regression"'),
         **{"model.json": b["regressor.json"], "audit.toml": path_is("model.json"), "_requires": xgb})
    case("booster_xgboost_classes_not_the_targets", err("[model] classes", "'no'", "'yes'"),
         **{"model.json": b["model.json"], "audit.toml": path_is("model.json", '\nclasses = ["no", "yes"]'),
            "_requires": xgb})
    case("booster_lightgbm_txt_truncated", err("model.txt", "not a readable LightGBM model file"),
         **{"model.txt": b["model.txt"][: len(b["model.txt"]) // 2], "audit.toml": path_is("model.txt"),
            "_requires": lgb})
    case("booster_lightgbm_txt_not_utf8", err("model.txt", "not a readable LightGBM model file", "utf-8"),
         **{"model.txt": b"tree\n\xff\xfe\x00", "audit.toml": path_is("model.txt"), "_requires": lgb})
    case("booster_lightgbm_huge_class_count", err("model.txt", "not a readable LightGBM model file", "memory"),
         **{"model.txt": b["model.txt"].replace(b"num_class=1", b"num_class=2000000000"),
            "audit.toml": path_is("model.txt"), "_requires": lgb})
    # red team: crafted child indices crashed LightGBM (SIGSEGV) or read past the leaves silently;
    # a second objective= line was read first by the audit, last by LightGBM
    tree0 = b["model.txt"].split(b"Tree=0\n", 1)[1].split(b"\n\n", 1)[0]
    left = next(ln for ln in tree0.split(b"\n") if ln.startswith(b"left_child="))
    n_leaves = int(next(ln for ln in tree0.split(b"\n") if ln.startswith(b"num_leaves=")).split(b"=")[1])
    for name, child in (("booster_lightgbm_child_far_out_of_range", -100_000_000),
                        ("booster_lightgbm_leaf_one_past_the_end", -(n_leaves + 1))):
        bad = left.split(b" ")
        bad[-1] = str(child).encode() if bad[-1].startswith(b"-") else bad[-1]
        bad = bad if bad[-1] != left.split(b" ")[-1] else bad[:-2] + [str(child).encode(), bad[-1]]
        case(name, err("model.txt", "not a readable LightGBM model file", "tree 0", "left_child", str(child),
                       "out of range"),
             **{"model.txt": b["model.txt"].replace(left, b" ".join(bad), 1), "audit.toml": path_is("model.txt"),
                "_requires": lgb})
    case("booster_lightgbm_objective_twice", err("model.txt", "'objective' twice"),
         **{"model.txt": b["model.txt"].replace(b"objective=binary", b"objective=regression\nobjective=binary", 1),
            "audit.toml": path_is("model.txt"), "_requires": lgb})
    case("booster_format_unknown", err("'format' must be one of", "'catboost'"),
         **{"model.json": b["model.json"], "audit.toml": path_is("model.json", '\nformat = "catboost"')})


def to_toml(expect: dict) -> str:
    out = [f"exit = {expect['exit']}"]
    out.append("fragments = [" + ", ".join(json.dumps(f, ensure_ascii=False) for f in expect["fragments"]) + "]")
    for k in ("methods", "requires", "command", "absent", "flags"):
        if k in expect:
            out.append(f"{k} = {json.dumps(expect[k])}")
    return "\n".join(out) + "\n"


def main() -> None:
    """Rewrite every case; ``_generate.py NAME...`` rewrites only the named cases."""
    only = [a for a in sys.argv[1:] if not a.startswith("-")]
    if "--shared" in sys.argv or not (SHARED / "model.safetensors").exists():
        shared()
    for old in HERE.iterdir():
        if old.is_dir() and not old.name.startswith(("_", ".")) and (not only or old.name in only):
            shutil.rmtree(old)
    for name, spec in cases().items():
        if only and name not in only:
            continue
        folder = HERE / name
        folder.mkdir()
        for fname, content in spec["files"].items():
            if fname in ("_delete", "_requires", "_methods", "_flags"):
                continue
            path = folder / fname
            path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        expect = dict(spec["expect"])
        if spec["files"].get("_methods"):
            expect["methods"] = spec["files"]["_methods"]
        if spec["files"].get("_requires"):
            expect["requires"] = spec["files"]["_requires"]
        if spec["files"].get("_flags"):
            expect["flags"] = spec["files"]["_flags"]
        (folder / "expect.toml").write_text(to_toml(expect), encoding="utf-8")
        if spec["files"].get("_delete"):
            (folder / "delete.txt").write_text("\n".join(spec["files"]["_delete"]) + "\n")
    print(f"{len(cases())} cases written to {HERE}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
