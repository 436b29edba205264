"""Compare the numbers of two results.json files of the same audit, across renamed keys.

Every number of OLD must appear, equal, at its (renamed) path in NEW; numbers only in NEW are
listed as additions. Run-to-run timings (provenance seconds, dates) are left out.

    python scripts/results_diff.py OLD/results.json NEW/results.json

Exit 0 when every old number is kept, 1 otherwise. ``RENAMES`` is the list of renamed keys
(issue 14's result vocabulary: every value with an interval is an Estimate).
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

#: (old path pattern, new path) with paths as dot-joined keys / list indices.
RENAMES: tuple[tuple[str, str], ...] = (
    # shap and lime: mean |value| and its interval became one Estimate per feature
    (r"^(methods\.(?:shap|lime)\.result)\.global_importance\.(.+)$", r"\1.global_importance.\2.value"),
    (r"^(methods\.(?:shap|lime)\.result)\.importance_low\.(.+)$", r"\1.global_importance.\2.lower"),
    (r"^(methods\.(?:shap|lime)\.result)\.importance_high\.(.+)$", r"\1.global_importance.\2.upper"),
    # saliency: global_ci (lower, upper) folded into global_importance's Estimates
    (r"^(methods\.saliency\.result\.global_importance\.[^.]+\.[^.]+)$", r"\1.value"),
    (r"^(methods\.saliency\.result)\.global_ci\.([^.]+\.[^.]+)\.0$", r"\1.global_importance.\2.lower"),
    (r"^(methods\.saliency\.result)\.global_ci\.([^.]+\.[^.]+)\.1$", r"\1.global_importance.\2.upper"),
    # agreement: the consensus rank's low/high became its Estimate
    (r"^(methods\.agreement\.result\.consensus\.[^.]+)\.mean_rank$", r"\1.mean_rank.value"),
    (r"^(methods\.agreement\.result\.consensus\.[^.]+)\.low$", r"\1.mean_rank.lower"),
    (r"^(methods\.agreement\.result\.consensus\.[^.]+)\.high$", r"\1.mean_rank.upper"),
    # counterfactuals: a group's mean and median recourse cost with their intervals became Estimates
    (r"^(methods\.counterfactuals\.result\.recourse\.[^.]+\.groups\.[^.]+)\.(mean|median)_cost$", r"\1.\2_cost.value"),
    (r"^(methods\.counterfactuals\.result\.recourse\.[^.]+\.groups\.[^.]+)\.(mean|median)_ci\.0$", r"\1.\2_cost.lower"),
    (r"^(methods\.counterfactuals\.result\.recourse\.[^.]+\.groups\.[^.]+)\.(mean|median)_ci\.1$", r"\1.\2_cost.upper"),
    # one name per idea: n_boot is n_bootstrap; max_rows split into training and searched rows
    (r"^methods\.fairness\.(result|config)\.n_boot$", r"methods.fairness.config.n_bootstrap"),
    (r"^(methods\.performance\.(?:result|config))\.n_boot$", r"\1.n_bootstrap"),
    (r"^(methods\.(?:connection_weights|attribution_significance|permutation_significance)\.config)\.max_rows$",
     r"\1.max_training_rows"),
    (r"^(methods\.(?:counterfactuals|counterfactual_sensitivity)\.config)\.max_rows$", r"\1.max_search_rows"),
    # performance: the metrics became Estimates with the same value/lower/upper paths (their
    # labels, notes and reliability moved to strings beside them): no number moves
    # fairness: the result no longer copies six options; they stand once, in the method's config
    (r"^methods\.fairness\.result\.(min_group_size|confidence|alpha|power|n_permutations)$",
     r"methods.fairness.config.\1"),
)
VARIES = re.compile(r"seconds|^provenance\.(created|started|finished|python|platform|host|load|plan\.unit_costs)")


#: Fields that name an element of a list of objects (tried in order): the element's path uses
#: them instead of its position, so an element added before it does not move it.
IDS: tuple[tuple[str, ...], ...] = (("method",), ("key", "strategy"), ("key",), ("feature",),
                                    ("attribute",), ("group",), ("grouping", "group"))


def _items(obj: Any) -> Any:
    if isinstance(obj, dict):
        return obj.items()
    if not isinstance(obj, list):
        return ()
    if obj and all(isinstance(x, dict) for x in obj):
        for ids in IDS:
            names = [":".join(str(x.get(i)) for i in ids) if all(i in x for i in ids) else None for x in obj]
            if None not in names and len(set(names)) == len(names):
                return zip(names, obj, strict=True)
    return enumerate(obj)


def flatten(obj: Any, prefix: str = "") -> dict[str, float]:
    """Path -> number for every number (bools excluded) in a JSON document; elements of a list
    of objects are named by their ``IDS`` fields where those are unique, else by position."""
    out: dict[str, float] = {}
    items = _items(obj)
    for k, v in items:
        path = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, (dict, list)):
            out.update(flatten(v, path))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[path] = float(v)
    return out


def renamed(path: str) -> str:
    for pattern, new in RENAMES:
        path, n = re.subn(pattern, new, path)
        if n:
            return path
    return path


def compare(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, additions): old numbers lost or changed, and paths only in NEW."""
    a, b = flatten(old), flatten(new)
    problems, seen = [], set()
    for path, value in a.items():
        if VARIES.search(path):
            continue
        target = path if path in b else renamed(path)  # already in the new shape: no rename
        seen.add(target)
        if target not in b:
            problems.append(f"lost: {path} = {value!r} (looked for {target})")
        elif not (b[target] == value or (math.isnan(value) and math.isnan(b[target]))):
            problems.append(f"changed: {path} = {value!r} -> {target} = {b[target]!r}")
    additions = [p for p in b if p not in seen and not VARIES.search(p)]
    return problems, additions


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    with open(argv[0]) as f_old, open(argv[1]) as f_new:
        problems, additions = compare(json.load(f_old), json.load(f_new))
    for p in problems:
        print(p)
    groups: dict[str, int] = {}
    for p in additions:
        key = ".".join(p.split(".")[:4])
        groups[key] = groups.get(key, 0) + 1
    for key, n in sorted(groups.items()):
        print(f"added: {n} number(s) under {key}")
    print(f"{len(problems)} old number(s) lost or changed; {len(additions)} added")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
