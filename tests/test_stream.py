"""Streamed decisions-only audits (audit.core.stream): the same fairness numbers as in memory,
from files, compressed CSV and partitioned Parquet folders, in bounded memory, with clear errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audit.cli import app

FAST = "[methods.fairness]\nn_bootstrap = 200\nwhat_if_rows = 2000\n"


def decision_log(n: int, seed: int = 0) -> pd.DataFrame:
    """Decisions with planted gaps, a 45-row group (judged) and a 12-row one (too small)."""
    rng = np.random.default_rng(seed)
    race = rng.choice(["A", "B", "C"], n, p=[0.7, 0.2, 0.1]).astype(object)
    race[:45] = "D"
    race[45:57] = "E"
    sex = rng.choice(["Female", "Male"], n)
    logit = rng.normal(-0.8, 1.3, n) + 0.6 * (sex == "Male") - 0.4 * (race == "C")
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    score = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.7, n))))
    return pd.DataFrame({"sex": sex, "race": race, "outcome": y, "score": score})


def write_config(folder: Path, data: str, *, stream: bool | None = None, extra: str = FAST) -> Path:
    line = "" if stream is None else f"stream = {str(stream).lower()}\n"
    config = folder / f"audit-{abs(hash((data, stream)))}.toml"
    config.write_text(f'name = "log"\n[model]\npredictions = "score"\n[data]\npath = {json.dumps(data)}\n'
                      f'target = "outcome"\npositive_label = "yes"\nsensitive = ["sex", "race"]\n{line}{extra}')
    return config


def audit(config: Path, out: Path, *args: str) -> tuple[int, str, dict | None]:
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(out), "--format", "json", "-q",
                                      "--full", *args], catch_exceptions=False)
    doc = json.loads((out / "results.json").read_text()) if result.exit_code == 0 else None
    return result.exit_code, result.output, doc


def fairness_of(doc: dict) -> dict:
    return doc["methods"]["fairness"]["result"]


def assert_same_fairness(streamed: dict, memory: dict) -> None:
    """Every count-based number identical; ECE equal up to summation order; AUC within the
    streamed result's stated histogram bound of the exact AUC."""
    a, b = fairness_of(streamed), fairness_of(memory)
    assert list(a["attributes"]) == list(b["attributes"])
    bound = a["auc_error_bound"]
    assert bound is not None and b["auc_error_bound"] is None
    for name, ra in a["attributes"].items():
        rb = b["attributes"][name]
        assert [g["group"] for g in ra["groups"]] == [g["group"] for g in rb["groups"]]
        for ga, gb in zip(ra["groups"], rb["groups"], strict=True):
            assert ga["count"] == gb["count"]
            for k, ea in ga["metrics"].items():
                eb = gb["metrics"][k]
                if k == "auc" and eb["value"] is not None:
                    assert abs(ea["value"] - eb["value"]) <= bound + 1e-12
                elif k == "ece" and eb["value"] is not None:
                    assert ea["value"] == pytest.approx(eb["value"], abs=1e-12)
                elif k != "auc":
                    assert ea == eb, (name, ga["group"], k)
            assert ga["mdd"] == gb["mdd"]
            if gb["calibration"] is not None:
                assert ga["calibration"]["count"] == gb["calibration"]["count"]
                assert ga["calibration"]["fraction_positive"] == gb["calibration"]["fraction_positive"]
        for k, da in ra["disparities"].items():
            if k != "auc_difference":
                assert da == rb["disparities"][k], (name, k)
        assert ra["impact_ratios"] == rb["impact_ratios"]
        assert ra["curves"] == rb["curves"]
        assert ra["what_if"] == rb["what_if"]


