"""Data is read as written: codes stay text, class labels are compared as written, dates are
never nanosecond integers, a time column sorts in time order or is refused, column names are
unique in every format, no column is listed twice, and the target cannot be a sensitive
attribute. (The same cases run through the CLI in tests/bad_inputs/.)"""

from __future__ import annotations

import pandas as pd
import pytest

from audit.core.dataset import (
    CategoricalFeature,
    DatasetSpec,
    Encoding,
    NumericFeature,
    build_audit_data,
    read_table,
    text_columns,
)
from audit.core.modalities import SequenceSpec, build_sequence_data
from audit.errors import DataValidationError, InvalidConfigError

CODES = ["01", "001", "1", "02"]


def _codes_csv(tmp_path, header="grp,code,x,y"):
    rows = [f"{CODES[i % 4]},{('01', '02', '1')[i % 3]},{i % 7}.5,{i % 2}" for i in range(40)]
    path = tmp_path / "d.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("header", ["grp,code,x,y", " grp , code,x,y", "grp ,code  ,x,y"])
def test_codes_with_leading_zeros_are_distinct_groups_and_levels(tmp_path, header):
    path = _codes_csv(tmp_path, header)
    spec = DatasetSpec(target="y", sensitive=("grp",))
    enc = Encoding((NumericFeature("x"), CategoricalFeature("code", ("01", "02", "1"))))
    # the hazard: parsed as numbers, 01, 001 and 1 are one group and level "01" is unknown
    plain = read_table(path)
    assert sorted(plain["grp"].astype(str).unique()) == ["1", "2"]
    text = text_columns(spec, enc)
    assert text == ("grp", "code", "y")  # the target's class labels are read as written too
    data = build_audit_data(read_table(path, text=text), spec, enc)
    assert sorted(data.sensitive["grp"].unique()) == ["001", "01", "02", "1"]
    assert data.sensitive["grp"].value_counts().to_dict() == {c: 10 for c in CODES}
    assert data.X[:, 1:].sum(axis=0).tolist() == [14.0, 13.0, 13.0]  # one-hot of 01 / 02 / 1


def test_a_sensitive_column_declared_numeric_in_the_encoding_is_still_parsed_as_a_number():
    spec = DatasetSpec(target="y", sensitive=("age", "sex"))
    enc = Encoding((NumericFeature("age"),))
    assert text_columns(spec, enc) == ("sex", "y")


@pytest.mark.parametrize("values", [
    pd.date_range("2020-01-01", periods=6, freq="D"),
    pd.date_range("2020-01-01", periods=6, freq="D", tz="UTC"),
    pd.to_timedelta(range(6), unit="h"),
])
def test_dates_and_durations_are_refused_never_nanosecond_integers(tmp_path, values):
    frame = pd.DataFrame({"when": values, "x": range(6), "y": [0, 1] * 3})
    frame.to_parquet(tmp_path / "d.parquet")
    read = read_table(tmp_path / "d.parquet")
    spec = DatasetSpec(target="y")
    enc = Encoding((NumericFeature("when"), NumericFeature("x")))
    with pytest.raises(DataValidationError, match=r"Column 'when' holds dates or times.*nanoseconds"):
        build_audit_data(read, spec, enc, source="d.parquet")
    with pytest.raises(DataValidationError, match="Column 'when' holds dates or times"):
        build_audit_data(read, spec)  # no encoding: the data's own encoding is not derived either


def test_dates_declared_categorical_are_compared_as_text(tmp_path):
    frame = pd.DataFrame({"when": pd.to_datetime(["2020-01-01", "2020-01-02"] * 3), "y": [0, 1] * 3})
    enc = Encoding((CategoricalFeature("when", ("2020-01-01 00:00:00", "2020-01-02 00:00:00")),))
    data = build_audit_data(frame, DatasetSpec(target="y"), enc)
    assert data.X.sum(axis=0).tolist() == [3.0, 3.0]


def test_target_listed_as_sensitive_is_a_config_error():
    with pytest.raises(InvalidConfigError, match="target 'y' is also listed as a sensitive attribute"):
        DatasetSpec(target="y", sensitive=("sex", "y"))


@pytest.mark.parametrize("names, shown", [(["age", "age "], "'age'"), ([" x", "x", "y"], "'x'")])
def test_parquet_column_names_that_collide_after_stripping_are_refused(tmp_path, names, shown):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table([pa.array([1, 2])] * len(names), names=names)
    pq.write_table(table, tmp_path / "d.parquet")
    with pytest.raises(DataValidationError, match=f"duplicated column name.*{shown}"):
        read_table(tmp_path / "d.parquet")


