"""The Ray backend of audit.execution, on a local Ray cluster these tests start themselves.

One cluster (2 CPUs, no dashboard) serves the whole module: Ray takes seconds to start. The CLI
runs in this process and finds that cluster already running, so it uses it and leaves it up;
the test that the CLI shuts down a Ray instance it started itself runs in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from audit import execution
from audit.cli import app
from audit.errors import InvalidConfigError, MissingDependencyError
from tests.conftest import ROW_SHARDED

ray = pytest.importorskip("ray")  # CI installs the [ray] extra (make install-dev)


@pytest.fixture(scope="module", autouse=True)
def cluster():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 runtime_env=execution.RAY_RUNTIME_ENV)
    with execution.session(execution.ExecutionConfig("ray")) as c:
        yield c
    if started:
        ray.shutdown()


def _env() -> dict[str, str]:
    return {**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(Path(__file__).parents[1])}


def _cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


# --------------------------------------------------------------------------------------------
# execution.map on Ray
# --------------------------------------------------------------------------------------------


def _draw(index: int) -> bytes:
    return execution.chunk_rng(np.random.SeedSequence(11), index).standard_normal(4).tobytes()


def test_ray_map_returns_the_local_results_in_chunk_order_with_progress(cluster):
    seen = []
    on_ray = execution.map(_draw, range(12), progress=lambda d, t: seen.append((d, t)))
    with execution.session(execution.ExecutionConfig("local")):
        local = execution.map(_draw, range(12), n_jobs=1)
    assert on_ray == local
    assert seen == [(d, 12) for d in range(1, 13)]
    assert cluster.backend == "ray" and cluster.cpus == 2.0 and cluster.nodes == 1


def test_a_large_array_goes_to_the_object_store_once_not_once_per_task():
    big = np.arange(2_000_000, dtype=np.float64)  # 16 MB closed over by the chunk function
    before = ray.available_resources().get("object_store_memory", 0.0)

    def total(i: int) -> float:
        return float(big[i::8].sum())

    assert execution.map(total, range(8)) == [float(big[i::8].sum()) for i in range(8)]
    # a copy per task would have needed 8 x 16 MB while the tasks ran; the function (and big)
    # was put once, so at most one copy is held
    assert before - ray.available_resources().get("object_store_memory", 0.0) < 2 * big.nbytes


def _die_once(marker: str):
    def work(i: int) -> int:
        if i == 2 and not os.path.exists(marker):
            Path(marker).write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-task
        return i * i
    return work


def test_a_worker_killed_mid_task_is_retried_and_the_result_is_unchanged(tmp_path):
    marker = tmp_path / "killed-once"
    assert execution.map(_die_once(str(marker)), range(5)) == [0, 1, 4, 9, 16]
    assert marker.read_text() == "killed"  # the first attempt did die


def test_a_chunk_that_fails_for_good_says_which_chunk_and_why():
    def work(i: int) -> int:
        if i == 3:
            raise ValueError("planted failure in chunk 3")
        return i

    with pytest.raises(execution.ChunkFailed, match=r"chunk 4 of 5 failed on the Ray cluster: "
                                                    r"ValueError: planted failure in chunk 3"):
        execution.map(work, range(5))


def test_a_function_ray_cannot_ship_runs_locally_and_the_provenance_says_so(cluster):
    lock = threading.Lock()  # not picklable

    def work(i: int) -> int:
        with lock:
            return i + 1

    assert execution.map(work, range(3)) == [1, 2, 3]
    assert any("cannot be sent to Ray workers" in why for why in cluster.ran_locally)
    cluster.ran_locally.clear()


def test_the_python_api_runs_on_ray_when_asked(frame):
    from audit.runner import audit_model

    def model(X):
        return 1 / (1 + np.exp(-(X[:, 0] - 40) / 5))

    report = audit_model(model, frame, target="income", positive_label=">50K", sensitive=["sex"],
                         features=["age", "hours"], methods=["agreement"],
                         execution=execution.ExecutionConfig("ray"))
    assert report.provenance["execution"]["backend"] == "ray"
    assert report.outcome("agreement").ok


def test_tallies_from_ray_workers_add_up_as_they_do_locally():
    tally = execution.Tally()

    def work(i: int) -> int:
        tally.add(rows=i, calls=1)
        return i

    execution.map(work, range(6))
    assert tally.counts == {"rows": 15, "calls": 6}
    tally.close()


# --------------------------------------------------------------------------------------------
# Selecting the backend
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("table, message", [
    ('[execution]\nbackend = "spark"\n', "'backend' must be one of ['local', 'ray']"),
    ('[execution]\nbackend = "ray"\naddress = "10.0.0.1"\n', "must be \"auto\", \"host:port\" or \"ray://host:port\""),
    ('[execution]\nbackend = "ray"\naddress = "http://10.0.0.1:6379"\n', "must be \"auto\", \"host:port\""),
    ('[execution]\naddress = "auto"\n', "needs backend = \"ray\""),
    ('[execution]\nbackend = "ray"\nadress = "auto"\n', "Unknown key 'adress' in [execution]. Did you mean 'address'?"),
    ('[execution]\nbackend = "ray"\naddress = "ray://localhost:99999999"\n', "Port out of range"),
    ('[execution]\nbackend = "ray"\naddress = "ray://localhost:0"\n', "a port is 1-65535"),
    ('[execution]\nbackend = "ray"\naddress = "ray://[::1:1"\n', "Invalid IPv6 URL"),
    ('[execution]\nbackend = "ray"\naddress = "ray://:10001"\n', "must be \"auto\", \"host:port\" or \"ray://host:port\""),
])
def test_bad_execution_tables_are_config_errors(model_dir, table, message):
    cfg = model_dir / "audit.toml"
    cfg.write_text(cfg.read_text() + "\n" + table)
    res = _cli("run", cfg, "--out", model_dir / "out", "-q", "-m", "fairness")
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
    assert not (model_dir / "out").exists()


def test_auto_with_several_ray_instances_on_this_machine_is_refused_listing_them(model_dir, monkeypatch):
    """Ray's own "auto" connects to the newest instance, whoever started it; audit-suite asks."""
    from ray._private import services

    found = frozenset({"10.0.0.5:6379", "10.0.0.5:41234"})
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: found)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh `audit` process
    monkeypatch.setattr(execution, "_init_ray", lambda *a: pytest.fail("connected anyway"))
    cfg = model_dir / "audit.toml"
    cfg.write_text(cfg.read_text() + '\n[gate]\n"fairness.sex.demographic_parity_difference" = { max = 0.5 }\n')
    for command in ("run", "check"):
        res = _cli(command, model_dir / "audit.toml", "-q", "--ray-address", "auto",
                   *(("--out", model_dir / "out") if command == "run" else ()))
        assert res.exit_code == 2, res.output
        assert "found 2 Ray instances on this machine: 10.0.0.5:41234, 10.0.0.5:6379" in res.output
        assert "--ray-address 10.0.0.5:41234" in res.output and "Traceback" not in res.output
    assert not (model_dir / "out").exists()
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: frozenset({"10.0.0.5:6379"}))
    assert execution._auto_address() == "10.0.0.5:6379"  # the only one: named, not "the newest"