@pytest.fixture(scope="module")
def log_files(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("log")
    df = decision_log(12_000)
    df.to_csv(folder / "log.csv", index=False)
    df.to_csv(folder / "log.csv.gz", index=False)
    df.to_csv(folder / "log.csv.xz", index=False)
    df.to_csv(folder / "log.csv.zip", index=False)
    df.to_parquet(folder / "log.parquet", row_group_size=1500)
    return folder, df


@pytest.fixture
def small_batches(monkeypatch):
    import audit.core.stream

    monkeypatch.setattr(audit.core.stream, "BATCH_ROWS", 1000)


@pytest.mark.parametrize("name", ["log.parquet", "log.csv.gz", "log.csv.xz", "log.csv.zip"])
def test_streamed_fairness_equals_the_in_memory_audit_over_many_batches(log_files, tmp_path, small_batches, name):
    folder, _ = log_files
    code, out, memory = audit(write_config(tmp_path, str(folder / "log.csv")), tmp_path / "memory")
    assert code == 0, out
    code, out, streamed = audit(write_config(tmp_path, str(folder / name), stream=True), tmp_path / "streamed")
    assert code == 0, out
    assert streamed["data"]["rows"] == memory["data"]["rows"] == 12_000
    assert_same_fairness(streamed, memory)
    # only counts were kept: methods that need the rows are listed as not run, with the reason
    assert streamed["methods"]["performance"]["status"] == "skipped"
    assert "read the data in batches" in streamed["methods"]["performance"]["reason"]


def test_partitioned_parquet_folder_is_streamed_and_equals_the_in_memory_audit(log_files, tmp_path, small_batches):
    import pyarrow as pa
    import pyarrow.dataset as ds

    folder, df = log_files
    parts = tmp_path / "parts"
    ds.write_dataset(pa.Table.from_pandas(df), parts, format="parquet", partitioning=["race"],
                     partitioning_flavor="hive", max_rows_per_group=700, max_rows_per_file=2000)
    (parts / "_SUCCESS").write_text("")
    assert len(list(parts.rglob("*.parquet"))) > 5
    code, out, memory = audit(write_config(tmp_path, str(folder / "log.csv")), tmp_path / "memory")
    assert code == 0, out
    code, out, streamed = audit(write_config(tmp_path, str(parts)), tmp_path / "streamed")  # a folder streams
    assert code == 0, out
    assert_same_fairness(streamed, memory)
    assert len([f for f in streamed["provenance"]["files"] if f["role"] == "data"]) == len(
        list(parts.rglob("*.parquet")))


def test_streamed_labels_only_decisions_equal_the_in_memory_audit(log_files, tmp_path, small_batches):
    folder, df = log_files
    labels = df.assign(score=np.where(df.score >= 0.5, "yes", "no"))
    labels.to_parquet(tmp_path / "labels.parquet", row_group_size=1000)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    code, out, memory = audit(write_config(tmp_path, str(tmp_path / "labels.csv")), tmp_path / "m")
    assert code == 0, out
    code, out, streamed = audit(write_config(tmp_path, str(tmp_path / "labels.parquet"), stream=True),
                                tmp_path / "s")
    assert code == 0, out
    a, b = fairness_of(streamed), fairness_of(memory)
    assert a["attributes"] == b["attributes"] and not a["has_scores"]


def test_streamed_multiclass_decisions_equal_the_in_memory_audit(tmp_path, small_batches):
    rng = np.random.default_rng(5)
    n = 6000
    df = pd.DataFrame({"region": rng.choice(["north", "south", "east"], n),
                       "grade": rng.choice(["A", "B", "C"], n, p=[0.5, 0.3, 0.2])})
    df["pred"] = np.where(rng.random(n) < 0.7, df.grade, rng.choice(["A", "B", "C"], n))
    df.to_csv(tmp_path / "grades.csv", index=False)
    df.to_parquet(tmp_path / "grades.parquet", row_group_size=1000)
    docs = []
    for name, stream in (("grades.csv", None), ("grades.parquet", True)):
        config = tmp_path / f"{name}.toml"
        config.write_text(f'[model]\npredictions = "pred"\ntask = "multiclass"\n[data]\npath = "{name}"\n'
                          f'target = "grade"\nsensitive = ["region"]\n'
                          + ("stream = true\n" if stream else ""))
        code, out, doc = audit(config, tmp_path / f"out-{name}")
        assert code == 0, out
        docs.append(fairness_of(doc))
    assert docs[0]["attributes"] == docs[1]["attributes"]


def test_an_intersection_with_too_many_groups_is_skipped_alike_or_refused_when_named(tmp_path, small_batches):
    df = decision_log(4000)
    df = df[df.race.isin(["A", "B", "C"])]
    df.to_csv(tmp_path / "log.csv", index=False)
    df.to_parquet(tmp_path / "log.parquet", row_group_size=500)
    extra = "[methods.fairness]\nn_bootstrap = 0\nwhat_if = false\nmax_groups = 4\n"
    skipped = []
    for name, stream in (("log.csv", None), ("log.parquet", True)):
        code, out, doc = audit(write_config(tmp_path, str(tmp_path / name), stream=stream, extra=extra),
                               tmp_path / f"out-{name}")
        assert code == 0, out
        skipped.append(fairness_of(doc)["skipped"])
    assert skipped[0] == skipped[1] == {"sex*race": "6 groups, more than max_groups = 4"}
    named = extra + 'intersections = [["sex", "race"]]\n'
    msg = _error(write_config(tmp_path, str(tmp_path / "log.parquet"), stream=True, extra=named), tmp_path)
    assert "'sex*race'" in msg and "max_groups = 4" in msg


CAPPED = """
import resource, sys
cap = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from audit.cli import main
sys.argv = ["audit", *sys.argv[2:]]
main()
"""


@pytest.mark.slow
def test_a_memory_capped_run_survives_streaming_where_the_in_memory_path_cannot(tmp_path):
    """Under a 1.2 GiB address-space cap, 4 million decisions stream through; the same file
    read into memory stops with a clear out-of-memory error (exit 2), not a crash."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n = 4_000_000
    table = pa.table({
        "sex": pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 2, n).astype(np.int32)),
                                              pa.array(["Female", "Male"])),
        "race": pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 4, n).astype(np.int32)),
                                               pa.array(["A", "B", "C", "D"])),
        "outcome": pa.DictionaryArray.from_arrays(pa.array((rng.random(n) < 0.3).astype(np.int32)),
                                                  pa.array(["no", "yes"])),
        "score": pa.array(rng.random(n))})
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=500_000)
    del table
    cap = str(int(1.2 * 2**30))
    env = {"OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "AUDIT_MEMORY_LIMIT": "64GiB",
           "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    extra = "[methods.fairness]\nn_bootstrap = 200\nwhat_if = false\n"

    def capped(stream: bool, out: str) -> subprocess.CompletedProcess:
        config = write_config(tmp_path, str(tmp_path / "big.parquet"), stream=stream, extra=extra)
        return subprocess.run([sys.executable, "-c", CAPPED, cap, "run", str(config), "--out",
                               str(tmp_path / out), "--format", "json", "-q", "--full"],
                              capture_output=True, text=True, env=env, timeout=600)

    streamed = capped(True, "streamed")
    assert streamed.returncode == 0, streamed.stderr
    doc = json.loads((tmp_path / "streamed" / "results.json").read_text())
    assert doc["data"]["rows"] == n and doc["methods"]["fairness"]["status"] == "ok"
    memory = capped(False, "memory")
    assert memory.returncode == 2, memory.stderr
    assert "Traceback" not in memory.stderr and "memory" in memory.stderr.lower()
    assert not (tmp_path / "memory").exists()


# ---- bad inputs: exit 2, one line naming the file and the column ----------------------------


def _error(config: Path, tmp_path: Path, *args: str) -> str:
    code, out, _ = audit(config, tmp_path / "out", *args)
    assert code == 2, out
    assert "Traceback" not in out and out.strip().startswith("error:")
    assert not (tmp_path / "out").exists()
    return " ".join(out.split())


def test_a_column_missing_from_one_partition_names_the_file_and_column(log_files, tmp_path):
    _, df = log_files
    parts = tmp_path / "parts"
    (parts / "day=1").mkdir(parents=True)
    (parts / "day=2").mkdir(parents=True)
    df.iloc[:500].to_parquet(parts / "day=1" / "a.parquet")
    df.iloc[500:1000].drop(columns="race").to_parquet(parts / "day=2" / "b.parquet")
    msg = _error(write_config(tmp_path, str(parts)), tmp_path)
    assert "'race'" in msg and "day=2/b.parquet" in msg and "same columns" in msg


def test_mixed_schemas_across_partitions_name_both_files(log_files, tmp_path):
    _, df = log_files
    parts = tmp_path / "parts"
    parts.mkdir()
    df.iloc[:500].to_parquet(parts / "a.parquet")
    df.iloc[500:1000].assign(score=np.where(df.score[500:1000] > 0.5, "yes", "no")).to_parquet(parts / "b.parquet")
    msg = _error(write_config(tmp_path, str(parts)), tmp_path)
    assert "'score'" in msg and "a.parquet" in msg and "b.parquet" in msg and "schemas" in msg


def test_an_empty_folder_is_an_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    msg = _error(write_config(tmp_path, str(tmp_path / "empty")), tmp_path)
    assert "holds no Parquet files" in msg and "empty" in msg


def test_a_missing_column_in_a_streamed_file_names_it(log_files, tmp_path):
    folder, _ = log_files
    config = write_config(tmp_path, str(folder / "log.parquet"), stream=True)
    config.write_text(config.read_text().replace('target = "outcome"', 'target = "outcom"'))
    msg = _error(config, tmp_path)
    assert "'outcom'" in msg and "log.parquet" in msg and "Did you mean 'outcome'" in msg


def test_scores_out_of_range_in_a_streamed_file_name_the_rows(tmp_path):
    df = decision_log(3000)
    df.loc[2500, "score"] = 1.7
    df.to_parquet(tmp_path / "bad.parquet", row_group_size=1000)
    msg = _error(write_config(tmp_path, str(tmp_path / "bad.parquet"), stream=True), tmp_path)
    assert ("has a score outside [0, 1] (1.7) in row 2,501 of 'bad.parquet' (rows counted from 1, the header "
            "not counted)") in msg, msg
    assert "np." not in msg


def test_a_missing_value_in_the_second_file_of_a_folder_names_that_file_and_its_row_counted_from_one(tmp_path):
    folder = tmp_path / "log"
    folder.mkdir()
    decision_log(40, seed=1).to_parquet(folder / "a.parquet")
    df = decision_log(40, seed=2)
    df.loc[6, "sex"] = None  # the 7th data row
    df.to_parquet(folder / "b.parquet")
    msg = _error(write_config(tmp_path, str(folder), stream=True), tmp_path)
    assert ("The sensitive column 'sex' has missing values in row 7 of 'b.parquet' (rows counted from 1, the "
            "header not counted)") in msg, msg


@pytest.mark.parametrize("column", ["sex", "outcome", "score"])
@pytest.mark.parametrize("name", ["log.csv", "log.parquet"])
def test_the_same_bad_cell_gets_the_same_row_number_streamed_or_in_memory(tmp_path, column, name):
    """Every row number in a message counts from 1 with the header not counted, whichever path
    reads the file: the cell at index 2,500 is row 2,501 in both."""
    df = decision_log(3000)
    df[column] = df[column].astype(object)
    df.loc[2500, column] = None
    path = tmp_path / name
    df.to_csv(path, index=False) if name.endswith(".csv") else df.to_parquet(path, row_group_size=1000)
    rows = {}
    for stream in (True, False):
        msg = _error(write_config(tmp_path, str(path), stream=stream), tmp_path)
        assert "missing values" in msg and f"'{column}'" in msg, msg
        assert "(rows counted from 1, the header not counted)" in msg, msg
        rows[stream] = re.findall(r"\brow ([\d,]+)", msg)
    assert rows[True] == rows[False] == ["2,501"]


def test_a_sampled_audit_numbers_a_bad_row_as_in_the_file_not_the_sample(tmp_path):
    """Under [data] max_rows only the sampled rows are checked; a bad one is named by its row in
    the file (the sample's own positions would point at good rows)."""
    df = decision_log(3000)
    df["sex"] = df["sex"].astype(object)
    df.loc[1000:, "sex"] = None
    df.to_csv(tmp_path / "log.csv", index=False)
    config = write_config(tmp_path, str(tmp_path / "log.csv"), extra="max_rows = 300\n" + FAST)
    msg = _error(config, tmp_path)
    row = int(re.search(r"first at row ([\d,]+) \(rows counted from 1", msg).group(1).replace(",", ""))
    assert 1000 < row <= 3000 and pd.isna(df.sex.iloc[row - 1])  # the sample's positions stop at 300


def test_a_method_that_needs_rows_cannot_be_chosen_for_a_streamed_audit(log_files, tmp_path):
    folder, _ = log_files
    msg = _error(write_config(tmp_path, str(folder / "log.parquet"), stream=True), tmp_path,
                 "--methods", "fairness,performance")
    assert "performance" in msg and "need the audited rows" in msg


def test_stream_needs_precomputed_decisions(tmp_path):
    config = tmp_path / "audit.toml"
    config.write_text('[model]\npath = "m.skops"\n[data]\npath = "d.parquet"\ntarget = "y"\nstream = true\n')
    msg = _error(config, tmp_path)
    assert "[model] predictions" in msg


def test_a_link_in_a_data_folder_to_a_file_outside_is_refused_under_untrusted_config(log_files, tmp_path):
    folder, _ = log_files
    audit_dir = tmp_path / "audit"
    (audit_dir / "parts" / "day=1").mkdir(parents=True)
    (audit_dir / "parts" / "day=1" / "a.parquet").symlink_to(folder / "log.parquet")
    config = write_config(audit_dir, "parts")
    msg = _error(config, tmp_path, "--untrusted-config")
    assert "day=1/a.parquet" in msg and "outside the config's folder" in msg
    # a link that stays inside the folder is read, with or without the flag
    (audit_dir / "log.parquet").write_bytes((folder / "log.parquet").read_bytes())
    (audit_dir / "parts" / "day=1" / "a.parquet").unlink()
    (audit_dir / "parts" / "day=1" / "a.parquet").symlink_to(audit_dir / "log.parquet")
    code, out, doc = audit(config, tmp_path / "ok", "--untrusted-config")
    assert code == 0, out
    assert doc["data"]["rows"] == 12_000


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("kind", ["list", "struct"])
def test_a_nested_sensitive_column_names_the_file_and_column_streamed_or_in_memory(tmp_path, kind, stream):
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = decision_log(2000)
    race = pa.array([[v] for v in df.race] if kind == "list" else [{"k": v} for v in df.race])
    table = pa.Table.from_pandas(df.drop(columns="race")).append_column("race", race)
    (tmp_path / "parts").mkdir()
    pq.write_table(table, tmp_path / "parts" / "a.parquet")
    data = tmp_path / "parts" if stream else tmp_path / "parts" / "a.parquet"
    msg = _error(write_config(tmp_path, str(data)), tmp_path)
    assert "'race'" in msg and "a.parquet" in msg and "nested values" in msg


def test_an_unused_list_column_is_ignored_in_memory_as_other_unused_columns_are(tmp_path):
    df = decision_log(2000)
    df["tags"] = [[1.0, 2.0]] * len(df)
    df.to_parquet(tmp_path / "d.parquet")
    code, out, doc = audit(write_config(tmp_path, str(tmp_path / "d.parquet")), tmp_path / "out",
                           "--methods", "fairness")
    assert code == 0, out
    assert doc["data"]["rows"] == 2000


def test_save_predictions_on_a_streamed_audit_is_refused_before_any_work(log_files, tmp_path, monkeypatch):
    import audit.core.stream

    def never(*args, **kwargs):
        raise AssertionError("the data was read")

    monkeypatch.setattr(audit.core.stream, "stream_tables", never)
    folder, _ = log_files
    config = write_config(tmp_path, str(folder / "log.parquet"), stream=True)
    config.write_text(config.read_text() + "\n[report]\nsave_predictions = true\n")
    msg = _error(config, tmp_path)
    assert "save_predictions" in msg and "no rows to save" in msg


def test_files_left_out_of_a_data_folder_are_named_in_the_limitations(log_files, tmp_path):
    folder, df = log_files
    parts = tmp_path / "parts"
    parts.mkdir()
    df.to_parquet(parts / "a.parquet")
    (parts / "b.parq").write_bytes(b"x")
    (parts / "c.PARQUET.gz").write_bytes(b"x")
    (parts / "_SUCCESS").write_text("")
    code, out, doc = audit(write_config(tmp_path, str(parts)), tmp_path / "out")
    assert code == 0, out
    notes = " ".join(doc["limitations"])
    assert "of 1 file(s) were read" in notes
    assert "2 other file(s) in the data folder were not read" in notes
    assert "'b.parq'" in notes and "'c.PARQUET.gz'" in notes and "_SUCCESS" not in notes


def bad_label_folder(tmp_path: Path) -> Path:
    """Two partitions of label decisions; the second has 'maybe' at its data rows 1,201, 1,501 and
    2,401 and 'unsure' at row 1,700 (its second and third batches of 1,000 rows)."""
    folder = tmp_path / "labels"
    for i, region in enumerate(("north", "south")):
        df = decision_log(2500, seed=i)
        df["score"] = np.where(df.score > 0.5, "yes", "no").astype(object)
        if region == "south":
            df.loc[[1200, 1500, 2400], "score"] = "maybe"
            df.loc[1699, "score"] = "unsure"
        (folder / f"region={region}").mkdir(parents=True)
        df.to_parquet(folder / f"region={region}" / "p.parquet")
    return write_config(tmp_path, str(folder))


BAD_LABELS = ("The predictions column 'score' holds values that are not the target's classes 'no', 'yes': "
              "'maybe' in 3 row(s), first at row 1,201 of 'region=south/p.parquet'; 'unsure' in 1 row(s), "
              "first at row 1,700 of 'region=south/p.parquet' (rows counted from 1 within each file")


def test_prediction_labels_that_are_not_the_targets_name_their_file_first_row_and_count(tmp_path, small_batches):
    msg = _error(bad_label_folder(tmp_path), tmp_path)
    assert BAD_LABELS in msg, msg


def test_a_partition_folder_named_like_a_column_of_its_files_is_refused_naming_both(log_files, tmp_path):
    """region=east/sex=zzz/ holding files with their own 'sex' column: which value counts would be
    a guess (the file's won, silently), so it is an input error."""
    _, df = log_files
    parts = tmp_path / "parts"
    (parts / "region=north").mkdir(parents=True)
    (parts / "region=east" / "sex=zzz").mkdir(parents=True)
    df.iloc[:500].to_parquet(parts / "region=north" / "a.parquet")
    df.iloc[500:600].to_parquet(parts / "region=east" / "sex=zzz" / "b.parquet")
    msg = _error(write_config(tmp_path, str(parts)), tmp_path)
    assert ("The column 'sex' is both a partition folder ('sex=zzz', value 'zzz') and a column of the file "
            "'region=east/sex=zzz/b.parquet'") in msg, msg


AWKWARD = {"sex": "s*t", "race": "a&b"}, {"sex": "e × f", "race": 'x"y'}


@pytest.mark.parametrize("names", AWKWARD, ids=["star-ampersand", "times-quote"])
def test_streamed_audit_of_attributes_whose_names_need_quoting_equals_the_in_memory_audit(
        log_files, tmp_path, small_batches, names):
    """Result keys quote such names ('"s*t"'); the streamed tables are found by the columns,
    in a streamed file and in a hive-partitioned folder alike."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    _, df = log_files
    df = df.rename(columns=names)
    df.to_parquet(tmp_path / "log.parquet", row_group_size=1500)  # CSV headers lose edge spaces
    parts = tmp_path / "parts"
    ds.write_dataset(pa.Table.from_pandas(df), parts, format="parquet", partitioning=[names["race"]],
                     partitioning_flavor="hive", max_rows_per_group=700, max_rows_per_file=2000)

    def config(data: str, stream: str) -> Path:
        path = tmp_path / f"{stream or 'folder'}.toml"
        path.write_text(f'name = "log"\n[model]\npredictions = "score"\n[data]\npath = {json.dumps(data)}\n'
                        f'target = "outcome"\npositive_label = "yes"\n'
                        f'sensitive = {json.dumps(list(names.values()))}\n{stream}\n{FAST}')
        return path

    code, out, memory = audit(config(str(tmp_path / "log.parquet"), ""), tmp_path / "memory")
    assert code == 0, out
    assert len(fairness_of(memory)["attributes"]) == 3  # both attributes and their intersection
    for data, stream in ((str(tmp_path / "log.parquet"), "stream = true"), (str(parts), "")):
        code, out, streamed = audit(config(data, stream), tmp_path / f"streamed-{bool(stream)}")
        assert code == 0, out
        assert streamed["methods"]["fairness"]["status"] == "ok"
        assert_same_fairness(streamed, memory)


def test_streamed_audit_records_its_config_file_with_its_hash_like_an_in_memory_audit(log_files, tmp_path):
    import hashlib

    folder, _ = log_files
    for stream in (True, False):
        config = write_config(tmp_path, str(folder / "log.csv"), stream=stream)
        code, out, doc = audit(config, tmp_path / f"out-{stream}")
        assert code == 0, out
        configs = [f for f in doc["provenance"]["files"] if f["role"] == "config"]
        assert [(Path(f["path"]).resolve(), f["sha256"]) for f in configs] == [
            (config.resolve(), hashlib.sha256(config.read_bytes()).hexdigest())]


def test_streamed_progress_finishes_reading_before_the_plan_and_plans_no_model_rows(log_files, tmp_path):
    folder, _ = log_files
    config = write_config(tmp_path, str(folder / "log.parquet"), stream=True)
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(tmp_path / "out"), "--format", "json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    at = {key: next(i for i, ln in enumerate(lines) if key in ln)
          for key in ("data: started", "data: finished", "plan (", "fairness: started")}
    assert at["data: started"] < at["data: finished"] < at["plan ("] < at["fairness: started"]
    fairness = next(m for m in json.loads((tmp_path / "out" / "results.json").read_text())["provenance"]["plan"]
                    ["methods"] if m["method"] == "fairness")
    # the decisions were counted, not predicted: no model rows planned, none performed
    assert fairness["model_rows"] == fairness["performed"]["model_rows"] == 0
    assert fairness["description"].startswith("count tables of 12,000 rows")


def _null_partitions(folder: Path) -> tuple[Path, pd.DataFrame]:
    """A hive folder whose race partitions include Hive's null folder, an empty value and a
    blank one, and the same rows as one frame with those races missing."""
    df = decision_log(1600, seed=7)
    parts = folder / "parts"
    values = ["A", "B", "__HIVE_DEFAULT_PARTITION__", "", "%20", "C"]
    frames = []
    for k, value in enumerate(values):
        piece = df.iloc[k * 250:(k + 1) * 250 if k < len(values) - 1 else None].drop(columns="race")
        (parts / f"race={value}").mkdir(parents=True)
        piece.to_parquet(parts / f"race={value}" / "part-0.parquet")
        frames.append(piece.assign(race=value if value in ("A", "B", "C") else None))
    return parts, pd.concat(frames)[["sex", "race", "outcome", "score"]]


def test_null_partition_folders_are_missing_sensitive_values_as_in_memory(tmp_path):
    """race=__HIVE_DEFAULT_PARTITION__, race= and race=%20 hold rows whose race is missing:
    missing_sensitive = "error" names the folder; "group" audits them as the "missing" group,
    with the numbers of the in-memory audit of the same rows."""
    parts, frame = _null_partitions(tmp_path)
    msg = _error(write_config(tmp_path, str(parts)), tmp_path)
    assert "The sensitive column 'race' has missing values in row 1 of 'race=/part-0.parquet'" in msg, msg
    frame.to_parquet(tmp_path / "one.parquet")
    extra = 'missing_sensitive = "group"\n' + FAST
    code, out, streamed = audit(write_config(tmp_path, str(parts), extra=extra), tmp_path / "streamed")
    assert code == 0, out
    code, out, memory = audit(write_config(tmp_path, str(tmp_path / "one.parquet"), stream=False, extra=extra),
                              tmp_path / "memory")
    assert code == 0, out
    assert_same_fairness(streamed, memory)
    groups = [g["group"] for g in fairness_of(streamed)["attributes"]["race"]["groups"]]
    assert groups == ["A", "B", "C", "missing"]
    assert [g["count"] for g in fairness_of(streamed)["attributes"]["race"]["groups"]][-1] == 750


@pytest.mark.parametrize("stream", [True, False])
def test_nan_in_a_float_sensitive_column_is_a_missing_value_streamed_as_in_memory(tmp_path, stream):
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = decision_log(600, seed=4)
    race = df.race.map({"A": 1.0, "B": 2.0, "C": 3.0, "D": 4.0, "E": 5.0}).to_numpy().copy()
    race[[10, 20, 30]] = np.nan
    table = pa.table({"sex": df.sex, "race": pa.array(race, from_pandas=False), "outcome": df.outcome,
                      "score": df.score})
    assert table.column("race").null_count == 0  # NaN, not null
    pq.write_table(table, tmp_path / "one.parquet")
    msg = _error(write_config(tmp_path, str(tmp_path / "one.parquet"), stream=stream), tmp_path)
    assert "The sensitive column 'race'" in msg and "missing values" in msg and "row 11" in msg, msg
    code, out, doc = audit(write_config(tmp_path, str(tmp_path / "one.parquet"), stream=stream,
                                        extra='missing_sensitive = "group"\n' + FAST), tmp_path / "out")
    assert code == 0, out
    race_groups = {g["group"]: g["count"] for g in fairness_of(doc)["attributes"]["race"]["groups"]}
    assert race_groups["missing"] == 3 and "nan" not in race_groups


def test_a_partition_column_named_twice_on_a_path_is_refused_naming_it(tmp_path):
    (tmp_path / "parts" / "race=A" / "race=B").mkdir(parents=True)
    decision_log(300, seed=5).drop(columns="race").to_parquet(tmp_path / "parts" / "race=A" / "race=B" / "f.parquet")
    decision_log(300, seed=6).drop(columns="race").to_parquet(tmp_path / "parts" / "race=A" / "g.parquet")
    msg = _error(write_config(tmp_path, str(tmp_path / "parts")), tmp_path)
    assert ("The partition column 'race' is named twice on the path of 'race=A/race=B/f.parquet' "
            "('race=A' and 'race=B')") in msg, msg


def test_a_symlinked_partition_folder_is_read_with_its_partition_value(tmp_path):
    """region=b is a link to a folder elsewhere: its rows are read (not silently dropped, as
    pathlib's rglob drops them) under the link's partition value, streamed as in memory."""
    (tmp_path / "parts" / "region=a").mkdir(parents=True)
    (tmp_path / "store" / "b").mkdir(parents=True)
    a, b = decision_log(300, seed=70), decision_log(500, seed=71)
    a.to_parquet(tmp_path / "parts" / "region=a" / "part-0.parquet")
    b.to_parquet(tmp_path / "store" / "b" / "part-0.parquet")
    (tmp_path / "parts" / "region=b").symlink_to(tmp_path / "store" / "b")
    pd.concat([a.assign(region="a"), b.assign(region="b")]).to_parquet(tmp_path / "one.parquet")
    extra = FAST
    configs = [write_config(tmp_path, p, stream=s, extra=extra) for p, s in (("parts", None), ("one.parquet", False))]
    for c in configs:
        c.write_text(c.read_text().replace('sensitive = ["sex", "race"]', 'sensitive = ["sex", "region"]'))
    code, out, streamed = audit(configs[0], tmp_path / "streamed", "--untrusted-config")  # inside its folder
    assert code == 0, out
    code, out, memory = audit(configs[1], tmp_path / "memory")
    assert code == 0, out
    assert streamed["data"]["rows"] == 800
    assert_same_fairness(streamed, memory)
    assert [g["count"] for g in fairness_of(streamed)["attributes"]["region"]["groups"]] == [300, 500]


def test_a_link_loop_in_a_data_folder_is_refused_naming_it(tmp_path):
    (tmp_path / "parts" / "region=a").mkdir(parents=True)
    decision_log(300, seed=70).to_parquet(tmp_path / "parts" / "region=a" / "part-0.parquet")
    (tmp_path / "parts" / "region=a" / "again").symlink_to(tmp_path / "parts")
    msg = _error(write_config(tmp_path, "parts"), tmp_path)
    assert "The folder 'region=a/again' under" in msg and "is the folder '.' again" in msg, msg


def test_a_folder_linked_from_outside_under_untrusted_config_is_refused_at_the_link_before_walking_it(tmp_path):
    """Following linked folders must not let an untrusted config read outside its folder, nor list
    the tree behind the link: the one outside holds a link loop, which would be the error were it walked."""
    (tmp_path / "elsewhere").mkdir()
    decision_log(300, seed=70).to_parquet(tmp_path / "elsewhere" / "part-0.parquet")
    (tmp_path / "elsewhere" / "loop").symlink_to(tmp_path / "elsewhere")
    audit_dir = tmp_path / "audit"
    (audit_dir / "parts").mkdir(parents=True)
    decision_log(300, seed=71).to_parquet(audit_dir / "parts" / "part-0.parquet")
    (audit_dir / "parts" / "region=b").symlink_to(tmp_path / "elsewhere")
    msg = _error(write_config(audit_dir, "parts"), tmp_path, "--untrusted-config")
    assert "The symbolic link 'region=b' in the config's [data] path folder" in msg, msg
    assert "outside the config's folder" in msg and "not followed" in msg and "again" not in msg, msg


@pytest.mark.parametrize("layout", ["same-folder", "other-partition", "hard-link"])
def test_a_file_reached_twice_through_links_is_refused_naming_both_paths(tmp_path, layout):
    """Read twice, its rows would be counted twice (or under two partitions' values)."""
    (tmp_path / "parts" / "race=A").mkdir(parents=True)
    decision_log(100, seed=72).drop(columns="race").to_parquet(tmp_path / "parts" / "race=A" / "a.parquet")
    if layout == "same-folder":
        (tmp_path / "parts" / "race=A" / "b.parquet").symlink_to("a.parquet")
        twice = "The file 'race=A/b.parquet' under"
    elif layout == "hard-link":
        (tmp_path / "parts" / "race=A" / "b.parquet").hardlink_to(tmp_path / "parts" / "race=A" / "a.parquet")
        twice = "The file 'race=A/b.parquet' under"
    else:
        (tmp_path / "parts" / "race=B").mkdir()
        (tmp_path / "parts" / "race=B" / "a.parquet").symlink_to("../race=A/a.parquet")
        twice = "The file 'race=B/a.parquet' under"
    msg = _error(write_config(tmp_path, "parts"), tmp_path)
    assert twice in msg and "is the file 'race=A/a.parquet' again" in msg and "counted twice" in msg, msg


@pytest.mark.parametrize("kind", ["broken link", "fifo"])
def test_a_broken_link_or_a_pipe_in_a_data_folder_is_refused_naming_it_never_dropped_or_opened(tmp_path, kind):
    import os

    (tmp_path / "parts" / "race=A").mkdir(parents=True)
    decision_log(100, seed=73).drop(columns="race").to_parquet(tmp_path / "parts" / "race=A" / "p.parquet")
    entry = tmp_path / "parts" / "race=A" / "q.parquet"
    if kind == "fifo":
        os.mkfifo(entry)  # opened, it would block this test forever
    else:
        entry.symlink_to(tmp_path / "gone.parquet")
    msg = _error(write_config(tmp_path, "parts"), tmp_path)
    assert "The entry 'race=A/q.parquet' in the folder" in msg and "leaving it out silently" in msg, msg
    assert ("a FIFO (named pipe)" if kind == "fifo" else "a broken symbolic link") in msg, msg


def test_max_rows_with_a_parquet_folder_is_refused_not_ignored(log_files, tmp_path):
    _, df = log_files
    (tmp_path / "parts").mkdir()
    df.to_parquet(tmp_path / "parts" / "a.parquet")
    msg = _error(write_config(tmp_path, "parts", extra="max_rows = 100\n" + FAST), tmp_path)
    assert "[data] path 'parts' is a folder of Parquet files" in msg and "max_rows" in msg, msg
    assert "Remove max_rows" in msg and "one CSV or Parquet file" in msg, msg


def _folder_and_file_configs(log_files, tmp_path) -> tuple[Path, Path]:
    """Two decisions-only configs of one folder of Parquet files, the second with other scores."""
    _, df = log_files
    (tmp_path / "parts").mkdir()
    df.iloc[:2000].assign(score2=df.score[:2000] ** 2).to_parquet(tmp_path / "parts" / "a.parquet")
    a = write_config(tmp_path, "parts")
    b = tmp_path / "b.toml"
    b.write_text(a.read_text().replace('predictions = "score"', 'predictions = "score2"').replace('"log"', '"log2"'))
    return a, b


@pytest.mark.parametrize("case", ["stream = false", "a model file"])
def test_a_folder_where_rows_are_needed_says_folders_are_always_streamed(log_files, tmp_path, case):
    a, _ = _folder_and_file_configs(log_files, tmp_path)
    if case == "stream = false":
        a.write_text(a.read_text().replace("[methods.fairness]", "stream = false\n[methods.fairness]"))
        fix = "Remove [data] stream = false"
    else:  # read before the model: the model file need not exist for the data to be refused
        a.write_text(a.read_text().replace('predictions = "score"', 'path = "m.skops"'))
        fix = "Auditing a model needs its rows in memory"
    msg = _error(a, tmp_path)
    assert "is a folder. A folder of Parquet files is always read in batches" in msg, msg
    assert fix in msg and "one CSV or Parquet file" in msg and "not a regular file" not in msg, msg


def test_audit_compare_of_a_folder_says_it_needs_the_rows_in_a_file(log_files, tmp_path):
    a, b = _folder_and_file_configs(log_files, tmp_path)
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "out"), "-q"],
                                catch_exceptions=False)
    msg = " ".join(result.output.split())
    assert result.exit_code == 2 and msg.startswith("error:"), msg
    assert "audit compare compares the two models row by row" in msg and "is a folder" in msg, msg
    assert "always read in batches" in msg and "one CSV or Parquet file" in msg, msg
    assert not (tmp_path / "out").exists()


def test_audit_compare_refuses_stream_true_rather_than_reading_the_file_into_memory(log_files, tmp_path):
    folder, _ = log_files
    a = write_config(tmp_path, str(folder / "log.parquet"), stream=True)
    b = tmp_path / "b.toml"
    b.write_text(a.read_text().replace('"log"', '"log2"'))
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "out"), "-q"],
                                catch_exceptions=False)
    msg = " ".join(result.output.split())
    assert result.exit_code == 2 and msg.startswith("error:"), msg
    assert "sets [data] stream = true" in msg and "Remove stream = true" in msg, msg
    assert not (tmp_path / "out").exists()


