"""Image and sequence loaders (audit.core.modalities): shapes, scaling, windowing, layouts, and
clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.config import AuditPlan
from audit.core.dataset import DatasetSpec, Encoding, NumericFeature
from audit.core.modalities import (
    ImageLayout,
    ImageSpec,
    SequenceLayout,
    SequenceSpec,
    build_image_data,
    build_sequence_data,
)
from audit.errors import DataValidationError, InvalidConfigError

# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------


def _png(path: Path, array: np.ndarray, mode: str = "L") -> None:
    from PIL import Image

    Image.fromarray(array.astype(np.uint8), mode=mode).save(path)


@pytest.fixture
def png_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        name = f"img{i}.png"
        _png(tmp_path / name, rng.integers(0, 256, (5, 4)))
        rows.append({"file": name, "label": "cat" if i % 2 else "dog", "group": "a" if i < 3 else "b"})
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    return tmp_path


def test_npz_images_are_scaled_and_named(tmp_path):
    raw = np.arange(2 * 1 * 4 * 4, dtype=np.uint8).reshape(2, 1, 4, 4)
    np.savez(tmp_path / "d.npz", X=raw, y=np.array([0, 1]), sex=np.array(["F", "M"]))
    data = build_image_data(ImageSpec(str(tmp_path / "d.npz"), channels=1, center=(1.0,), scale=(16.0,)),
                            DatasetSpec(target="y", sensitive=("sex",)))
    assert data.modality == "image" and data.X.dtype == np.float32 and data.X.shape == (2, 1, 4, 4)
    np.testing.assert_allclose(data.X, (raw - 1.0) / 16.0)
    assert data.feature_names[:2] == ["px[0,0]", "px[0,1]"] and len(data.columns) == 16
    assert data.y.tolist() == [0, 1] and data.sensitive["sex"].tolist() == ["F", "M"]
    assert isinstance(data.layout, ImageLayout)
    # the element encoding maps scaled values back to raw pixel units
    assert data.encoding.features[5].to_raw(data.X[1, 0, 1, 1]) == pytest.approx(raw[1, 0, 1, 1])


def test_npz_without_channel_axis_gets_one(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((3, 8, 8)), y=np.array([0, 1, 0]))
    data = build_image_data(ImageSpec(str(tmp_path / "d.npz")), DatasetSpec(target="y"))
    assert data.X.shape == (3, 1, 8, 8)


def test_npz_wrong_channel_count_names_the_fix(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((3, 8, 8, 3)), y=np.array([0, 1, 0]))
    with pytest.raises(DataValidationError, match=r"channels-last.*transpose"):
        build_image_data(ImageSpec(str(tmp_path / "d.npz"), channels=3), DatasetSpec(target="y"))


def test_npz_missing_array_and_nan(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((3, 1, 2, 2)), y=np.array([0, 1, 0]))
    with pytest.raises(DataValidationError, match=r"no array 'X'.*images"):
        build_image_data(ImageSpec(str(tmp_path / "d.npz")), DatasetSpec(target="y"))
    X = np.zeros((3, 1, 2, 2))
    X[1, 0, 1, 0] = np.nan
    np.savez(tmp_path / "n.npz", X=X, y=np.array([0, 1, 0]))
    with pytest.raises(DataValidationError, match=r"missing or infinite.*\[1, 0, 1, 0\]"):
        build_image_data(ImageSpec(str(tmp_path / "n.npz")), DatasetSpec(target="y"))


def test_png_folder_with_labels_and_sensitive(png_folder):
    spec = ImageSpec(str(png_folder), labels=str(png_folder / "labels.csv"), channels=1, scale=(255.0,))
    data = build_image_data(spec, DatasetSpec(target="label", sensitive=("group",), task="binary",
                                              positive_label="cat"))
    assert data.X.shape == (6, 1, 5, 4) and 0.0 <= data.X.min() and data.X.max() <= 1.0
    assert data.y.tolist() == [0, 1, 0, 1, 0, 1] and data.classes == ("dog", "cat")
    assert data.sensitive["group"].tolist() == ["a"] * 3 + ["b"] * 3


def test_png_mixed_sizes_name_the_file(png_folder):
    _png(png_folder / "img4.png", np.zeros((6, 4)))
    spec = ImageSpec(str(png_folder), labels=str(png_folder / "labels.csv"))
    with pytest.raises(DataValidationError, match=r"img4\.png.*4x6.*img0\.png.*4x5.*same size"):
        build_image_data(spec, DatasetSpec(target="label", positive_label="cat"))


def test_png_wrong_channels_name_the_file(png_folder):
    _png(png_folder / "img2.png", np.zeros((5, 4, 3)), mode="RGB")
    spec = ImageSpec(str(png_folder), labels=str(png_folder / "labels.csv"), channels=1)
    with pytest.raises(DataValidationError, match=r"img2\.png.*3 channel.*grayscale"):
        build_image_data(spec, DatasetSpec(target="label", positive_label="cat"))


def test_png_unreadable_and_missing_files(png_folder):
    (png_folder / "img3.png").write_bytes(b"not an image at all")
    spec = ImageSpec(str(png_folder), labels=str(png_folder / "labels.csv"))
    with pytest.raises(DataValidationError, match=r"img3\.png.*could not be read"):
        build_image_data(spec, DatasetSpec(target="label", positive_label="cat"))
    (png_folder / "img3.png").unlink()
    with pytest.raises(DataValidationError, match=r"'img3\.png'.*does not exist"):
        build_image_data(spec, DatasetSpec(target="label", positive_label="cat"))


def test_png_paths_must_stay_inside_the_folder(png_folder):
    labels = pd.read_csv(png_folder / "labels.csv")
    labels.loc[1, "file"] = "../outside.png"
    labels.to_csv(png_folder / "labels.csv", index=False)
    spec = ImageSpec(str(png_folder), labels=str(png_folder / "labels.csv"))
    with pytest.raises(DataValidationError, match=r"outside the image folder"):
        build_image_data(spec, DatasetSpec(target="label", positive_label="cat"))


def test_npz_images_with_a_labels_csv(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((3, 1, 2, 2)))
    pd.DataFrame({"y": ["a", "b", "a"], "site": ["n", "s", "s"]}).to_csv(tmp_path / "l.csv", index=False)
    spec = ImageSpec(str(tmp_path / "d.npz"), labels=str(tmp_path / "l.csv"))
    data = build_image_data(spec, DatasetSpec(target="y", sensitive=("site",), positive_label="b"))
    assert data.y.tolist() == [0, 1, 0] and data.sensitive["site"].tolist() == ["n", "s", "s"]
    pd.DataFrame({"y": ["a", "b"]}).to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(DataValidationError, match=r"2 rows but .*3 images.*same order"):
        build_image_data(spec, DatasetSpec(target="y", positive_label="b"))


def test_image_layout_groups_and_patch_view():
    lay = ImageLayout(2, 4, 4, center=(0.0, 10.0), scale=(2.0, 1.0), patch=2)
    assert len(lay.groups("patch")) == 4 and len(lay.groups("patch")["patch[0-1,0-1]"]) == 8
    attr = np.zeros((3, 2, 4, 4))
    attr[:, 1, 3, 3] = 1.0
    np.testing.assert_allclose(lay.aggregate(attr, by="patch"), [[0, 0, 0, 1]] * 3)
    np.testing.assert_allclose(lay.aggregate(attr.reshape(3, -1), by="channel"), [[0, 1]] * 3)
    X = np.ones((1, 2, 4, 4), dtype=np.float32)
    view, enc = lay.tabular_view(X)
    assert view.shape == (1, 8) and enc.columns[:2] == ["ch0 patch[0-1,0-1] mean", "ch1 patch[0-1,0-1] mean"]
    np.testing.assert_allclose(view[0, :2], [2.0, 11.0])  # raw units: 1*2+0 and 1*1+10
    grid, rows, cols = lay.view_grid(np.arange(8.0))  # (patch, channel) pairs: 0+1, 2+3, 4+5, 6+7
    np.testing.assert_allclose(grid[:, 0], [1, 1, 9, 9]) and len(rows) == len(cols) == 4
    np.testing.assert_allclose(grid[0], [1, 1, 5, 5])


def test_tabular_view_and_subset_keep_the_layout(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.arange(4 * 16).reshape(4, 1, 4, 4), y=np.array([0, 1, 0, 1]))
    data = build_image_data(ImageSpec(str(tmp_path / "d.npz"), patch=2), DatasetSpec(target="y"))
    sub = data.subset(np.array([1, 3]))
    assert sub.layout is data.layout and sub.X.shape == (2, 1, 4, 4)
    view = sub.tabular_view()
    assert view.X.shape == (2, 4) and view.modality == "image" and view.tabular_view() is view
    assert view.feature_names[0] == "patch[0-1,0-1] mean"
    assert view.X[0, 0] == pytest.approx(np.mean([16, 17, 20, 21]))


# ---------------------------------------------------------------------------------------------
# sequences
# ---------------------------------------------------------------------------------------------


def _long_csv(tmp_path: Path, n: int = 10, ids=("A", "B")) -> Path:
    rows = []
    for k, i in enumerate(ids):
        for t in range(n):
            rows.append({"id": i, "t": t, "x": 100 * k + t, "z": -t, "g": f"grp{k}"})
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order must not matter
    path = tmp_path / "long.csv"
    frame.to_csv(path, index=False)
    return path


def _seq(path: Path, **kw) -> SequenceSpec:
    return SequenceSpec(path=str(path), window=kw.pop("window", 3), id_column="id", time_column="t", **kw)


def test_long_csv_is_windowed_per_id(tmp_path):
    path = _long_csv(tmp_path)
    spec = DatasetSpec(target="x", features=("x", "z"), sensitive=("g",), task="regression")
    data = build_sequence_data(_seq(path, horizon=1), spec)
    # per id: windows end at t = 2..8 (target at t+1 <= 9) -> 7 windows, 14 in all
    assert data.modality == "sequence" and data.X.shape == (14, 3, 2)
    first = data.frame.iloc[0]
    assert (first["id"], first["window_start"], first["window_end"], first["target_time"]) == ("A", 0, 2, 3)
    np.testing.assert_allclose(data.X[0, :, 0], [0, 1, 2])  # oldest step first
    assert data.y[0] == 3 and data.y[7] == 103
    assert data.sensitive["g"].tolist() == ["grp0"] * 7 + ["grp1"] * 7
    assert data.feature_names[:3] == ["x[t-3]", "z[t-3]", "x[t-2]"]


def test_sequence_scaling_from_config_or_encoding(tmp_path):
    path = _long_csv(tmp_path)
    spec = DatasetSpec(target="x", features=("x", "z"), task="regression")
    data = build_sequence_data(_seq(path, scaling={"x": (5.0, 2.0)}), spec)
    np.testing.assert_allclose(data.X[0, :, 0], (np.array([0, 1, 2]) - 5) / 2)
    np.testing.assert_allclose(data.X[0, :, 1], [0, -1, -2])  # unscaled: named nowhere
    enc = Encoding((NumericFeature("x", 1.0, 1.0), NumericFeature("z", 0.0, 4.0)))
    data = build_sequence_data(_seq(path), spec, encoding=enc)
    np.testing.assert_allclose(data.X[0, :, 1], [0, -0.25, -0.5])
    assert data.y[0] == 3  # the target stays in raw units


def test_sequence_time_range_stride_and_horizon(tmp_path):
    path = _long_csv(tmp_path, ids=("A",))
    spec = DatasetSpec(target="x", features=("x",), task="regression")
    data = build_sequence_data(_seq(path, horizon=0, stride=2, time_range=("4", "8")), spec)
    assert data.frame["target_time"].tolist() == [4, 6, 8] and data.y.tolist() == [4, 6, 8]


def test_sequence_layout_aggregates_per_feature_and_lag():
    lay = SequenceLayout(("a", "b"), 3)
    attr = np.arange(6, dtype=float).reshape(1, 3, 2)  # a: 0,2,4  b: 1,3,5
    np.testing.assert_allclose(lay.aggregate(attr, by="feature"), [[6, 9]])
    np.testing.assert_allclose(lay.aggregate(attr, by="lag"), [[1, 5, 9]])
    assert list(lay.groups("lag")) == ["t-3", "t-2", "t-1"]
    assert lay.aggregate(attr.reshape(1, -1), by="cell").shape == (1, 6)
    grid, rows, cols = lay.view_grid(attr.reshape(-1))
    assert rows == ["a", "b"] and cols == ["t-3", "t-2", "t-1"] and grid.tolist() == [[0, 2, 4], [1, 3, 5]]


def test_sequence_shorter_than_window_names_the_id(tmp_path):
    path = _long_csv(tmp_path, n=4)
    with pytest.raises(DataValidationError, match=r"id 'A' \(column 'id'\) has 4 step.*window of 4.*smaller"):
        build_sequence_data(_seq(path, window=4), DatasetSpec(target="x", features=("x",), task="regression"))


def test_sequence_nan_names_id_column_and_time(tmp_path):
    path = _long_csv(tmp_path)
    frame = pd.read_csv(path)
    frame.loc[(frame.id == "B") & (frame.t == 5), "z"] = np.nan
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"id 'B'.*column 'z'.*t = 5.*Impute"):
        build_sequence_data(_seq(path), DatasetSpec(target="x", features=("x", "z"), task="regression"))


def test_sequence_duplicate_time_is_an_error(tmp_path):
    path = _long_csv(tmp_path)
    frame = pd.read_csv(path)
    pd.concat([frame, frame.iloc[:1]]).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"more than once"):
        build_sequence_data(_seq(path), DatasetSpec(target="x", features=("x",), task="regression"))


def test_sequence_npz(tmp_path):
    X = np.random.default_rng(0).normal(size=(5, 4, 2))
    np.savez(tmp_path / "s.npz", X=X, y=np.arange(5.0))
    data = build_sequence_data(SequenceSpec(str(tmp_path / "s.npz"), window=4),
                               DatasetSpec(target="y", features=("a", "b"), task="regression"))
    assert data.X.shape == (5, 4, 2) and data.layout.features == ("a", "b")
    with pytest.raises(DataValidationError, match=r"3 features.*have 2"):
        build_sequence_data(SequenceSpec(str(tmp_path / "s.npz")),
                            DatasetSpec(target="y", features=("a", "b", "c"), task="regression"))


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------


def _plan(data: dict) -> AuditPlan:
    return AuditPlan.from_dict({"model": {"path": "m.safetensors", "task": "regression"},
                                "data": {"path": "d.csv", "target": "y", **data}}, base_dir=Path("/tmp/x"))


def test_config_reads_image_and_sequence_keys():
    plan = _plan({"modality": "image", "labels": "labels.csv", "scaling": {"scale": 255},
                  "channels": 3, "patch_size": 4})
    assert isinstance(plan.modal, ImageSpec) and plan.modal.labels == "/tmp/x/labels.csv"
    assert plan.modal.scale == (255.0,) and plan.modal.channels == 3 and plan.modal.patch == 4
    plan = _plan({"modality": "sequence", "window": 8, "time_column": "date",
                  "scaling": {"u": {"center": 1, "scale": 2}}, "time_range": ["2000", ""]})
    assert isinstance(plan.modal, SequenceSpec) and plan.modal.scaling == {"u": (1.0, 2.0)}
    assert _plan({}).modal is None


def test_config_rejects_keys_of_another_modality():
    with pytest.raises(InvalidConfigError, match=r"'window' does not apply to tabular"):
        _plan({"window": 8})
    with pytest.raises(InvalidConfigError, match=r"'channels' does not apply to sequence"):
        _plan({"modality": "sequence", "channels": 1})
    with pytest.raises(InvalidConfigError, match=r"modality"):
        _plan({"modality": "images"})
    with pytest.raises(InvalidConfigError, match=r"positive"):
        _plan({"modality": "image", "scaling": {"scale": 0}})
    with pytest.raises(InvalidConfigError, match=r"'features' key does not apply to images"):
        _plan({"modality": "image", "features": ["a"]})


def test_train_time_range_selects_the_training_windows_of_a_series():
    from pathlib import Path

    from audit.config import AuditPlan
    from audit.runner import load_inputs

    root = Path(__file__).resolve().parents[1]
    inputs = load_inputs(AuditPlan.load(root / "examples" / "macro_lstm" / "audit.toml"))
    assert inputs.train is not None and inputs.train.n_rows < inputs.data.n_rows
    assert inputs.train.n_rows == 135  # target quarters 1961Q2-1994Q4, as train.py fitted
