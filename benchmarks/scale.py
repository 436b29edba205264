"""Benchmark: audits past one machine's memory (issue 15).

``--only decisions``: a decisions-only fairness audit (``[model] predictions = "score"``, two
sensitive attributes, their intersection on) of generated Parquet shards of 10^6, 10^7 and 10^8
rows, read in batches (``audit.core.stream``), beside the in-memory path on one Parquet file of
the same rows, each in its own subprocess: wall time and peak RSS (``os.wait4``). The in-memory
path runs under an address-space cap (``resource.setrlimit(RLIMIT_AS)``, ``--memory-cap``) so
that running out of memory stops it, not the machine; a size is skipped for it once a smaller one
ran out. Where both ran, their results.json are compared: every count-based number must be
identical, and the histogram AUC's largest error against the exact AUC is printed.

``--only ray``: the same streamed audit of a hive-partitioned folder (``shard=<i>/part-0.parquet``,
10^6 rows each) with ``--backend local`` and ``--backend ray`` (a local Ray instance on this
machine's cores: Ray Data reads and counts on its workers) in the same run: wall time, the time
``audit run`` spent loading the data (``provenance.plan.loading_seconds``, the Ray instance's start
included), the driver's own peak RSS, their ratios, and whether the results.json agree::

    PYTHONPATH=. python benchmarks/scale.py --only ray --rows 1e6,1e7

``--only bootstrap``: whether the fairness method's resampling is worth Ray tasks. Its cost does
not grow with the rows (multinomial draws of each group's cells, binomial draws of its score
bins), so it is timed at the most groups an attribute may have (``max_groups`` = 50, default),
with 1,000 resamples (default) and 100,000 (the most allowed), locally and as one Ray task per
group on a warm local Ray instance, in the same run::

    PYTHONPATH=. python benchmarks/scale.py --only bootstrap

The data (one 10^6-row shard per seed, sex with 2 and race with 5 groups, outcomes and scores
with planted group gaps) is written once under ``--data`` (default /tmp/audit-scale), never into
the repository; the 10^8 run takes a few minutes and is run by hand::

    PYTHONPATH=. python benchmarks/scale.py --only decisions --rows 1e6,1e7,1e8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import machine, ratio_line

SHARD_ROWS = 1_000_000
RACES = ("Asian", "Black", "Other", "Pacific", "White")
RACE_P = (0.05, 0.12, 0.03, 0.01, 0.79)


def shard(seed: int, n: int = SHARD_ROWS):  # noqa: ANN201
    """One shard of a decision log: group gaps planted in base rate and score."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    sex = (rng.random(n) < 0.67).astype(np.int32)                  # 0 Female, 1 Male
    race = rng.choice(len(RACES), n, p=RACE_P).astype(np.int32)
    logit = rng.normal(-1.2, 1.4, n) + 0.5 * sex + 0.15 * (race == 4)
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    score = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.8, n) + 0.1 * sex)))
    return pa.table({
        "sex": pa.DictionaryArray.from_arrays(pa.array(sex), pa.array(["Female", "Male"])),
        "race": pa.DictionaryArray.from_arrays(pa.array(race), pa.array(list(RACES))),
        "income": pa.DictionaryArray.from_arrays(pa.array(y.astype(np.int32)), pa.array(["<=50K", ">50K"])),
        "score": pa.array(score),
    })