def _write_with_header(df: pd.DataFrame, path: Path, names: list[str]) -> None:
    """``df`` as CSV or Parquet under column ``names`` as written (spaces, a name twice)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".csv":
        path.write_text(",".join(names) + "\n" + df.to_csv(index=False, header=False))
    else:
        pq.write_table(pa.Table.from_arrays([pa.array(df[c]) for c in df.columns], names=names), path)


@pytest.mark.parametrize("name", ["log.csv", "log.parquet"])
@pytest.mark.parametrize("stream", [True, False])
def test_a_duplicated_column_name_is_refused_streamed_as_in_memory(tmp_path, name, stream):
    """pyarrow would read the first of the two columns named sex: which one is audited is a guess."""
    df = decision_log(300, seed=74).assign(sex2=lambda d: np.where(d.sex == "Male", "X", "Y"))
    _write_with_header(df, tmp_path / name, ["sex", "race", "outcome", "score", "sex "])
    msg = _error(write_config(tmp_path, name, stream=stream), tmp_path)
    assert f"The data file {str(tmp_path / name)!r} has duplicated column name(s) 'sex'" in msg, msg
    assert "as written: 'sex ', 'sex'" in msg and "Rename them" in msg, msg


@pytest.mark.parametrize("name", ["log.csv", "log.parquet"])
def test_spaces_around_column_names_are_stripped_streamed_as_in_memory(tmp_path, small_batches, name):
    df = decision_log(3000, seed=75)
    _write_with_header(df, tmp_path / name, ["sex", " race", "outcome ", " score"])
    code, out, streamed = audit(write_config(tmp_path, name, stream=True), tmp_path / "streamed")
    assert code == 0, out
    code, out, memory = audit(write_config(tmp_path, name, stream=False), tmp_path / "memory", "-m", "fairness")
    assert code == 0, out
    assert streamed["data"]["rows"] == 3000
    assert_same_fairness(streamed, memory)


def test_an_extension_type_column_is_read_as_its_plain_storage_or_refused_naming_it(tmp_path):
    """arrow.json over strings is read as its text, streamed as in memory; a column of Ray's
    pickled Python objects is refused (exit 2, naming it) and never unpickled."""
    import pickle

    import pyarrow as pa
    import pyarrow.parquet as pq

    df = decision_log(400, seed=160)
    table = pa.Table.from_pandas(df, preserve_index=False)
    json_race = pa.ExtensionArray.from_storage(pa.json_(), pa.array([f'"{v}"' for v in df.race]))
    (tmp_path / "parts").mkdir()
    pq.write_table(table.set_column(1, "race", json_race), tmp_path / "parts" / "p0.parquet")
    pq.write_table(table.set_column(1, "race", json_race), tmp_path / "one.parquet")
    code, out, streamed = audit(write_config(tmp_path, "parts"), tmp_path / "streamed")
    assert code == 0, out
    code, out, memory = audit(write_config(tmp_path, "one.parquet", stream=False), tmp_path / "memory", "-m", "fairness")
    assert code == 0, out
    assert [g["group"] for g in fairness_of(streamed)["attributes"]["race"]["groups"]][:2] == ['"A"', '"B"']
    assert_same_fairness(streamed, memory)

    class Planted:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "CODE_RAN",))

    pickled = pa.ExtensionArray.from_storage(
        _pickled_type(), pa.array([pickle.dumps(Planted())] + [pickle.dumps(v) for v in df.sex[1:]], pa.large_binary()))
    (tmp_path / "pickled").mkdir()
    pq.write_table(table.set_column(0, "sex", pickled), tmp_path / "pickled" / "p0.parquet")
    msg = _error(write_config(tmp_path, "pickled"), tmp_path)
    assert ("The column 'sex' in 'p0.parquet' is of the Arrow extension type 'ray.data.arrow_pickled_object', "
            "stored as large_binary") in msg and "never unpickled" in msg, msg
    assert not (tmp_path / "CODE_RAN").exists()


def _pickled_type():
    """Ray Data's pickled-object extension type, or one of the same name where Ray is absent."""
    import pyarrow as pa

    try:
        from ray.data._internal.object_extensions.arrow import ArrowPythonObjectType

        return ArrowPythonObjectType()
    except ImportError:
        class Pickled(pa.ExtensionType):
            def __init__(self):
                super().__init__(pa.large_binary(), "ray.data.arrow_pickled_object")

            def __arrow_ext_serialize__(self):
                return b""

            @classmethod
            def __arrow_ext_deserialize__(cls, storage_type, serialized):
                return cls()

        return Pickled()