def test_workers_that_import_other_audit_suite_code_are_refused_naming_both(cluster, monkeypatch):
    execution._check_same_code(ray)  # the tests' cluster runs this checkout: accepted
    mine = execution.code_fingerprint()
    # as if this command came from another checkout: the workers' code differs from the driver's
    monkeypatch.setattr(execution, "code_fingerprint", lambda: ("0" * 64, "/elsewhere/audit", "0.0.1"))
    with pytest.raises(InvalidConfigError) as err:
        execution._check_same_code(ray)
    text = str(err.value)
    assert "other audit-suite code" in text and "/elsewhere/audit" in text and mine[1] in text


def test_without_ray_installed_the_error_says_how_to_install_it(model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'audit-suite[ray]'")):
        with execution.session(execution.ExecutionConfig("ray")):
            pass
    res = _cli("run", model_dir / "audit.toml", "--out", model_dir / "out", "-q", "-m", "fairness",
               "--backend", "ray")
    assert res.exit_code == 2 and "audit-suite[ray]" in res.output, res.output


@pytest.mark.slow  # Ray Client gives up on a closed port after about 30 s
def test_an_unreachable_cluster_is_a_clear_error_not_a_hang(model_dir):
    # a process of its own: in this one the tests' cluster is already connected
    proc = subprocess.run([sys.executable, "-m", "audit", "run", str(model_dir / "audit.toml"), "--out",
                           str(model_dir / "out"), "-q", "-m", "fairness", "--ray-address", "ray://127.0.0.1:1"],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Could not connect to the Ray cluster at 'ray://127.0.0.1:1'" in proc.stderr
    assert "Traceback" not in proc.stderr and "UserWarning" not in proc.stderr  # Ray's own warning kept off
    assert not (model_dir / "out").exists()


def test_the_cli_shuts_down_the_ray_instance_it_started_and_keeps_its_notices_off_the_terminal(model_dir):
    """Run in a subprocess (no cluster of the tests there): after `audit run --backend ray` no
    process of the Ray instance it started is left, and what Ray logged while starting (its
    token-authentication notice) is in the provenance, not on stderr."""
    script = (
        "import sys, ray\n"
        "from audit import execution\n"
        "with execution.session(execution.ExecutionConfig('ray')) as c:\n"
        "    node = ray._private.worker.global_worker.node\n"
        "    pids = [p.process.pid for ps in node.all_processes.values() for p in ps]\n"
        "    print(c.backend, c.cpus, len(pids) > 0)\n"
        "    print(c.to_json()['messages'], file=open('messages.txt', 'w'))\n"
        "print('after', ray.is_initialized())\n"
        "import os, time\n"
        "deadline = time.time() + 30\n"
        "alive = pids\n"
        "while alive and time.time() < deadline:\n"
        "    alive = [p for p in alive if os.path.exists(f'/proc/{p}') and "
        "open(f'/proc/{p}/stat').read().split()[2] != 'Z']\n"
        "    time.sleep(0.2)\n"
        "print('left', alive)\n")
    env = {k: v for k, v in _env().items() if k != "RAY_AUTH_MODE"}  # unset: Ray gives its notice
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=model_dir, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ray ") and lines[0].endswith("True")
    assert lines[1:] == ["after False", "left []"]
    assert "Token authentication" not in proc.stderr and "ray" not in proc.stderr.lower(), proc.stderr
    assert "Token authentication is enabled" in (model_dir / "messages.txt").read_text()


@pytest.mark.slow  # two commands, each starting a Ray instance of its own
@pytest.mark.parametrize("command", ["check", "compare"])
def test_a_config_with_backend_ray_keeps_rays_notices_off_the_terminal_in_check_and_compare(tmp_path, command):
    """[execution] backend = "ray" in the config (no flag): Ray's start-up notice goes to the
    provenance (compare's results.json records its execution like run's), not to stderr."""
    from tests.test_compare import planted, write_pair

    a, b = write_pair(tmp_path, planted(n=400, extra=0))
    for cfg in (a, b):
        cfg.write_text(cfg.read_text() + '\n[execution]\nbackend = "ray"\n'
                       + ('[gate]\n"fairness.g.demographic_parity_difference" = { max = 0.9 }\n'
                          if command == "check" and cfg == a else ""))
    env = {k: v for k, v in _env().items() if k != "RAY_AUTH_MODE"}
    args = ([a, "--json"] if command == "check" else
            [a, b, "--out", tmp_path / "out", "--format", "json", "--methods", "fairness"])
    proc = subprocess.run([sys.executable, "-m", "audit", command, *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Token authentication" not in proc.stderr and "Ray" not in proc.stderr, proc.stderr
    if command == "compare":
        record = json.loads((tmp_path / "out" / "results.json").read_text())["provenance"]["execution"]
        assert record["backend"] == "ray" and record["cpus"] >= 1
        assert any("Token authentication" in m for m in record["messages"])


# --------------------------------------------------------------------------------------------
# Same answer on every backend, through the CLI
# --------------------------------------------------------------------------------------------

_TIMINGS = rb"[a-z_]*seconds[a-z_]*|cores"  # clock times (estimates, actuals, unit costs) and free cores


def _comparable(out: Path) -> bytes:
    """results.json without what must differ: the clock, the command and provenance.execution
    (the backend and its cluster)."""
    doc = json.loads((out / "results.json").read_text())
    execution_record = doc["provenance"].pop("execution")
    assert set(execution_record) >= {"backend", "cpus", "gpus", "nodes", "ran_locally"}
    doc["provenance"]["timestamp"] = doc["provenance"]["command"] = doc["provenance"]["audit_suite_commit"] = ""
    raw = json.dumps(doc, sort_keys=True).encode()
    return re.sub(rb'"(' + _TIMINGS + rb')": [-0-9.eE+]+', rb'"\1": 0', raw)


def _both_backends(cfg: Path, methods: str, tmp: Path) -> tuple[bytes, bytes, dict]:
    outs = {}
    for backend in ("local", "ray"):
        out = tmp / f"out-{backend}"
        res = _cli("run", cfg, "--out", out, "-q", "-m", methods, "--format", "json", "--full",
                   "--backend", backend)
        assert res.exit_code == 0, res.output
        outs[backend] = out
    doc = json.loads((outs["ray"] / "results.json").read_text())
    return _comparable(outs["local"]), _comparable(outs["ray"]), doc


def test_torch_methods_give_byte_identical_results_json_on_ray_and_local(model_dir, tmp_path):
    cfg = model_dir / "audit.toml"
    cfg.write_text(cfg.read_text().replace(
        "[data]", '[model.training]\nloss = "bce"\noptimizer = "adam"\nlr = 0.05\nepochs = 3\n'
                  'batch_size = 64\nweight_decay = 1e-3\nn_restarts = 2\nseed = 0\n\n[data]')
        + "\n[methods.connection_weights]\nn_permutations = 39\nper_input = 2\nper_input_permutations = 19\n")
    methods = ("connection_weights", "shap", "saliency", "agreement")
    cfg.write_text(cfg.read_text() + '\n[methods.shap]\nexplainer = "kernel"\nkernel_n_rows = 25\n'
                   "kernel_nsamples = 64\n")
    local, on_ray, doc = _both_backends(cfg, ",".join(methods), tmp_path)
    if local != on_ray:
        i = next(k for k in range(min(len(local), len(on_ray))) if local[k] != on_ray[k])
        raise AssertionError((local[i - 300:i + 100], on_ray[i - 300:i + 100]))
    for name in methods:
        assert doc["methods"][name]["status"] == "ok", doc["methods"][name]
    prov = doc["provenance"]["execution"]
    assert prov["backend"] == "ray" and prov["cpus"] == 2.0 and prov["nodes"] == 1
    assert prov["ran_locally"] == []
    assert {m["method"] for m in doc["provenance"]["plan"]["methods"]} == set(methods)  # with their seconds


@pytest.mark.parametrize("method", sorted(ROW_SHARDED))
def test_row_sharded_explanations_give_byte_identical_results_json_on_ray_and_local(method, model_dir, tmp_path,
                                                                                   small_shards):
    cfg = model_dir / "audit.toml"
    cfg.write_text(cfg.read_text() + ROW_SHARDED[method])
    local, on_ray, doc = _both_backends(cfg, method, tmp_path)
    assert local == on_ray
    assert doc["methods"][method]["status"] == "ok", doc["methods"][method]
    assert doc["provenance"]["execution"]["ran_locally"] == []


def test_refits_of_a_scikit_learn_model_give_byte_identical_results_json_on_ray_and_local(model_dir, frame, encoding,
                                                                                          tmp_path):
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    est = LogisticRegression(max_iter=500).fit(encoding.encode(frame), frame.income == ">50K")
    sio.dump(est, model_dir / "model.skops")
    cfg = model_dir / "audit.toml"
    cfg.write_text(cfg.read_text().replace('path = "model.safetensors"\narchitecture = "architecture.json"\n',
                                           'path = "model.skops"\n')
                   + "\n[methods.permutation_significance]\nn_permutations = 19\nn_repeats = 2\n")
    local, on_ray, doc = _both_backends(cfg, "permutation_significance,agreement", tmp_path)
    assert local == on_ray
    assert doc["methods"]["permutation_significance"]["status"] == "ok", doc["methods"]["permutation_significance"]


@pytest.mark.parametrize("make, shape, loss", [("TinyCNN", (1, 4, 4), "cross_entropy"),
                                              ("TinyLSTM", (5, 2), "mse")], ids=["cnn", "lstm"])
def test_networks_retrained_as_ray_tasks_equal_those_retrained_locally(make, shape, loss):
    """attribution_significance's retraining (audit.train.functional): blocks of networks as Ray
    tasks, each rebuilding the traced program, give exactly the local weights."""
    import torch

    from audit.train.functional import train_functional
    from audit.train.recipe import Recipe
    from tests import test_method_attribution_significance as tiny

    torch.manual_seed(0)
    net = getattr(tiny, make)()
    X = torch.rand(40, *shape)
    Y = torch.randint(0, 2, (10, 40)) if loss == "cross_entropy" else torch.randn(10, 40)
    theta0 = {k: v.clone() for k, v in net.state_dict().items()}
    recipe = Recipe.from_mapping({"optimizer": "adam", "lr": 0.02, "epochs": 2, "batch_size": 16,
                                  "loss": loss}, source="test")
    seen = []
    on_ray = train_functional(net, theta0, X, Y, recipe, progress=lambda d, t: seen.append((d, t)))
    with execution.session(execution.ExecutionConfig("local")):
        local = train_functional(net, theta0, X, Y, recipe)
    assert on_ray.mode == local.mode == "graph"
    assert seen == [(1, 2), (2, 2)]  # 10 networks: blocks of 8 and 2
    for k in local.params:
        assert torch.equal(on_ray.params[k], local.params[k]), k
    assert np.array_equal(on_ray.diverged, local.diverged)


def test_each_ray_task_asks_for_a_gpu_only_when_its_method_trains_on_cuda_and_the_cluster_has_one(cluster,
                                                                                                 monkeypatch):
    assert execution.task_options(1.0)["num_gpus"] == 0  # this cluster has no GPU
    monkeypatch.setattr(cluster, "gpus", 1.0)
    assert execution.task_options(1.0) == {"num_cpus": 1, "num_gpus": 1.0, "max_retries": 3}
    assert execution.task_options(0.0)["num_gpus"] == 0


def test_attribution_significance_on_cuda_hands_its_retraining_to_gpu_tasks(cluster, monkeypatch):
    """The request path without a GPU: with device = "cuda" on a cluster that reports one, the
    retraining's chunks go to execution.map with one GPU each and train on "cuda"."""
    from audit.core.method import RunContext
    from audit.methods.attribution_significance import (AttributionSignificance,
                                                        AttributionSignificanceConfig)
    from tests import test_method_attribution_significance as tiny

    class Requested(Exception):
        pass

    seen = {}

    def recording_map(fn, chunks, **kw):
        seen.update(gpus=kw.get("gpus"), device=fn.device, n_jobs=kw.get("n_jobs"))
        raise Requested

    model, data = tiny._sequence_case(40, True, 0)
    cfg = AttributionSignificanceConfig(enabled=True, n_permutations=19, recipe=tiny.RECIPE, device="cuda")
    with pytest.raises(InvalidConfigError, match="the Ray cluster has no GPU"):
        AttributionSignificance().run(model, data, cfg, RunContext.default(0))
    monkeypatch.setattr(cluster, "gpus", 1.0)
    monkeypatch.setattr(execution, "map", recording_map)
    with pytest.raises(Requested):
        AttributionSignificance().run(model, data, cfg, RunContext.default(0))
    assert seen == {"gpus": 1, "device": "cuda", "n_jobs": 1}
    seen.clear()
    with pytest.raises(Requested):  # "auto" finds the cluster's GPU
        AttributionSignificance().run(model, data, replace(cfg, device="auto"), RunContext.default(0))
    assert seen["gpus"] == 1 and seen["device"] == "cuda"


def test_a_method_whose_chunks_fail_on_ray_is_marked_failed_and_the_report_is_written(model_dir, encoding):
    (model_dir / "model.py").write_text(
        "import ray, torch.nn as nn\n"
        "class Net(nn.Sequential):\n"
        "    def __init__(self, d_in, hidden=8):\n"
        "        super().__init__(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, 1))\n"
        "    def forward(self, x):\n"
        "        if ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE:\n"
        "            raise RuntimeError('planted failure in a Ray worker')\n"
        "        return super().forward(x)\n")
    cfg = model_dir / "audit.toml"
    text = cfg.read_text().replace('architecture = "architecture.json"', 'architecture = "model:Net"')
    cfg.write_text(text.replace("[data]", f"[model.init_args]\nd_in = {len(encoding.columns)}\n\n[data]"))
    out = model_dir / "out"
    res = _cli("run", cfg, "--out", out, "-q", "-m", "fairness,agreement", "--format", "json,html",
               "--backend", "ray")
    assert res.exit_code == 4, res.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["methods"]["fairness"]["status"] == "ok"
    failed = doc["methods"]["agreement"]
    assert failed["status"] == "failed", failed
    assert "failed on the Ray cluster" in failed["reason"] and "planted failure in a Ray worker" in failed["reason"]
    assert "planted failure in a Ray worker" in (out / "report.html").read_text()


# --------------------------------------------------------------------------------------------
# A streamed decisions-only audit: the files are read on the workers, only counts come back
# --------------------------------------------------------------------------------------------


def _partitioned_log(folder: Path) -> Path:
    import pyarrow as pa
    import pyarrow.dataset as ds

    from tests.test_stream import decision_log

    parts = folder / "parts"
    ds.write_dataset(pa.Table.from_pandas(decision_log(3000)), parts, format="parquet", partitioning=["race"],
                     partitioning_flavor="hive", max_rows_per_group=400, max_rows_per_file=900)
    return parts


def test_a_streamed_parquet_folder_is_counted_on_ray_workers_with_byte_identical_results(tmp_path, monkeypatch):
    import audit.core.stream
    from tests.test_stream import write_config

    monkeypatch.setattr(audit.core.stream, "BATCH_ROWS", 500)  # several batches per file
    parts = _partitioned_log(tmp_path)
    files = sorted(parts.rglob("*.parquet"))
    assert len(files) > 4
    counted_here = []
    original = audit.core.stream._FileCounter.__call__

    def spy(self, file):  # patched in this process only: Ray workers import the module afresh
        counted_here.append(file.name)
        return original(self, file)

    cfg = write_config(tmp_path, str(parts), extra="[methods.fairness]\nn_bootstrap = 0\n")
    outs = {}
    for backend in ("local", "ray"):
        out = tmp_path / f"out-{backend}"
        if backend == "ray":
            monkeypatch.setattr(audit.core.stream._FileCounter, "__call__", spy)
        res = _cli("run", cfg, "--out", out, "-q", "--format", "json", "--full", "--backend", backend)
        assert res.exit_code == 0, res.output
        outs[backend] = out
    assert _comparable(outs["local"]) == _comparable(outs["ray"])
    doc = json.loads((outs["ray"] / "results.json").read_text())
    assert doc["methods"]["fairness"]["status"] == "ok" and doc["data"]["rows"] == 3000
    assert doc["provenance"]["execution"]["ran_locally"] == []
    assert counted_here == []  # with --backend ray no file was counted in this process


def test_prediction_labels_that_are_not_the_targets_are_named_alike_on_ray(tmp_path):
    from tests.test_stream import BAD_LABELS, bad_label_folder

    res = _cli("run", bad_label_folder(tmp_path), "--out", tmp_path / "out", "-q", "--format", "json",
               "--backend", "ray")
    assert res.exit_code == 2 and BAD_LABELS in " ".join(res.output.split()), res.output
    assert not (tmp_path / "out").exists()


def test_a_streamed_folder_on_ray_keeps_the_untrusted_config_link_rule(tmp_path):
    from tests.test_stream import write_config

    parts = _partitioned_log(tmp_path / "elsewhere")
    audit_dir = tmp_path / "audit"
    (audit_dir / "parts" / "day=1").mkdir(parents=True)
    (audit_dir / "parts" / "day=1" / "a.parquet").symlink_to(next(parts.rglob("*.parquet")))
    res = _cli("run", write_config(audit_dir, "parts"), "--out", tmp_path / "out", "-q", "--format", "json",
               "--backend", "ray", "--untrusted-config")
    assert res.exit_code == 2 and "outside the config's folder" in res.output, res.output
    assert not (tmp_path / "out").exists()


def _varied_log(folder: Path, *, labels: bool) -> Path:
    """Three hive partitions (region=...), files of 1,300-1,700 rows in row groups of 300: the
    race 'F' and the sex 'X' first appear in the last file, missing sexes in the second, and the
    predictions are scores or the target's labels."""
    from tests.test_stream import decision_log

    parts = folder / "parts"
    for k, (region, n) in enumerate((("north", 1700), ("south", 1300), ("west", 1500))):
        df = decision_log(n, seed=10 + k)
        if k == 1:
            df.loc[[3, 400, 1299], "sex"] = None
        if k == 2:
            df.loc[1000:1100, "race"] = "F"
            df.loc[[5, 1400], "sex"] = "X"
        if labels:
            df["score"] = np.where(df.score >= 0.5, "yes", "no").astype(object)
        (parts / f"region={region}").mkdir(parents=True)
        df.to_parquet(parts / f"region={region}" / "part-0.parquet", row_group_size=300)
    return parts


@pytest.mark.parametrize("labels", [False, True], ids=["scores", "labels"])
def test_ray_data_counts_of_many_blocks_per_file_give_byte_identical_results_json(tmp_path, monkeypatch, labels):
    """Ray Data reads the files on the workers in blocks of ~150 rows (several per file, some
    spanning two files) and counts them there in batches of 250 rows; the driver adds the
    counts up in file and row order: the same results.json, bit for bit, as the local path,
    with partition columns, intersections, missing sensitive values as a group and labels
    first seen in a later file."""
    import audit.core.stream
    from tests.test_stream import FAST, write_config

    monkeypatch.setattr(audit.core.stream, "BATCH_ROWS", 250)
    monkeypatch.setattr(execution, "RAY_DATA_BLOCK_BYTES", 4096)
    parts = _varied_log(tmp_path, labels=labels)
    cfg = write_config(tmp_path, str(parts), extra=FAST)
    cfg.write_text(cfg.read_text().replace('sensitive = ["sex", "race"]',
                                           'sensitive = ["sex", "race", "region"]\nmissing_sensitive = "group"'))
    records, counted_here = [], []
    original_map, original_call = execution.map_parquet, audit.core.stream._FileCounter.__call__

    def spy_map(fn, files, *, columns):
        for i, rows, piece in original_map(fn, files, columns=columns):
            records.append((i, rows))
            yield i, rows, piece

    def spy_call(self, file):
        counted_here.append(file.name)
        return original_call(self, file)

    outs = {}
    for backend in ("local", "ray"):
        if backend == "ray":
            monkeypatch.setattr(execution, "map_parquet", spy_map)
            monkeypatch.setattr(audit.core.stream._FileCounter, "__call__", spy_call)
        out = tmp_path / f"out-{backend}"
        res = _cli("run", cfg, "--out", out, "-q", "--format", "json", "--full", "--backend", backend)
        assert res.exit_code == 0, res.output
        outs[backend] = out
    assert _comparable(outs["local"]) == _comparable(outs["ray"])
    doc = json.loads((outs["ray"] / "results.json").read_text())
    groups = {a: [g["group"] for g in r["groups"]] for a, r in doc["methods"]["fairness"]["result"]["attributes"].items()}
    assert "F" in groups["race"] and {"X", "missing"} <= set(groups["sex"]) and "sex*region" in groups
    assert doc["data"]["rows"] == 4500 and doc["provenance"]["execution"]["ran_locally"] == []
    assert counted_here == []  # every file was counted on the workers
    per_file = [sum(r for i, r in records if i == f) for f in range(3)]
    assert per_file == [1700, 1300, 1500]
    assert min(sum(1 for i, _ in records if i == f) for f in range(3)) >= 3  # several blocks per file


def test_a_bad_value_in_the_second_file_gives_the_local_message_on_ray(tmp_path, monkeypatch):
    """The workers find the missing value; the driver re-counts that file to say where, exactly
    as the local path does (its file, its row from 1 in that file, the column, how to fix it)."""
    from tests.test_stream import decision_log, write_config

    monkeypatch.setattr(execution, "RAY_DATA_BLOCK_BYTES", 4096)
    folder = tmp_path / "log"
    folder.mkdir()
    decision_log(900, seed=1).to_parquet(folder / "a.parquet", row_group_size=300)
    df = decision_log(900, seed=2)
    df.loc[[700, 850], "sex"] = None  # data rows 701 and 851, in a later block of the file
    df.to_parquet(folder / "b.parquet", row_group_size=300)
    cfg = write_config(tmp_path, str(folder))
    said = {}
    for backend in ("local", "ray"):
        res = _cli("run", cfg, "--out", tmp_path / f"out-{backend}", "-q", "--format", "json", "--backend", backend)
        assert res.exit_code == 2 and not (tmp_path / f"out-{backend}").exists(), res.output
        said[backend] = res.output
    assert said["ray"] == said["local"]
    assert ("The sensitive column 'sex' has missing values in row 701 of 'b.parquet' (and 1 more in the same "
            "batch of rows; rows counted from 1, the header not counted)") in " ".join(said["ray"].split())


def test_ray_data_fuses_the_read_and_the_count_into_one_task(tmp_path):
    """Ray Data's own stats name one fused operator: the rows are counted by the task that read
    them and never travel; what comes back is one small record per file and block."""
    parts = _partitioned_log(tmp_path)
    files = [str(f) for f in sorted(parts.rglob("*.parquet"))]
    with execution._ray_messages([], "ray.data"):
        dataset = execution._parquet_dataset(lambda rows, file: rows.num_rows, files, ["sex", "score"])
        records = pa_rows = 0
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            records += batch.num_rows
            pa_rows += sum(batch.column("rows").to_pylist())
    assert pa_rows == 3000 and records >= len(files)
    operators = [line for line in dataset.stats().splitlines() if line.startswith("Operator")]
    assert any("ReadFiles" in line and "->MapBatches(_BlockResults)" in line for line in operators), operators
    assert not any(line.split(":")[0].endswith("MapBatches(_BlockResults)") and "->" not in line
                   for line in operators), operators


def test_a_streamed_audit_on_ray_keeps_ray_data_off_the_terminal(tmp_path):
    """`audit run --backend ray` of a partitioned folder in a fresh process (its own local Ray
    instance): exit 0, the report written, and nothing from Ray or Ray Data on stdout or stderr
    (no log lines, progress bars or worker notices)."""
    from tests.test_stream import write_config

    parts = _partitioned_log(tmp_path)
    cfg = write_config(tmp_path, str(parts), extra="[methods.fairness]\nn_bootstrap = 0\n")
    proc = subprocess.run([sys.executable, "-m", "audit", "run", str(cfg), "--out", str(tmp_path / "out"), "-q",
                           "--backend", "ray"], capture_output=True, text=True, env=_env(), cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out" / "results.json").exists()
    assert proc.stderr == "", proc.stderr[-3000:]
    noise = re.compile(r"\t(INFO|WARNING|ERROR) |\(raylet\)|streaming_executor|Dataset dataset_|ray-data|Running \d")
    assert not noise.search(proc.stdout), proc.stdout[-3000:]


def test_a_streamed_folder_with_attribute_names_that_need_quoting_counts_alike_on_ray(tmp_path):
    import pyarrow as pa
    import pyarrow.dataset as ds

    from tests.test_stream import FAST, decision_log

    df = decision_log(2000).rename(columns={"sex": "s*t", "race": "a&b"})
    ds.write_dataset(pa.Table.from_pandas(df), tmp_path / "parts", format="parquet", partitioning=["a&b"],
                     partitioning_flavor="hive", max_rows_per_group=400, max_rows_per_file=900)
    cfg = tmp_path / "audit.toml"
    cfg.write_text('name = "log"\n[model]\npredictions = "score"\n[data]\npath = "parts"\ntarget = "outcome"\n'
                   'positive_label = "yes"\nsensitive = ["s*t", "a&b"]\n' + FAST)
    for backend in ("local", "ray"):
        res = _cli("run", cfg, "--out", tmp_path / backend, "-q", "--format", "json", "--full", "--backend", backend)
        assert res.exit_code == 0, res.output
    assert _comparable(tmp_path / "local") == _comparable(tmp_path / "ray")
    doc = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert list(doc["methods"]["fairness"]["result"]["attributes"]) == ['"s*t"', '"a&b"', '"s*t"*"a&b"']


# --------------------------------------------------------------------------------------------
# What an untrusted config, a dead or absent cluster and a dying worker cannot do (issue 15)
# --------------------------------------------------------------------------------------------


def test_an_untrusted_config_cannot_send_the_audit_to_a_ray_cluster_it_names(model_dir, monkeypatch):
    """--untrusted-config refuses the config's [execution] address before connecting (exit 2,
    saying how to name the cluster on the command line); --ray-address given there is obeyed."""
    from tests.test_compare import planted, write_pair

    tried = []
    monkeypatch.setattr(execution, "_active", execution._LOCAL)  # as in a fresh `audit` process
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(execution, "_check_reachable", lambda address, said: tried.append(address))
    monkeypatch.setattr(execution, "_init_ray", lambda ray, address: (_ for _ in ()).throw(ConnectionError("planted")))
    cfg = model_dir / "audit.toml"
    cfg.write_text(cfg.read_text() + '\n[execution]\nbackend = "ray"\naddress = "192.0.2.1:6379"\n')
    for extra in ((), ("--backend", "ray")):
        res = _cli("run", cfg, "--out", model_dir / "out", "-q", "-m", "fairness", "--untrusted-config", *extra)
        text = " ".join(res.output.split())
        assert res.exit_code == 2 and "[execution] address '192.0.2.1:6379'" in text, res.output
        assert "--ray-address 192.0.2.1:6379" in text and "Traceback" not in text
    assert tried == [] and not (model_dir / "out").exists()
    (model_dir / "pair").mkdir()
    a, b = write_pair(model_dir / "pair", planted(n=200, extra=0))
    for c in (a, b):
        c.write_text(c.read_text() + '\n[execution]\nbackend = "ray"\naddress = "192.0.2.1:6379"\n')
    res = _cli("compare", a, b, "--out", model_dir / "out", "-q", "--untrusted-config")
    assert res.exit_code == 2 and "--ray-address 192.0.2.1:6379" in " ".join(res.output.split()), res.output
    assert tried == []
    # named on the command line, it is the user's choice: the connection is tried
    res = _cli("run", cfg, "--out", model_dir / "out", "-q", "-m", "fairness", "--untrusted-config",
               "--ray-address", "192.0.2.1:6379")
    assert res.exit_code == 2 and "Could not connect to the Ray cluster at '192.0.2.1:6379' (planted)" in res.output
    assert tried == ["192.0.2.1:6379"]
    # a trusted config's address is used as before
    res = _cli("run", cfg, "--out", model_dir / "out", "-q", "-m", "fairness")
    assert res.exit_code == 2 and "(planted)" in res.output and tried[-1] == "192.0.2.1:6379"


def test_a_gcs_address_that_never_answers_is_an_error_within_the_connect_timeout(model_dir, monkeypatch, capfd):
    """A host that accepts the connection and never answers: ray.init would wait without end;
    the session gives up after RAY_CONNECT_SECONDS (plus Ray's 10 s of connection attempts)
    with exit 2 naming the address, and Ray's C++ log lines stay off the terminal."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts (the kernel completes the handshake) and never answers
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    monkeypatch.setattr(execution, "RAY_CONNECT_SECONDS", 1.0)
    monkeypatch.setattr(execution, "_active", execution._LOCAL)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(execution, "_init_ray", lambda *a: pytest.fail("ray.init was called"))
    try:
        res = _cli("run", model_dir / "audit.toml", "--out", model_dir / "out", "-q", "-m", "fairness",
                   "--ray-address", address)
    finally:
        listener.close()
    assert res.exit_code == 2 and f"The Ray cluster at '{address}' could not be reached" in res.output, res.output
    assert "ray://host:10001" in " ".join(res.output.split()) and not (model_dir / "out").exists()
    terminal = capfd.readouterr()
    assert "rpc_client" not in terminal.err + terminal.out and "GCS" not in terminal.err, terminal.err


def test_a_ray_instance_without_cpus_is_refused_instead_of_waiting_for_one(model_dir, monkeypatch):
    monkeypatch.setattr(execution, "_active", execution._LOCAL)  # outside the tests' session
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"memory": 1e9, "object_store_memory": 1e8})
    res = _cli("run", model_dir / "audit.toml", "--out", model_dir / "out", "-q", "-m", "fairness",
               "--backend", "ray")
    assert res.exit_code == 2 and "has no CPU" in res.output and "--backend local" in res.output, res.output
    assert not (model_dir / "out").exists() and ray.is_initialized()  # the tests' instance is left up


def test_rays_worker_notices_go_to_the_provenance_not_to_stdout(cluster, capsys):
    """Ray prints "(raylet) A worker died ..." to stdout from its error thread whatever
    log_to_driver says; in a session it is recorded in the messages instead, once."""
    import ray._private.worker as ray_worker

    notice = {"lines": ["A worker died or was killed while executing a task."], "pid": "raylet", "is_err": False}
    ray_worker.print_to_stdstream(notice, ignore_prefix=False)
    ray_worker.print_to_stdstream(notice, ignore_prefix=False)
    assert capsys.readouterr().out == ""
    assert cluster.messages.count("(raylet) A worker died or was killed while executing a task.") == 1
    cluster.messages.clear()


def test_a_ray_data_read_whose_worker_always_dies_fails_over_to_the_driver_instead_of_hanging(tmp_path, monkeypatch):
    """Ray Data retries a task whose worker died without end; capped at RAY_MAX_RETRIES, the read
    fails, the driver counts the files and the provenance says why: the local results."""
    import audit.core.stream
    from tests.test_stream import write_config

    parts = _partitioned_log(tmp_path)
    cfg = write_config(tmp_path, str(parts), extra="[methods.fairness]\nn_bootstrap = 0\n")
    assert _cli("run", cfg, "--out", tmp_path / "out-local", "-q", "--format", "json", "--full").exit_code == 0

    class Dying(audit.core.stream._FileCounter):
        def block(self, rows, path):  # runs on the Ray worker that read the rows
            os._exit(1)

    monkeypatch.setattr(audit.core.stream, "_FileCounter", Dying)
    res = _cli("run", cfg, "--out", tmp_path / "out-ray", "-q", "--format", "json", "--full", "--backend", "ray")
    assert res.exit_code == 0, res.output
    assert _comparable(tmp_path / "out-local") == _comparable(tmp_path / "out-ray")
    why = json.loads((tmp_path / "out-ray" / "results.json").read_text())["provenance"]["execution"]["ran_locally"]
    assert len(why) == 1 and "WorkerCrashedError" in why[0] and "counted on the driver" in why[0], why


def test_a_bad_value_in_a_streamed_csv_on_ray_is_the_local_input_error(tmp_path):
    """A CSV file is counted in a Ray task; the task's DataValidationError is the run's error
    (exit 2, the local message), not a method's internal failure."""
    from tests.test_stream import decision_log, write_config

    df = decision_log(400, seed=3)
    df.loc[150, "sex"] = None
    df.to_csv(tmp_path / "log.csv", index=False)
    cfg = write_config(tmp_path, "log.csv", stream=True)
    said = {}
    for backend in ("local", "ray"):
        res = _cli("run", cfg, "--out", tmp_path / f"out-{backend}", "-q", "--format", "json", "--backend", backend)
        assert res.exit_code == 2 and not (tmp_path / f"out-{backend}").exists(), res.output
        said[backend] = res.output
    assert said["ray"] == said["local"] and "row 151 of 'log.csv'" in said["ray"], said


def test_compare_on_ray_records_what_ran_locally_as_audit_run_does(tmp_path, monkeypatch, cluster):
    """Both audits of `audit compare` run inside its session: what they ran locally (here every
    map: its function cannot be shipped) is in compare's provenance, as in `audit run`'s, and
    both HTML reports' provenance name the backend and what ran locally."""
    from tests.test_compare import planted, write_pair

    a, b = write_pair(tmp_path, planted(n=400, extra=0))
    real_put = ray.put

    def put(obj, *args, **kwargs):
        if callable(obj):
            raise TypeError("cannot pickle 'planted' object")
        return real_put(obj, *args, **kwargs)

    monkeypatch.setattr(ray, "put", put)
    records = {}
    for command, args in (("run", [a]), ("compare", [a, b])):
        out = tmp_path / f"out-{command}"
        res = _cli(command, *args, "--out", out, "-q", "--format", "json,html", "--methods", "fairness",
                   "--backend", "ray")
        assert res.exit_code == 0, res.output
        records[command] = json.loads((out / "results.json").read_text())["provenance"]["execution"]["ran_locally"]
        html = " ".join((out / "report.html").read_text().split())
        assert "<th>Backend</th><td>Ray: the Ray instance this process started or had already joined" in html
        assert "<th>Ran on this machine instead of Ray</th>" in html
        assert "cannot pickle &#39;planted&#39; object" in html
    cluster.ran_locally.clear()
    assert records["run"] and all("cannot pickle 'planted' object" in why for why in records["run"])
    assert len(records["compare"]) >= 2 * len(records["run"])  # both audits' maps
    assert set(records["compare"]) == set(records["run"])


def test_null_linked_differently_typed_and_space_named_partitions_count_alike_on_ray_data_without_fallback(tmp_path):
    """Hive's null folder (a "missing" group), a partition folder that is a link, files whose
    sensitive column is text in one and dictionary-encoded in another, and one whose column
    names carry spaces (" sex", stripped as in memory): Ray Data reads them all (files of one
    schema per read), byte-identical to the local path, nothing counted on the driver."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.test_stream import FAST, decision_log

    parts = tmp_path / "parts"
    for k, region in enumerate(("a", "__HIVE_DEFAULT_PARTITION__", "c")):
        (parts / f"region={region}").mkdir(parents=True)
        table = pa.Table.from_pandas(decision_log(400, seed=80 + k), preserve_index=False)
        if k == 2:
            table = table.set_column(1, "race", table.column("race").dictionary_encode())
        if k == 0:
            table = table.rename_columns([" sex", "race ", *table.column_names[2:]])
        pq.write_table(table, parts / f"region={region}" / "part-0.parquet", row_group_size=100)
    (tmp_path / "store").mkdir()
    decision_log(300, seed=90).to_parquet(tmp_path / "store" / "part-0.parquet")
    (parts / "region=b").symlink_to(tmp_path / "store")
    cfg = tmp_path / "audit.toml"
    cfg.write_text('name = "log"\n[model]\npredictions = "score"\n[data]\npath = "parts"\ntarget = "outcome"\n'
                   'positive_label = "yes"\nsensitive = ["sex", "race", "region"]\nmissing_sensitive = "group"\n'
                   + FAST.replace("n_bootstrap = 200", "n_bootstrap = 0"))
    for backend in ("local", "ray"):
        res = _cli("run", cfg, "--out", tmp_path / backend, "-q", "--format", "json", "--full", "--backend", backend)
        assert res.exit_code == 0, res.output
    assert _comparable(tmp_path / "local") == _comparable(tmp_path / "ray")
    doc = json.loads((tmp_path / "ray" / "results.json").read_text())
    regions = {g["group"]: g["count"] for g in doc["methods"]["fairness"]["result"]["attributes"]["region"]["groups"]}
    assert regions == {"a": 400, "b": 300, "c": 400, "missing": 400}
    assert doc["provenance"]["execution"]["ran_locally"] == []


def test_a_file_name_with_a_question_mark_is_counted_by_ray_tasks_not_on_the_driver(tmp_path):
    """Ray Data reads "?" as a URL query and finds no file: such folders are counted by Ray
    tasks (a file each, read on a worker), with the local results and no fallback stated."""
    from tests.test_stream import FAST, decision_log, write_config

    (tmp_path / "parts").mkdir()
    for k, name in enumerate(["a#b.parquet", "q?x.parquet", "qyx.parquet", "[br].parquet"]):
        decision_log(300, seed=30 + k).to_parquet(tmp_path / "parts" / name)
    cfg = write_config(tmp_path, "parts", extra=FAST.replace("n_bootstrap = 200", "n_bootstrap = 0"))
    for backend in ("local", "ray"):
        res = _cli("run", cfg, "--out", tmp_path / backend, "-q", "--format", "json", "--full", "--backend", backend)
        assert res.exit_code == 0, res.output
    assert _comparable(tmp_path / "local") == _comparable(tmp_path / "ray")
    doc = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert doc["data"]["rows"] == 1200 and doc["provenance"]["execution"]["ran_locally"] == []


_SIGNALLED_RUN = """
import os, signal, sys, time
from pathlib import Path
import ray
from audit import cli, execution

real_map = execution.map

def map_whose_task_signals_the_driver(fn, chunks, **options):
    driver = os.getpid()
    node = ray._private.worker.global_worker.node
    Path("ray-pids.txt").write_text(" ".join(str(p.process.pid) for ps in node.all_processes.values() for p in ps))

    def signal_then_wait(chunk):
        os.kill(driver, signal.SIG%s)  # while the driver waits for this task in ray.wait
        time.sleep(120)
        return fn(chunk)
    return real_map(signal_then_wait, chunks, **options)

execution.map = map_whose_task_signals_the_driver
sys.argv = ["audit", *sys.argv[1:]]
cli.main()
"""


@pytest.mark.parametrize("name", ["TERM", "INT"])
def test_a_signal_during_a_ray_run_ends_it_by_that_signal_with_nothing_written_and_ray_shut_down(tmp_path, name):
    """SIGTERM (a CI timeout) or SIGINT while `audit check --backend ray` waits for its tasks:
    the process ends by that signal (never exit 1, "a threshold is breached"), says so once, no
    stack dump of Ray's C++ core and no progress after it, no JUnit file, and no process of the
    Ray instance it started is left."""
    from tests.test_stream import decision_log, write_config

    decision_log(300).to_csv(tmp_path / "log.csv", index=False)
    cfg = write_config(tmp_path, "log.csv", stream=True,
                       extra='[gate]\n"fairness.sex.demographic_parity_difference" = { max = 0.99 }\n')
    proc = subprocess.run([sys.executable, "-c", _SIGNALLED_RUN % name, "check", str(cfg), "--full",
                           "--backend", "ray", "--junit", str(tmp_path / "gate.xml")],
                          capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=180)
    signum = getattr(signal, f"SIG{name}")
    assert proc.returncode == -signum, (proc.returncode, proc.stderr[-2000:])
    assert f"received SIG{name}" in proc.stderr and f"exit status {128 + signum}" in proc.stderr
    assert "PC: @" not in proc.stderr and "SIGTERM received" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "data: finished" not in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("interrupted: "), proc.stderr  # the last word
    assert not (tmp_path / "gate.xml").exists()
    pids = [int(p) for p in (tmp_path / "ray-pids.txt").read_text().split()]
    assert pids and not [p for p in pids if Path(f"/proc/{p}").exists()
                         and Path(f"/proc/{p}/stat").read_text().split()[2] != "Z"]


def test_a_cluster_that_refuses_the_token_says_so_and_how_to_give_it(model_dir):
    """A token-authenticated Ray instance (this module's) reached with a wrong token: exit 2 saying
    that it refused the token and how to give one, not that it "did not answer"."""
    from ray._raylet import AuthenticationMode, get_authentication_mode

    if get_authentication_mode() != AuthenticationMode.TOKEN:
        pytest.skip("this module's Ray instance does not use token authentication (RAY_AUTH_MODE)")
    address = ray._private.worker.global_worker.node.gcs_address
    env = {**_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 32}
    proc = subprocess.run([sys.executable, "-m", "audit", "run", str(model_dir / "audit.toml"), "--out",
                           str(model_dir / "out"), "-q", "-m", "fairness", "--ray-address", address],
                          capture_output=True, text=True, env=env, cwd=model_dir, timeout=120)
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2, said
    assert f"The Ray cluster at '{address}' refused the connection: it uses token authentication" in said, said
    assert "RAY_AUTH_TOKEN=<token>" in said and "did not answer" not in said and "Traceback" not in said