def generate(root: Path, rows: int, *, single_file: bool = True) -> tuple[Path, Path]:
    """The folder of shards and the single file of the first ``rows`` rows (written once; the
    file only when ``single_file``)."""
    import pyarrow.parquet as pq

    shards = root / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    k = max(1, rows // SHARD_ROWS)
    for i in range(k):
        path = shards / f"part-{i:05d}.parquet"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            pq.write_table(shard(i), tmp, row_group_size=SHARD_ROWS)
            tmp.rename(path)
    folder = root / f"rows-{rows:.0e}".replace("+", "")
    folder.mkdir(exist_ok=True)
    for i in range(k):
        link = folder / f"part-{i:05d}.parquet"
        if not link.exists():
            os.link(shards / f"part-{i:05d}.parquet", link)
    single = root / f"single-{rows:.0e}.parquet".replace("+", "")
    if single_file and not single.exists():
        tmp = single.with_suffix(".tmp")
        with pq.ParquetWriter(tmp, shard(0, 1).schema) as writer:
            for i in range(k):
                writer.write_table(pq.read_table(shards / f"part-{i:05d}.parquet"))
        tmp.rename(single)
    return folder, single


CONFIG = """name = "scale"
seed = 0
[model]
predictions = "score"
[data]
path = {path}
target = "income"
positive_label = ">50K"
sensitive = ["sex", "race"]
stream = {stream}
[limits]
memory = "64GiB"
"""


def partitioned(root: Path, rows: int) -> Path:
    """The shards of ``rows`` rows as a hive-partitioned folder (hard links, written once)."""
    generate(root, rows, single_file=False)
    folder = root / f"hive-{rows:.0e}".replace("+", "")
    for i in range(max(1, rows // SHARD_ROWS)):
        link = folder / f"shard={i:05d}" / "part-0.parquet"
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(root / "shards" / f"part-{i:05d}.parquet", link)
    return folder


# The CLI, writing its own peak RSS on the way out: the driver's alone (a Ray run's workers are
# other processes, and os.wait4 would report the largest of them).
DRIVER = ("import resource, sys\n"
          "rss = sys.argv.pop(1)\n"
          "from audit.cli import main\n"
          "try:\n"
          "    main()\n"
          "finally:\n"
          "    open(rss, 'w').write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n")


def run(path: Path, *, stream: bool, out: Path, cap: int | None, backend: str = "local") -> dict:
    """One ``audit run --methods fairness`` in a subprocess: wall seconds, the driver's peak RSS,
    exit code."""
    out.mkdir(parents=True, exist_ok=True)
    config = out / "audit.toml"
    config.write_text(CONFIG.format(path=json.dumps(str(path)), stream=str(stream).lower()))
    report = out / "report"

    def limit() -> None:
        if cap is not None:
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    rss = out / "driver-rss-kb"
    rss.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(rss), "run", str(config), "--methods", "fairness",
                             "--format", "json", "--out", str(report), "--overwrite", "--full", "--quiet",
                             "--backend", backend],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=limit, env=env)
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    rc = os.waitstatus_to_exitcode(status)
    results = report / "results.json"
    kb = int(rss.read_text()) if rss.exists() else usage.ru_maxrss  # killed: what the kernel saw
    return {"rc": rc, "wall": wall, "rss_mb": kb / 1024,
            "error": err.strip().splitlines()[-1] if rc else None,
            "results": json.loads(results.read_text()) if rc == 0 and results.exists() else None}


def compare(streamed: dict, memory: dict) -> tuple[int, int, float]:
    """(count-based numbers compared, how many differ, largest |histogram AUC − exact AUC|)."""
    a = streamed["methods"]["fairness"]["result"]["attributes"]
    b = memory["methods"]["fairness"]["result"]["attributes"]
    n = bad = 0
    auc_err = 0.0
    for attr in b:
        for ga, gb in zip(a[attr]["groups"], b[attr]["groups"], strict=True):
            for k, eb in gb["metrics"].items():
                ea = ga["metrics"][k]
                if k == "auc":
                    if ea["value"] is not None:
                        auc_err = max(auc_err, abs(ea["value"] - eb["value"]))
                    continue
                if k == "ece":
                    continue
                n += 1
                bad += ea != eb
        for k, db in b[attr]["disparities"].items():
            if k != "auc_difference":
                n += 1
                bad += a[attr]["disparities"][k] != db
    return n, bad, auc_err


def decisions(rows: list[int], root: Path, cap: int) -> None:
    print(f"decisions-only fairness, 2 sensitive attributes + their intersection [{machine()}]")
    print(f"{'rows':>12} | {'streamed s':>10} {'peak MB':>8} | {'in memory s':>11} {'peak MB':>8} | note")
    memory_failed = False
    for n in rows:
        t0 = time.perf_counter()
        folder, single = generate(root, n, single_file=not memory_failed)
        gen = time.perf_counter() - t0
        s = run(folder, stream=True, out=root / f"out-stream-{n}", cap=None)
        m = None if memory_failed else run(single, stream=False, out=root / f"out-memory-{n}", cap=cap)
        notes = [f"data written in {gen:.0f} s"] if gen > 1 else []
        if s["rc"]:
            notes.append(f"streamed failed (exit {s['rc']}): {s['error']}")
        if m is not None and m["rc"]:
            memory_failed = True
            notes.append(f"in memory failed under the {cap / 2**30:.0f} GiB cap (exit {m['rc']}): {m['error']}")
        elif m is not None and s["results"] is not None:
            k, bad, auc = compare(s["results"], m["results"])
            bound = s["results"]["methods"]["fairness"]["result"]["auc_error_bound"]
            notes.append(f"{k} count-based numbers, {bad} differ; max |AUC hist - exact| {auc:.1e} "
                         f"(stated bound {bound:.1e})")
        note = "; ".join(notes)
        mem = (f"{m['wall']:11.1f} {m['rss_mb']:8.0f}" if m is not None and not m["rc"]
               else f"{'out of mem' if m is not None else 'not run':>11} {'':>8}")
        print(f"{n:>12,} | {s['wall']:10.1f} {s['rss_mb']:8.0f} | {mem} | {note}", flush=True)


def comparable(doc: dict) -> str:
    """results.json without what differs between backends: clock times, the command, provenance."""
    doc = dict(doc)
    doc.pop("provenance", None)
    text = json.dumps(doc, sort_keys=True)
    import re

    return re.sub(r'"([a-z_]*seconds[a-z_]*)": [-0-9.eE+]+', r'"\1": 0', text)


def ray_vs_local(rows: list[int], root: Path) -> None:
    print(f"streamed decisions-only fairness of a hive-partitioned folder, local vs Ray Data [{machine()}]")
    print(f"{'rows':>12} | {'local s':>8} {'loading':>8} {'RSS MB':>7} | {'ray s':>8} {'loading':>8} {'RSS MB':>7} | "
          "ray/local wall, RSS | results.json")
    for n in rows:
        folder = partitioned(root, n)
        side = {b: run(folder, stream=True, out=root / f"out-{b}-{n}", cap=None, backend=b) for b in ("local", "ray")}
        if any(r["rc"] for r in side.values()):
            print(f"{n:>12,} | failed: " + "; ".join(f"{b} exit {r['rc']}: {r['error']}" for b, r in side.items()))
            continue
        lo, ra = side["local"], side["ray"]
        load = {b: r["results"]["provenance"]["plan"]["loading_seconds"] for b, r in side.items()}
        same = "identical" if comparable(lo["results"]) == comparable(ra["results"]) else "DIFFER"
        print(f"{n:>12,} | {lo['wall']:8.1f} {load['local']:8.1f} {lo['rss_mb']:7.0f} | {ra['wall']:8.1f} "
              f"{load['ray']:8.1f} {ra['rss_mb']:7.0f} | {ra['wall'] / lo['wall']:.2f}, "
              f"{ra['rss_mb'] / lo['rss_mb']:.2f} | {same}", flush=True)
        print("  " + ratio_line("local / ray (wall)", lo["wall"], ra["wall"], digits=2))


def bootstrap_cost(root: Path, groups: int = 50) -> None:
    from audit import execution
    from audit.methods.fairness.binary import _GroupResampling
    from audit.stats.bootstrap import bootstrap_cells
    from audit.stats.counts import GroupTable

    import pyarrow.parquet as pq

    generate(root, SHARD_ROWS, single_file=False)
    t = pq.read_table(root / "shards" / "part-00000.parquet", columns=["income", "score"])
    rng = np.random.default_rng(0)
    codes = rng.choice(groups, t.num_rows, p=rng.dirichlet(np.full(groups, 2.0)))
    y = (t.column("income").to_numpy().astype(str) == ">50K").astype(np.int64)
    s = t.column("score").to_numpy()
    table = GroupTable.from_rows([f"g{i:02d}" for i in range(groups)], codes, y, (s >= 0.5).astype(np.int64), s)
    print(f"fairness resampling of {groups} groups ({t.num_rows:,} rows, group sizes "
          f"{np.bincount(codes).min():,}-{np.bincount(codes).max():,}, 1,000 score bins) [{machine()}]")
    t0 = time.perf_counter()
    bootstrap_cells(table.cells, 1000, np.random.default_rng(1))
    print(f"  all groups' rates (stratified bootstrap of the cells), 1,000 resamples: {time.perf_counter() - t0:.3f} s")
    work = _GroupResampling(table, 1000, 10, 0)
    with execution.session(execution.ExecutionConfig("local")):
        t0 = time.perf_counter()
        here = execution.map(work, range(groups), n_jobs=1)
        local_s = time.perf_counter() - t0
    with execution.session(execution.ExecutionConfig("ray")) as cluster:
        execution.map(work, range(2))  # the workers' first use (imports), not timed
        t0 = time.perf_counter()
        there = execution.map(work, range(groups))
        ray_s = time.perf_counter() - t0
    same = all(a == b for a, b in zip(here, there, strict=True))
    print(f"  each group's calibration test, 1,000 draws: local {local_s:.2f} s "
          f"({local_s / groups * 1e3:.0f} ms a group), one Ray task a group on {cluster.cpus:.0f} CPUs "
          f"{ray_s:.2f} s; same draws: {same}")
    print("  " + ratio_line("local / ray", local_s, ray_s, digits=2))
    t0 = time.perf_counter()
    _GroupResampling(table, 100_000, 10, 0)(0)
    one = time.perf_counter() - t0
    print(f"  n_bootstrap = 100,000 (the most allowed): {one:.1f} s for one group, so about "
          f"{one * groups / 60:.0f} min for {groups} on one core")


def resolution(root: Path) -> None:
    """The histogram's AUC error against the exact AUC, and its stated bound, per bin count
    (every group of sex × race in the first 10^6-row shard); ECE is exact at any bin count."""
    import pyarrow.parquet as pq

    from audit.stats.bootstrap import group_codes, weighted_auc
    from audit.stats.counts import GroupTable, histogram_auc

    t = pq.read_table(root / "shards" / "part-00000.parquet").to_pandas()
    levels, codes = group_codes((t.sex.astype(str) + " x " + t.race.astype(str)).to_numpy())
    y = (t.income.astype(str) == ">50K").to_numpy().astype(np.int64)
    s = t.score.to_numpy()
    exact = [float(weighted_auc(s[codes == g], y[codes == g], np.ones(int((codes == g).sum()))))
             for g in range(len(levels))]
    print(f"AUC from score histograms, {len(levels)} groups of 1,000,000 rows (sizes "
          f"{np.bincount(codes).min():,}-{np.bincount(codes).max():,}):")
    for bins in (100, 1000, 10000):
        table = GroupTable.from_rows(levels, codes, y, (s >= 0.5).astype(np.int64), s, n_bins=bins)
        res = [histogram_auc(table.by_outcome(g)) for g in range(len(levels))]
        err = max(abs(a - e) for (a, _), e in zip(res, exact, strict=True))
        print(f"  score_bins = {bins:>6,}: max |AUC hist - exact| {err:.1e}, max stated bound "
              f"{max(b for _, b in res):.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["decisions", "ray", "bootstrap"], default="decisions",
                        help="which benchmark to run (decisions: streamed decisions-only fairness, beside "
                             "the in-memory path; ray: the streamed audit on --backend local and ray; "
                             "bootstrap: the fairness resampling locally and as Ray tasks)")
    parser.add_argument("--rows", default="1e6,1e7", help="comma-separated row counts (multiples of 1e6)")
    parser.add_argument("--data", default="/tmp/audit-scale", help="where the generated shards go")
    parser.add_argument("--memory-cap", default="12", help="GiB of address space for the in-memory path")
    args = parser.parse_args()
    rows = [int(float(r)) for r in args.rows.split(",")]
    if args.only == "decisions":
        decisions(rows, Path(args.data), int(float(args.memory_cap) * 2**30))
        resolution(Path(args.data))
    elif args.only == "ray":
        ray_vs_local(rows, Path(args.data))
    else:
        bootstrap_cost(Path(args.data))


if __name__ == "__main__":
    main()