def test_decimal_scores_stream_as_they_read_in_memory(tmp_path):
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    df = decision_log(1200, seed=140)
    scores = pa.array([decimal.Decimal(f"{v:.6f}") for v in df.score], pa.decimal128(10, 6))
    table = pa.Table.from_pandas(df, preserve_index=False).set_column(3, "score", scores)
    pq.write_table(table, tmp_path / "one.parquet")
    code, out, streamed = audit(write_config(tmp_path, "one.parquet", stream=True), tmp_path / "streamed")
    assert code == 0, out
    code, out, memory = audit(write_config(tmp_path, "one.parquet", stream=False), tmp_path / "memory")
    assert code == 0, out
    assert_same_fairness(streamed, memory)
    assert fairness_of(streamed)["attributes"]["sex"]["groups"][0]["metrics"]["auc"]["value"] is not None


def test_blank_and_space_led_missing_markers_in_a_streamed_csv_are_missing_as_in_memory(tmp_path):
    """The in-memory reader skips a cell's leading spaces (" " is empty, " NA" is na_values'
    "NA"); the streamed reader reads the same cells as missing, so the groups agree."""
    df = decision_log(1000, seed=11)
    df.loc[:30, "race"] = " "
    df.loc[40:50, "race"] = "  C"
    df.loc[60:62, "race"] = " NA"
    df.to_csv(tmp_path / "log.csv", index=False)
    extra = 'missing_sensitive = "group"\nna_values = ["NA"]\n' + FAST
    docs = {}
    for stream in (True, False):
        code, out, docs[stream] = audit(write_config(tmp_path, "log.csv", stream=stream, extra=extra),
                                        tmp_path / f"out-{stream}")
        assert code == 0, out
    assert_same_fairness(docs[True], docs[False])
    assert {g["group"]: g["count"] for g in fairness_of(docs[True])["attributes"]["race"]["groups"]}["missing"] == 34


