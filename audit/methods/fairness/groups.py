"""Input checks and grouping: sensitive columns, the favourable outcome, groups and the reference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from audit.core.dataset import AuditData
from audit.errors import InvalidConfigError, did_you_mean
from audit.methods.fairness.config import FairnessConfig, set_name
from audit.stats.bootstrap import group_codes

_GROUP_SEP = " × "


def check_sensitive(data: AuditData, config: FairnessConfig) -> None:
    """One group only, or too many distinct values: the config's choice of sensitive attribute
    cannot be audited as it stands, so these stop the run (exit 2) with the fix."""
    for attr in data.spec.sensitive:
        levels = np.sort(np.asarray(data.sensitive[attr].unique(), dtype=object))
        if len(levels) < 2:
            raise InvalidConfigError(
                f"The sensitive column {attr!r} has a single group ({levels[0]!r}) in "
                f"{data.source or 'the data'}; fairness compares groups, so it needs at least two. "
                "Remove it from [data] sensitive.")
        if len(levels) > config.max_groups:
            raise InvalidConfigError(
                f"The sensitive column {attr!r} has {len(levels)} distinct values (more than "
                f"max_groups = {config.max_groups}); group it into fewer bins (e.g. age ranges such "
                "as 18-25, 26-40, ...) in the data before the audit, or raise [methods.fairness] "
                "max_groups.")


def resolve_favourable(data: AuditData, config: FairnessConfig) -> tuple[str, str | None]:
    """Which decision is favourable ("positive" or "negative") and its label; the label is None
    for a binary task left at the default (texts then speak of selection rates)."""
    chosen = config.favourable_label is not None or config.favourable != "positive"
    if data.task != "binary":
        if chosen:
            raise InvalidConfigError(
                f"The fairness options 'favourable' and 'favourable_label' apply to binary "
                f"classifiers; this audit's task is {data.task}. Remove them from [methods.fairness].")
        return "positive", None
    classes = [str(c) for c in (data.classes or ("0", "1"))]
    if config.favourable_label is None:
        return config.favourable, (classes[1] if config.favourable == "positive" else classes[0]) if chosen else None
    if config.favourable_label not in classes:
        raise InvalidConfigError(
            f"The fairness option 'favourable_label' is {config.favourable_label!r}, which is not a "
            f"class of the target.{did_you_mean(config.favourable_label, classes)} Classes: "
            f"{', '.join(classes)} (positive: {classes[1]}).")
    favourable = "positive" if config.favourable_label == classes[1] else "negative"
    if config.favourable != "positive" and config.favourable != favourable:
        raise InvalidConfigError(
            f"The fairness options disagree: favourable_label = {config.favourable_label!r} is the "
            f"{favourable} class, but favourable = {config.favourable!r}. Set only one of them.")
    return favourable, config.favourable_label


def intersection_too_large(cols: Sequence[str], values: np.ndarray, config: FairnessConfig,
                           has_reference: bool, source: str | None) -> str | None:
    """Why an intersection is not analysed: more groups than ``max_groups``, or None.

    Time, memory and the report grow with the groups (and the pairwise intervals with their
    square), so ``max_groups`` bounds intersections as it bounds attributes. A default
    intersection over the bound is skipped with this reason; one the config asks for by name
    (``intersections`` or ``reference``) is a config error.
    """
    if len(cols) < 2:
        return None
    n_groups = len(pd.unique(values))
    if n_groups <= config.max_groups:
        return None
    name = set_name(cols)
    if config.intersections is not None or has_reference:
        asked = "[methods.fairness] intersections" if config.intersections is not None else "reference"
        raise InvalidConfigError(
            f"The fairness intersection {name!r} named in {asked} has {n_groups:,} groups in "
            f"{source or 'the data'}, more than max_groups = {config.max_groups}. Remove it, bin "
            "its attributes into fewer groups, or raise [methods.fairness] max_groups.")
    return f"{n_groups:,} groups, more than max_groups = {config.max_groups}"


def group_values(data: AuditData, columns: Sequence[str]) -> np.ndarray:
    """Each row's group label for an attribute or an intersection ("Female × White").

    The columns are factorized and their codes combined, so that only the distinct groups'
    labels are built as text (joining a million rows' strings took most of the time)."""
    codes = np.zeros(data.n_rows, dtype=np.int64)
    labels = np.array([""], dtype=object)
    for i, c in enumerate(columns):
        # factorized as a Series: pandas' text columns need no conversion to objects first
        col_codes, col_levels = pd.factorize(data.sensitive[c].astype(str), use_na_sentinel=False)
        col_levels = np.asarray(col_levels, dtype=object)
        labels = (labels[:, None] + (_GROUP_SEP if i else "") + col_levels[None, :]).ravel()
        codes, present = pd.factorize(codes * len(col_levels) + col_codes)  # only groups that occur
        labels = labels[np.asarray(present)]
    return labels[codes]


def _reference_index(levels: np.ndarray, ref: str | None, small: np.ndarray, name: str) -> int | None:
    if ref is None:
        return None
    lv = [str(v) for v in levels]
    if ref not in lv:
        raise InvalidConfigError(
            f"The fairness reference group {ref!r} of {name!r} does not occur in the data."
            f"{did_you_mean(ref, lv)} Groups: {', '.join(lv[:10])}.")
    idx = lv.index(ref)
    if small[idx]:
        raise InvalidConfigError(
            f"The fairness reference group {ref!r} of {name!r} is too small to judge; choose a "
            "larger group as the reference.")
    return idx



def _groups(cols: Sequence[str], levels: Sequence[str], counts: np.ndarray, config: FairnessConfig,
            ref_name: str | None) -> tuple[str, Sequence[str], int, np.ndarray, np.ndarray, np.ndarray, int | None]:
    """The attribute set's name, its groups (sorted labels and sizes), which are too small to
    judge, which are judged, and the reference group's index (or None for max − min)."""
    name = set_name(cols)
    small = np.asarray(counts) < config.min_group_size
    return name, levels, len(levels), np.asarray(counts), small, ~small, _reference_index(
        np.asarray(levels, dtype=object), ref_name, small, name)