def test_exact_duplicate_parquet_names_are_refused_by_the_same_check(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table([pa.array([1, 2]), pa.array([3, 4])], names=["a", "a"]),
                   tmp_path / "d.parquet")
    with pytest.raises(DataValidationError, match="duplicated column name.*'a'"):
        read_table(tmp_path / "d.parquet")


def _series(tmp_path, times):
    rows = [f"{t},{i}.0,{i % 3}.0" for i, t in enumerate(times)]
    path = tmp_path / "s.csv"
    path.write_text("t,x,z\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return SequenceSpec(path=str(path), window=2, time_column="t")


SPEC = DatasetSpec(target="x", features=("x", "z"), task="regression")
MONTHS = [f"2000-{m}-01" for m in range(1, 13)]  # "2000-10-01" < "2000-2-01" as text


def test_a_time_column_of_dates_sorts_in_time_order_not_as_text(tmp_path):
    data = build_sequence_data(_series(tmp_path, MONTHS[::-1]), SPEC)
    assert data.y.tolist() == [float(i) for i in range(9, -1, -1)]  # target times Mar..Dec


@pytest.mark.parametrize("times, bad, row", [
    (MONTHS[:5] + ["2000-13-01"] + MONTHS[6:], "'2000-13-01'", "first at row 6"),
    (MONTHS[:3] + ["soon"] + MONTHS[4:], "'soon'", "first at row 4"),
    ([f"step-{i}" for i in range(12)], "'step-0'", "12 row(s)"),  # as text "step-10" < "step-2"
])
def test_a_time_value_that_is_neither_number_nor_date_is_refused_naming_the_rows(
        tmp_path, times, bad, row):
    with pytest.raises(DataValidationError) as err:
        build_sequence_data(_series(tmp_path, times), SPEC)
    msg = str(err.value)
    assert "time column 't'" in msg and bad in msg and row in msg and "s.csv" in msg


def test_a_missing_time_is_refused_naming_the_row(tmp_path):
    with pytest.raises(DataValidationError, match=r"time column 't'.*missing.*first at row 5 \(rows counted from 1"):
        build_sequence_data(_series(tmp_path, MONTHS[:4] + [""] + MONTHS[5:]), SPEC)


def _labels_csv(tmp_path, labels, extra=""):
    path = tmp_path / "d.csv"
    rows = [f"{i % 7}.5,{'ab'[i % 2]}{extra},{lab}" for i, lab in enumerate(labels)]
    path.write_text("x,g,y\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _build(path, **spec):
    spec = DatasetSpec(**{"target": "y", "sensitive": ("g",), **spec})
    return build_audit_data(read_table(path, text=text_columns(spec, None)), spec, source=path.name)


def test_one_number_written_two_ways_in_the_target_is_refused_not_all_positive(tmp_path):
    # the red team's case: parsed as numbers, '1' (51 rows) and '01' (69) were all positive
    path = _labels_csv(tmp_path, ["1"] * 51 + ["01"] * 69)
    with pytest.raises(DataValidationError, match=r"'01' in 69 rows, '1' in 51 rows.*compared as written"):
        _build(path, positive_label="1")


def test_float_spelled_labels_do_not_match_an_integer_positive_label(tmp_path):
    path = _labels_csv(tmp_path, ["1.0", "0.0"] * 20)
    with pytest.raises(DataValidationError, match=r"positive label '1' does not occur.*'0.0', '1.0'"):
        _build(path, positive_label="1")
    assert _build(path, positive_label="1.0").y.tolist() == [1, 0] * 20  # written the same way


@pytest.mark.parametrize("labels, positive", [(["0", "1"], "1"), (["False", "True"], "True"),
                                              (["FALSE", "TRUE"], "TRUE"), (["no", "yes"], None)])
def test_the_default_positive_label_is_read_as_written(tmp_path, labels, positive):
    path = _labels_csv(tmp_path, labels * 10)
    if positive is None:
        with pytest.raises(DataValidationError, match="say which one is the positive outcome"):
            _build(path)
    else:
        data = _build(path)
        assert data.classes[1] == positive and data.y.tolist() == [0, 1] * 10


def test_surrounding_spaces_are_not_part_of_a_value_as_the_readme_states(tmp_path):
    path = tmp_path / "d.csv"
    rows = [f"{i}.5,{g},{i % 2}" for i, g in enumerate([" a", "a ", "a", '" a "', "b"] * 8)]
    path.write_text("x,g,y\n" + "\n".join(rows) + "\n", encoding="utf-8")
    data = _build(path)
    assert data.sensitive["g"].value_counts().to_dict() == {"a": 32, "b": 8}
    inner = tmp_path / "e.csv"  # spaces inside a value count
    inner.write_text("x,g,y\n" + "\n".join(f"{i}.5,{('a b', 'ab')[i % 2]},{i // 2 % 2}"
                                             for i in range(8)) + "\n", encoding="utf-8")
    assert sorted(_build(inner).sensitive["g"].unique()) == ["a b", "ab"]


@pytest.mark.parametrize("spec, match", [
    (dict(target="y", sensitive=("sex", "sex")), r"\[data\] sensitive lists 'sex' more than once"),
    (dict(target="y", features=("x", "z", "x")), r"\[data\] features lists 'x' more than once"),
    (dict(target="y", predictions="y"), "predictions column 'y' is also the target"),
])
def test_a_column_listed_twice_or_predictions_equal_to_the_target_is_a_config_error(spec, match):
    with pytest.raises(InvalidConfigError, match=match):
        DatasetSpec(**spec)


def test_values_that_overflow_float32_once_encoded_are_refused_naming_column_and_rows():
    import numpy as np

    frame = pd.DataFrame({"x": [1.0, 1e308, 2.0, -1e300], "y": [0, 1, 0, 1]})
    enc = Encoding((NumericFeature("x", center=0.0, scale=1.0),))
    with pytest.raises(DataValidationError,
                       match=r"Column 'x'.*overflow.*float32.*2 row\(s\), first at row 2 \(rows counted from 1, the header not counted\)"):
        build_audit_data(frame, DatasetSpec(target="y"), enc)
    tiny = Encoding((NumericFeature("x", center=0.0, scale=1e-300),))
    with pytest.raises(DataValidationError, match=r"scale 1e-300.*4 row\(s\)"):
        build_audit_data(frame.assign(x=[1.0, 2.0, 3.0, 4.0]), DatasetSpec(target="y"), tiny)
    # the largest float32 itself is accepted
    edge = frame.assign(x=[1.0, float(np.finfo(np.float32).max), 2.0, 3.0])
    assert np.isfinite(build_audit_data(edge, DatasetSpec(target="y"), enc).X).all()


@pytest.mark.parametrize("predictions", [["TRUE", "FALSE"], [True, False]])
def test_true_false_predictions_beside_other_labels_are_refused_not_read_as_scores(tmp_path, predictions):
    frame = pd.DataFrame({"x": [1.0, 2.0] * 5, "y": ["0", "1"] * 5, "p": predictions * 5})
    spec = DatasetSpec(target="y", predictions="p")
    with pytest.raises(DataValidationError, match=r"predictions column 'p'.*('TRUE'|true/false)"):
        build_audit_data(frame, spec)
    same = frame.assign(y=predictions * 5)  # the target's own labels: predictions as labels
    assert build_audit_data(same, spec).predictions.tolist() == [1, 0] * 5


def test_an_image_labels_csv_reads_groups_and_labels_as_written_too(tmp_path):
    import numpy as np

    from audit.core.modalities import ImageSpec, build_image_data

    np.savez(tmp_path / "d.npz", X=np.zeros((6, 1, 2, 2)))
    (tmp_path / "l.csv").write_text("y,site\n1,01\n0,1\n1,001\n0,01\n1,1\n0,001\n", encoding="utf-8")
    spec = ImageSpec(str(tmp_path / "d.npz"), labels=str(tmp_path / "l.csv"))
    data = build_image_data(spec, DatasetSpec(target="y", sensitive=("site",), positive_label="1"))
    assert sorted(data.sensitive["site"].unique()) == ["001", "01", "1"]
    assert data.y.tolist() == [1, 0, 1, 0, 1, 0]
    (tmp_path / "l.csv").write_text("y,site\n1,a\n01,b\n1,a\n0,b\n1,a\n0,b\n", encoding="utf-8")
    with pytest.raises(DataValidationError, match="'01' in 1 rows, '1' in 3 rows"):
        build_image_data(spec, DatasetSpec(target="y", sensitive=("site",), positive_label="1"))



def test_image_values_that_overflow_float32_once_scaled_are_refused(tmp_path):
    import numpy as np

    from audit.core.modalities import ImageSpec, build_image_data

    X = np.zeros((4, 1, 2, 2))
    X[2, 0, 1, 0] = 1e300  # finite as float64, inf as float32
    np.savez(tmp_path / "d.npz", X=X, y=np.array([0, 1, 0, 1]))
    spec = ImageSpec(str(tmp_path / "d.npz"))
    with pytest.raises(DataValidationError,
                       match=r"image values in 'd.npz' overflow the model's float32 input.*1 value\(s\), "
                             r"first at index \[2, 0, 1, 0\]"):
        build_image_data(spec, DatasetSpec(target="y"))
    X[2, 0, 1, 0] = 1e30  # large but representable: accepted
    np.savez(tmp_path / "d.npz", X=X, y=np.array([0, 1, 0, 1]))
    assert np.isfinite(build_image_data(spec, DatasetSpec(target="y")).X).all()