@pytest.mark.parametrize("layout", ["csv-memory", "csv-streamed", "partition-folder"])
def test_cells_written_missing_beside_missing_cells_are_refused_not_merged_into_one_group(tmp_path, layout):
    """With missing_sensitive = "group" the missing cells form the group "missing": cells that
    read "missing" (in a file, or a race=missing/ folder) beside them would silently join it, so
    the audit is refused naming the column and the value, in memory and streamed alike."""
    df = decision_log(300, seed=2)
    df.loc[:39, "race"], df.loc[40:59, "race"] = "missing", None
    if layout == "partition-folder":
        for value, piece in (("missing", df.iloc[:40]), ("__HIVE_DEFAULT_PARTITION__", df.iloc[40:60]),
                             ("A", df.iloc[60:])):
            (tmp_path / "parts" / f"race={value}").mkdir(parents=True)
            piece.drop(columns="race").to_parquet(tmp_path / "parts" / f"race={value}" / "p.parquet")
        data, stream = str(tmp_path / "parts"), None
    else:
        df.to_csv(tmp_path / "log.csv", index=False)
        data, stream = "log.csv", layout == "csv-streamed"
    msg = _error(write_config(tmp_path, data, stream=stream, extra='missing_sensitive = "group"\n' + FAST), tmp_path)
    assert "The sensitive column 'race'" in msg and "cells that read 'missing'" in msg, msg
    assert "counted as one group" in msg and "Rename the value 'missing'" in msg, msg


