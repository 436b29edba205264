"""The README is enough to write a config: its key reference lists exactly the keys the code
accepts, with the code's defaults, and every ```toml example in it parses and validates (the
quick-start one also runs through `audit run`)."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from audit import config as config_module
from audit.cli import app
from audit.config import AuditPlan
from audit.core import modalities
from audit.runner import resolve_plan

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

# README heading of each key table -> the keys the code accepts there (read from the code).
TABLES = {
    "Top-level keys": config_module._TOP_KEYS,
    "`[model]` keys": config_module._MODEL_KEYS,
    "`[data]` keys": config_module._DATA_KEYS | {"modality"},
    "`[data]` keys for images and sequences": modalities.DATA_KEYS - {"modality"},
    "`[report]` and `[limits]` keys": config_module._REPORT_KEYS | config_module._LIMITS_KEYS,
    "`[execution]` keys": config_module._EXECUTION_KEYS,
}
# What a snippet that shows one part of a config is completed with before validation.
BASE = {"model": {"predictions": "score"},
        "data": {"path": "data.csv", "target": "y", "sensitive": ["sex", "race"]}}


def _reference() -> dict[str, dict[str, list[str]]]:
    """heading -> key -> the row's cells (key, type, default, meaning), from the README tables."""
    tables: dict[str, dict[str, list[str]]] = {}
    heading = ""
    for line in README.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        match = re.match(r"^\| `(\w+)` \|", line)
        if match and heading in TABLES:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            tables.setdefault(heading, {})[match.group(1)] = cells
    return tables


def _toml_blocks() -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", README, flags=re.M | re.S)


def test_readme_key_reference_lists_exactly_the_keys_the_code_accepts():
    reference = _reference()
    for heading, accepted in TABLES.items():
        documented = set(reference.get(heading, {}))
        assert accepted - documented == set(), f"README '{heading}' lacks {sorted(accepted - documented)}"
        assert documented - accepted == set(), f"README '{heading}' documents keys the code rejects: " \
                                               f"{sorted(documented - accepted)}"
        for key, cells in reference[heading].items():
            assert len(cells) == 4 and all(cells), f"README row for {key!r} needs type, default and meaning"


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def test_readme_key_reference_defaults_are_the_code_defaults(tmp_path):
    minimal = {"model": {"predictions": "score"}, "data": {"path": "data.csv"}}
    plans = [AuditPlan.from_dict(minimal, base_dir=tmp_path)]
    for modality in ("image", "sequence"):
        plans.append(AuditPlan.from_dict({**minimal, "data": {"path": "x.npz", "modality": modality}},
                                         base_dir=tmp_path))
    tabular = [plans[0], plans[0].model, plans[0].data]
    modal = [plans[1].modal, plans[2].modal]
    compared = 0
    for heading, rows in _reference().items():
        for key, (_, _, default, _) in rows.items():
            literal = re.fullmatch(r"`([^`]+)`", default)
            holders = [o for o in (modal if "images" in heading else tabular) if hasattr(o, key)]
            if not literal or not holders:
                continue
            expected = tomllib.loads(f"v = {literal.group(1)}")["v"]
            for holder in holders:
                assert _plain(getattr(holder, key)) == expected, (heading, key, type(holder).__name__)
            compared += 1
    assert compared >= 12, compared


def test_readme_names_every_training_recipe_key_the_trainers_read():
    import dataclasses

    from audit.train.recipe import Recipe

    for f in dataclasses.fields(Recipe):
        if f.name not in ("defaulted", "described"):
            assert f"`{f.name}`" in README, f"README does not name the training recipe key {f.name!r}"


def test_readme_points_to_audit_methods_name_for_method_options():
    assert "`audit methods\nNAME`" in README or "`audit methods NAME`" in README
    assert "[methods.NAME]" in README


@pytest.mark.parametrize("block", _toml_blocks(), ids=lambda b: b.splitlines()[0][:40])
def test_readme_toml_example_parses_and_validates(block, tmp_path):
    doc = tomllib.loads(block)
    plan = AuditPlan.from_dict({**BASE, **doc}, base_dir=tmp_path)  # a snippet's tables win
    resolve_plan(plan)  # what a run resolves first: method tables, every option, the [gate] rules


def test_readme_quick_start_config_runs_with_audit_run(tmp_path):
    """The first example, as written, on the bundled Adult MLP and 400 rows of its test data."""
    example = ROOT / "examples" / "adult_mlp"
    block = _toml_blocks()[0]
    assert 'path = "model.safetensors"' in block and "[methods.surrogate]" in block
    for name in ("model.safetensors", "architecture.json", "encoding.json"):
        shutil.copy(example / name, tmp_path / name)
    (tmp_path / "data").mkdir()
    with gzip.open(example / "data" / "adult_test.csv.gz", "rt", encoding="utf-8") as src:
        lines = [next(src) for _ in range(401)]  # the header and 400 rows, as written
    with gzip.open(tmp_path / "data" / "adult_test.csv.gz", "wt", encoding="utf-8") as dst:
        dst.writelines(lines)
    (tmp_path / "audit.toml").write_text(block, encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(tmp_path / "audit.toml"), "--out", str(out), "-q",
                                      "-m", "surrogate,fairness", "--format", "html,json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["data"]["rows"] == 400
    assert {m: doc["methods"][m]["status"] for m in doc["methods"]} == {"surrogate": "ok", "fairness": "ok"}
    assert doc["methods"]["surrogate"]["config"]["max_depth"] == 4  # the example's [methods.surrogate]
    assert (out / "report.html").is_file()
