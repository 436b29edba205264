"""The dataset spec and encoding: round trips, raw-feature grouping, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from audit.core.dataset import (
    CategoricalFeature,
    DatasetSpec,
    Encoding,
    NumericFeature,
    build_audit_data,
    read_table,
)
from audit.errors import DataValidationError, InvalidConfigError


def test_encoding_fit_standardizes_numerics_and_one_hot_encodes_categoricals(frame):
    enc = Encoding.fit(frame[["age", "job"]])
    X = enc.encode(frame)
    assert enc.columns == ["age", "job=clerk", "job=exec", "job=tech"]
    assert abs(X[:, 0].mean()) < 1e-5 and abs(X[:, 0].std() - 1) < 1e-4
    np.testing.assert_array_equal(X[:, 1:].sum(axis=1), 1.0)


def test_decode_inverts_encode_in_raw_units(frame, encoding):
    back = encoding.decode(encoding.encode(frame))
    np.testing.assert_array_equal(back["age"].to_numpy(), frame["age"].to_numpy())
    np.testing.assert_allclose(back["hours"].to_numpy(float), frame["hours"].to_numpy(), atol=1e-4)
    assert (back["job"].to_numpy() == frame["job"].to_numpy()).all()


def test_encoding_json_round_trip_is_lossless(encoding, tmp_path):
    path = tmp_path / "enc.json"
    path.write_text(json.dumps(encoding.to_dict()))
    assert Encoding.load(path) == encoding


def test_log1p_numeric_maps_split_thresholds_back_to_raw_units():
    feat = NumericFeature("gain", center=1.0, scale=2.0, transform="log1p")
    z = feat.encode(pd.Series([0.0, 99.0]))[:, 0]
    np.testing.assert_allclose(feat.to_raw(z), [0.0, 99.0], rtol=1e-9)


def test_ordinal_categorical_encodes_level_index():
    feat = CategoricalFeature("edu", ("low", "mid", "high"), encoding="ordinal", center=1.0, scale=1.0)
    np.testing.assert_array_equal(feat.encode(pd.Series(["low", "high"]))[:, 0], [-1.0, 1.0])
    assert list(feat.decode(np.array([[-1.0], [0.2]]))) == ["low", "mid"]


def test_aggregate_sums_one_hot_columns_into_raw_features(encoding):
    values = np.arange(len(encoding.columns), dtype=float)[None, :]  # age, hours, job=3 columns
    np.testing.assert_array_equal(encoding.aggregate(values), [[0.0, 1.0, 2 + 3 + 4]])
    np.testing.assert_array_equal(encoding.aggregate(-values, "max_abs"), [[0.0, 1.0, 4.0]])


def test_missing_categorical_maps_to_declared_missing_level():
    feat = CategoricalFeature("work", ("Private", "missing"), missing="missing")
    np.testing.assert_array_equal(feat.encode(pd.Series(["Private", None])), [[1, 0], [0, 1]])


def test_build_audit_data_encodes_binary_string_target_with_positive_label(frame):
    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K", sensitive=("sex",)))
    assert data.classes == ("<=50K", ">50K")
    np.testing.assert_array_equal(data.y, (frame["income"] == ">50K").astype(int))
    assert "sex" not in data.feature_names  # sensitive attributes stay out of the model input
    assert list(data.sensitive.columns) == ["sex"]


@pytest.mark.parametrize("labels", [["no", "yes"], [False, True], [0, 1], [0.0, 1.0]])
def test_binary_labels_of_any_type_encode_the_same(labels):
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [labels[0], labels[1], labels[1], labels[0]]})
    pos = "yes" if labels[0] == "no" else None
    data = build_audit_data(frame, DatasetSpec(target="y", positive_label=pos))
    np.testing.assert_array_equal(data.y, [0, 1, 1, 0])


def test_multiclass_and_regression_targets():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["b", "a", "c"], "v": [0.5, 1.5, 2.5]})
    multi = build_audit_data(frame, DatasetSpec(target="c", features=("x",), task="multiclass"))
    assert multi.classes == ("a", "b", "c") and list(multi.y) == [1, 0, 2]
    reg = build_audit_data(frame, DatasetSpec(target="v", features=("x",), task="regression"))
    np.testing.assert_array_equal(reg.y, [0.5, 1.5, 2.5])


@pytest.mark.parametrize(
    ("mutate", "spec_kwargs", "fragment"),
    [
        (lambda f: f.assign(age=f.age.astype(float).where(f.index != 3)), {}, "Column 'age' has missing (NaN) values in 1 row(s), first at row 4 (rows counted from 1, the header not counted)"),
        (lambda f: f.assign(age=f.age.astype(float).where(f.index != 5, np.inf)), {}, "missing or infinite"),
        (lambda f: f.assign(age=f.age.astype(str).where(f.index != 0, "1,234")), {}, "thousands separators"),
        (lambda f: f.assign(job=f.job.where(f.index != 7, "pilot")), {}, "level(s) the encoding does not know: 'pilot'"),
        (lambda f: f.drop(columns=["job"]), {}, "lacks column(s) 'job'"),
        (lambda f: f, {"positive_label": None}, "say which one is the positive outcome"),
        (lambda f: f, {"positive_label": "rich"}, "The positive label 'rich' does not occur"),
        (lambda f: f.assign(income=f.income.where(f.index != 2, "unknown")), {}, "has 3 distinct values"),
        (lambda f: f.assign(sex=f.sex.where(f.index != 4)), {}, "sensitive column 'sex'"),
        (lambda f: f.assign(income=f.income.where(f.index != 9)), {}, "target column 'income'"),
    ],
)
def test_bad_data_is_rejected_with_the_column_rows_and_fix(frame, encoding, mutate, spec_kwargs, fragment):
    spec = DatasetSpec(**{"target": "income", "positive_label": ">50K", "sensitive": ("sex",), **spec_kwargs})
    with pytest.raises(DataValidationError) as err:
        build_audit_data(mutate(frame), spec, encoding, source="data.csv")
    assert fragment in str(err.value)


def test_unknown_config_column_suggests_the_nearest_name(frame):
    with pytest.raises(DataValidationError, match="Did you mean 'income'"):
        build_audit_data(frame, DatasetSpec(target="incme"))


def test_read_table_reports_missing_empty_and_header_only_files(tmp_path):
    with pytest.raises(DataValidationError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataValidationError, match="is empty"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("a,b\n")
    with pytest.raises(DataValidationError, match="header but no rows"):
        read_table(tmp_path / "header.csv")


def test_read_table_rejects_duplicated_columns_ragged_rows_and_non_utf8(tmp_path):
    (tmp_path / "dup.csv").write_text("a,a\n1,2\n")
    with pytest.raises(DataValidationError, match="duplicated column name"):
        read_table(tmp_path / "dup.csv")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(DataValidationError, match="not a well-formed CSV"):
        read_table(tmp_path / "ragged.csv")
    (tmp_path / "latin.csv").write_bytes("name\nJos\xe9\n".encode("latin-1"))
    with pytest.raises(DataValidationError, match="not UTF-8"):
        read_table(tmp_path / "latin.csv")


def test_read_table_reads_gzip_parquet_bom_and_na_values(tmp_path, frame):
    frame.to_csv(tmp_path / "d.csv.gz", index=False)
    assert read_table(tmp_path / "d.csv.gz").shape == frame.shape
    frame.to_parquet(tmp_path / "d.parquet")
    assert read_table(tmp_path / "d.parquet").shape == frame.shape
    (tmp_path / "bom.csv").write_bytes("\ufeffa,b\n1,?\n".encode())
    got = read_table(tmp_path / "bom.csv", na_values=["?"])
    assert list(got.columns) == ["a", "b"] and got["b"].isna().all()


def test_malformed_encoding_file_is_a_config_error(tmp_path):
    (tmp_path / "e.json").write_text('{"features": [{"name": "x", "type": "numeric", "scale": 0}]}')
    with pytest.raises(InvalidConfigError, match="'scale'"):
        Encoding.load(tmp_path / "e.json")
    (tmp_path / "f.json").write_text("{not json")
    with pytest.raises(InvalidConfigError, match="not valid JSON"):
        Encoding.load(tmp_path / "f.json")


def test_numeric_category_levels_match_whatever_the_column_dtype():
    feat = CategoricalFeature("code", ("1", "2"))
    np.testing.assert_array_equal(feat.codes(pd.Series([1.0, 2.0, None]).dropna()), [0, 1])


def test_missing_level_must_be_a_declared_level():
    doc = {"features": [{"name": "w", "type": "categorical", "levels": ["a"], "missing": "?"}]}
    with pytest.raises(InvalidConfigError, match="'missing' level"):
        Encoding.from_dict(doc)


def test_only_empty_cells_and_declared_na_values_are_missing(tmp_path):
    (tmp_path / "c.csv").write_text("country,x\nNA,1\nNone,\n")
    got = read_table(tmp_path / "c.csv")
    assert got["country"].tolist() == ["NA", "None"] and got["x"].isna().tolist() == [False, True]