@pytest.mark.parametrize("stream", [False, True])
def test_blank_and_declared_na_text_cells_are_missing_in_parquet_as_in_csv(tmp_path, stream):
    """Text cells " ", "" and a declared na_value "NA" (with surrounding spaces too) are missing
    cells in a Parquet file as in a CSV, read into memory or streamed: one "missing" group, never
    a group named '' or 'NA'."""
    df = decision_log(400, seed=3)
    df.loc[:9, "race"], df.loc[10:19, "race"], df.loc[20:24, "race"] = " ", "NA", ""
    df.loc[25:29, "race"] = " NA\t"
    df.to_parquet(tmp_path / "log.parquet", index=False)
    df.to_csv(tmp_path / "log.csv", index=False)
    extra = 'missing_sensitive = "group"\nna_values = ["NA"]\n' + FAST
    docs = {}
    for name in ("log.parquet", "log.csv"):
        code, out, docs[name] = audit(write_config(tmp_path, name, stream=stream, extra=extra), tmp_path / f"out-{name}")
        assert code == 0, out
    groups = {g["group"]: g["count"] for g in fairness_of(docs["log.parquet"])["attributes"]["race"]["groups"]}
    assert groups["missing"] == 30 and "" not in groups and "NA" not in groups, groups
    assert fairness_of(docs["log.parquet"]) == fairness_of(docs["log.csv"])


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_columns_no_method_can_read_are_left_out_of_a_decisions_only_audit_and_named(tmp_path, kind):
    """Undeclared columns of a decisions log that could not be features (all empty, a number
    missing in one row, dates) do not stop the in-memory audit (streamed, they are never read):
    the surrogate describes the decisions by the other columns, the limitations name the ones
    left out and why, and the fairness numbers are the streamed audit's."""
    df = decision_log(400, seed=5)
    df["age"] = np.random.default_rng(5).integers(18, 80, len(df))
    df["comment"] = None
    df["loan_amount"] = np.where(np.arange(len(df)) == 7, np.nan, 1000.0 + np.arange(len(df)))
    df["decided_at"] = pd.Timestamp("2024-05-01") + pd.to_timedelta(np.arange(len(df)) % 90, "D")
    name = f"log.{kind}"
    df.to_parquet(tmp_path / name, index=False) if kind == "parquet" else df.to_csv(tmp_path / name, index=False)
    code, out, memory = audit(write_config(tmp_path, name, stream=False), tmp_path / "memory")
    assert code == 0, out
    surrogate = memory["methods"]["surrogate"]
    assert surrogate["status"] == "ok", surrogate
    assert list(surrogate["result"]["feature_importance"]) == ["age", *(["decided_at"] if kind == "csv" else [])]
    limitations = " ".join(memory["limitations"])
    assert "'comment' (no values), 'loan_amount' (missing in 1 row(s))" in limitations, limitations
    assert ("'decided_at' (dates or times)" in limitations) == (kind == "parquet")  # in a CSV: text, a level
    code, out, streamed = audit(write_config(tmp_path, name, stream=True), tmp_path / "streamed")
    assert code == 0, out
    assert_same_fairness(streamed, memory)


def test_a_declared_feature_with_missing_cells_in_a_decisions_only_audit_says_how_to_leave_it_out(tmp_path):
    """Declared features are checked as a model's are; the message must not speak of a model
    scoring the rows only, since a decisions-only audit has none."""
    df = decision_log(200, seed=6)
    df["loan_amount"] = np.where(np.arange(len(df)) == 7, np.nan, 1000.0 + np.arange(len(df)))
    df.to_csv(tmp_path / "log.csv", index=False)
    config = write_config(tmp_path, "log.csv", stream=False)
    config.write_text(config.read_text().replace('sensitive = ["sex", "race"]\n',
                                                 'sensitive = ["sex", "race"]\nfeatures = ["loan_amount"]\n'))
    msg = _error(config, tmp_path)
    assert "In 'log.csv': Column 'loan_amount' has missing (NaN) values in 1 row(s), first at row 8" in msg, msg
    assert "a decisions-only audit describes its decisions by the features it is given" in msg, msg
    assert "leave the column out of [data] features" in msg, msg
