"""Decision logs of any length in bounded memory: read in batches, keep only counts.

A decisions-only audit (``[model] predictions = "column"``) needs, for the fairness method, each
group's confusion counts and score histogram (:class:`audit.stats.counts.GroupTable`), never
the rows. :func:`stream_tables` reads a CSV (optionally compressed) or Parquet file, or a folder
of Parquet files (hive partitions such as ``region=north/`` become columns), one batch of rows at
a time with pyarrow, and adds each batch to those tables: memory is bounded by the batch, the
groups and the score bins, not by the rows. Each file is counted on its own, a chunk of
:func:`audit.execution.map` (with the Ray backend, a task that reads the file on a worker and
sends back only its counts), and the files' counts merge in file order: the same tables on every
backend.

The labels are read exactly as the in-memory path reads them (the same normalisation of each
batch's distinct values, :func:`audit.core.dataset._label_text`; the same rules for the target's
classes, the predictions and missing sensitive values), so a streamed audit and an in-memory
audit of the same rows build identical tables. Every problem is an input error naming the file,
the column, the first row as a user counts it (from 1 within the file, the header not counted)
and the value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.core.dataset import (MISSING_GROUP, ROWS_COUNTED, AuditData, DatasetSpec, Encoding, _check_column_names,
                                _encode_target, _label_text, _precomputed, _show, missing_group_clash, missing_text)
from audit.errors import DataValidationError, InvalidConfigError, did_you_mean
from audit.stats.counts import (DEFAULT_SCORE_BINS, SUM_LIMBS, GroupTable, limb_sums_to_float, score_bin,
                                 score_limbs, sum_limbs)

#: Rows per batch: about 30 MB of decoded columns for a typical decision log.
BATCH_ROWS = 1 << 20
#: Separator of an intersection's group labels ("Female × White"), as the fairness method names them.
GROUP_SEP = " × "
_PARQUET = (".parquet", ".pq")
#: Why a method that needs the rows does not run on a streamed audit.
NEEDS_ROWS = ("needs the audited rows, and this audit read the data in batches keeping only counts "
              "([data] stream, or a folder of Parquet files); to run it, audit a file that fits in "
              "memory without stream")


@dataclass(frozen=True)
class AttributeSet:
    """One attribute or intersection to count: its columns, and whether the config names it
    (then more than ``max_groups`` groups is an error rather than a skipped intersection)."""

    columns: tuple[str, ...]
    named: bool = False
    #: how the results name it (the fairness method's set_name), for messages only
    name: str = ""


@dataclass(frozen=True)
class StreamedTables:
    """What a streamed pass over the data found."""

    source: str
    files: tuple[str, ...]
    n_rows: int
    classes: tuple[str, ...]
    #: by the set's columns (a tuple: no name's spelling can make two sets collide)
    tables: dict[tuple[str, ...], GroupTable]
    #: intersection (its columns) -> its number of groups, when more than ``max_groups`` (not counted)
    too_many: dict[tuple[str, ...], int]
    has_scores: bool
    positive_rate: float | None
    n_bins: int


def _folder_files(path: Path) -> list[Path]:
    """Every file under a data folder, sorted, hidden and ``_``-prefixed ones (``_SUCCESS``)
    left out, as Spark and pyarrow do; linked folders are followed (their files keep the
    link's path, so a linked partition folder gives its partition value)."""
    from audit.core.userfiles import folder_files

    return folder_files(path, skip=(".", "_"), error=DataValidationError)


def data_files(path: str | Path) -> list[Path]:
    """The files of a data path: itself, or every Parquet file under a folder (sorted, hidden
    and ``_``-prefixed files such as ``_SUCCESS`` left out, as Spark and pyarrow do)."""
    path = Path(path)
    if path.is_dir():
        files = _folder_files(path)
        parquet = [p for p in files if p.name.lower().endswith(_PARQUET)]
        if not parquet:
            raise DataValidationError(
                f"The data folder {str(path)!r} holds no Parquet files (*.parquet){'' if files else ' (it is empty)'}. "
                "Point [data] path at a CSV or Parquet file, or at a folder of Parquet files.")
        return parquet
    from audit.core.userfiles import check_regular_file

    return [check_regular_file(path, "data file", error=DataValidationError,
                               hint="Check the path (relative paths are resolved against the config "
                                    "file's folder).")]


def left_out_files(path: str | Path) -> list[str]:
    """The files of a data folder that are not read: neither Parquet (``*.parquet``, ``*.pq``)
    nor hidden or ``_``-prefixed; relative to the folder (none for a file)."""
    path = Path(path)
    if not path.is_dir():
        return []
    return [str(p.relative_to(path)) for p in _folder_files(path) if not p.name.lower().endswith(_PARQUET)]


#: The folder name Hive, Spark and pyarrow write for a row whose partition value is null.
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def _partition_values(file: Path, root: Path, na_values: Sequence[str] = ()) -> dict[str, str | None]:
    """Hive partition values of a file under ``root`` (``region=north/part-0.parquet``); None
    for a missing value: Hive's null folder (``region=__HIVE_DEFAULT_PARTITION__``), an empty
    or blank value (``region=``, ``region=%20``) or one of ``[data] na_values``, as an empty
    cell or a listed marker is missing in a CSV. A key twice on the path (``race=A/race=B``)
    is an error: which value holds is a guess."""
    if file == root:
        return {}
    from urllib.parse import unquote

    out: dict[str, str | None] = {}
    folders = file.relative_to(root).parts[:-1]
    for part in folders:
        key, sep, value = part.partition("=")
        if not sep:
            continue
        key, value = unquote(key), unquote(value)
        if key in out:
            raise DataValidationError(
                f"The partition column {key!r} is named twice on the path of {_where(file, root)} "
                f"({' and '.join(repr(p) for p in folders if unquote(p.partition('=')[0]) == key)}), so "
                "its value there is ambiguous. Give each partition column one folder level.")
        out[key] = None if value == HIVE_NULL or value.strip() in missing_text(na_values) else value
    return out


def _where(file: Path, root: Path) -> str:
    """A file as error messages name it: relative to the data folder, quoted."""
    return repr(str(file.relative_to(root)) if file != root else file.name)


class _Reader:
    """Batches of the needed columns of one file, as pyarrow record batches."""

    def __init__(self, file: Path, root: Path, columns: Sequence[str], spec: DatasetSpec, batch_rows: int):
        self.file, self.columns, self.batch_rows = file, list(columns), batch_rows
        self.partition = _partition_values(file, root, spec.na_values)
        self.where = _where(file, root)
        self.spec = spec
        self.names = self._names()
        clash = [c for c in self.columns if c in self.names and c in self.partition]
        if clash:  # which would win is a guess: the folder's value or the file's own column
            from urllib.parse import unquote

            folder = next(part for part in file.relative_to(root).parts[:-1]
                          if "=" in part and unquote(part.partition("=")[0]) == clash[0])
            raise DataValidationError(
                f"The column {clash[0]!r} is both a partition folder ({folder!r}, value "
                f"{self.partition[clash[0]]!r}) and a column of the file {self.where}, so its value "
                "there is ambiguous. Rename the folder or drop the column from the file.")
        missing = [c for c in self.columns if c not in self.names and c not in self.partition]
        if missing:
            raise DataValidationError(
                f"The column {missing[0]!r} named in the config is not in {self.where}."
                f"{did_you_mean(missing[0], self.names)} Available columns: {_show(self.names)}."
                + (" Every file of the folder must hold the same columns." if file != root else ""))

    def _names(self) -> list[str]:
        """The file's column names as the in-memory reader reads them: unique once surrounding
        spaces go, and stripped (``raw`` maps each to its name as written, which pyarrow reads by)."""
        import pyarrow.parquet as pq

        self.raw: dict[str, str] = {}
        self.kinds: dict[str, Any] = {}
        try:
            if self.file.name.lower().endswith(_PARQUET):
                schema = pq.read_schema(self.file)
                self._set_names(schema)
                self.num_rows = pq.read_metadata(self.file).num_rows
                self._check_flat()
                self._check_extensions(schema)
                return list(self.kinds)
            import pyarrow.csv as pcsv

            with self._open() as source:
                self._set_names(pcsv.open_csv(source, **self._csv_options(probe=True)).schema)
            return list(self.kinds)
        except DataValidationError:
            raise
        except Exception as exc:
            raise DataValidationError(
                f"The data file {self.where} could not be read ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}). Check that it is a CSV or Parquet "
                "file and not truncated.") from None

    def _set_names(self, schema: Any) -> None:
        """``raw`` and ``kinds`` by stripped name, after the in-memory check of duplicated names
        (pyarrow would read the first of two columns of one name)."""
        _check_column_names(schema.names, self.file)
        self.raw = {f.name.strip(): f.name for f in schema}
        self.kinds = {f.name.strip(): f.type for f in schema}

    def _check_flat(self) -> None:
        """A needed column of lists, structs or maps holds no labels or scores: name it."""
        import pyarrow as pa

        for c in self.columns:
            t = self.kinds.get(c)
            if t is not None and pa.types.is_nested(t):
                raise DataValidationError(
                    f"The column {c!r} in {self.where} holds nested values ({t}), not labels or "
                    "scores. Write it as a column of plain values (text or numbers), e.g. one "
                    "element or field of it per column.")

    def _check_extensions(self, schema: Any) -> None:
        """A needed column of an Arrow extension type is read as its storage when that is plain
        text, numbers or booleans (e.g. ``arrow.json`` over strings: the JSON text is the label);
        any other storage is refused, naming the column: Ray Data's pickled Python objects
        (``ray.data.arrow_pickled_object``) would have to be unpickled, which runs code, and are
        never read. An extension type this process has not registered reads as its storage
        with the type's name in the field's metadata."""
        import pyarrow as pa

        for c in self.columns:
            if c not in self.kinds:
                continue
            t, meta = self.kinds[c], schema.field(self.raw[c]).metadata or {}
            if isinstance(t, pa.BaseExtensionType):
                name, storage = t.extension_name, t.storage_type
            elif b"ARROW:extension:name" in meta:
                name, storage = meta[b"ARROW:extension:name"].decode(errors="replace"), t
            else:
                continue
            if not _plain_type(storage):
                raise DataValidationError(
                    f"The column {c!r} in {self.where} is of the Arrow extension type {name!r}, stored as "
                    f"{storage}: not plain labels or scores"
                    + (" (pickled Python objects, which are never unpickled: that runs code)" if "pickle" in name
                       else "") + ". Write the column as plain text or numbers.")

    @property
    def read_as_written(self) -> list[str]:
        """The needed columns the file holds, by their names as written (batches keep those
        names; :meth:`_FileCounter._add` strips them)."""
        return [self.raw[c] for c in self.columns if c in self.names]

    def _open(self) -> Any:
        """The CSV's bytes as a stream: pyarrow decompresses gzip and bz2 itself (from the
        name); xz and zip are decompressed in Python as a stream (bounded memory)."""
        import pyarrow as pa

        name = self.file.name.lower()
        if name.endswith((".xz", ".zip")):
            from audit.core.dataset import _open_text

            return pa.PythonFile(_open_text(self.file), mode="r")
        return pa.input_stream(str(self.file), compression="detect")

    def _csv_options(self, probe: bool = False) -> dict[str, Any]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        text = [c for c in (self.spec.target, *self.spec.sensitive) if c]
        if self.spec.task != "binary" and self.spec.predictions:
            text.append(self.spec.predictions)
        return {"read_options": pcsv.ReadOptions(block_size=1 << 24, encoding="utf8"),
                "convert_options": pcsv.ConvertOptions(
                    null_values=["", *self.spec.na_values], strings_can_be_null=True,
                    column_types={self.raw.get(c, c): pa.string() for c in text},
                    include_columns=None if probe else self.read_as_written)}

    def batches(self) -> Any:
        try:
            if self.file.name.lower().endswith(_PARQUET):
                import pyarrow.parquet as pq

                import pyarrow as pa

                text = [c for c in self.columns if c in self.kinds
                        and (pa.types.is_string(self.kinds[c]) or pa.types.is_large_string(self.kinds[c]))]
                pf = pq.ParquetFile(self.file, read_dictionary=[self.raw[c] for c in text])
                yield from pf.iter_batches(batch_size=self.batch_rows, columns=self.read_as_written)
            else:
                import pyarrow.csv as pcsv

                with self._open() as source:
                    yield from pcsv.open_csv(source, **self._csv_options())
        except DataValidationError:
            raise
        except Exception as exc:
            raise DataValidationError(
                f"The data file {self.where} could not be read to the end ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}). Check that it is not truncated and "
                "that every row has the same columns.") from None


class _Labels:
    """Text labels of one column, as global ids in the order their first row was seen (not the
    order of a batch's dictionary, which depends on how the file was written and read; a
    dictionary value no row holds is no label)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        # under missing_sensitive = "group": missing cells seen, cells written as the missing group's name seen
        self.nulls = self.written_missing = False

    def clash(self) -> bool:
        """Missing cells and cells that read like the missing group's name (``missing_group_clash``)."""
        return self.nulls and self.written_missing

    def encode(self, array: Any, *, on_missing: Callable[[np.ndarray], None],
               missing: str | None = None) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc

        if pa.types.is_floating(array.type):  # NaN is a missing value, as pandas reads it in memory
            array = pc.if_else(pc.is_nan(array), pa.scalar(None, array.type), array)
        if not pa.types.is_dictionary(array.type):
            array = pc.dictionary_encode(array)
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        idx = array.indices.to_numpy(zero_copy_only=False)
        if array.null_count:
            nulls = np.asarray(array.is_null().to_numpy(zero_copy_only=False))
            if missing is None:
                on_missing(nulls)
            idx = np.where(nulls, len(array.dictionary), np.nan_to_num(idx)).astype(np.int64)
        else:
            idx = idx.astype(np.int64, copy=False)
        names = [str(n) for n in _label_text(array.dictionary.to_pandas())] + ([missing] if array.null_count else [])
        used = np.flatnonzero(np.bincount(idx, minlength=len(names))).tolist()
        if missing is not None:
            self.nulls = self.nulls or bool(array.null_count)
            self.written_missing = self.written_missing or any(
                names[k] == missing for k in used if k < len(array.dictionary))
        new = [k for k in used if names[k] not in self.ids]
        if len(new) > 1:  # by first row: a few scans, or one sort when there are many
            if len(new) <= 8:
                first = {k: int(np.argmax(idx == k)) for k in new}
            else:
                values, at = np.unique(idx, return_index=True)
                first = dict(zip(values.tolist(), at.tolist(), strict=True))
            new.sort(key=first.__getitem__)
        for k in new:
            self.ids.setdefault(names[k], len(self.ids))
        lut = np.array([self.ids.get(n, -1) for n in names], dtype=np.int64)
        return lut[idx]

    @property
    def labels(self) -> list[str]:
        return list(self.ids)

    def add(self, other: _Labels) -> np.ndarray:
        """Take ``other``'s labels (new ones get the next ids); its ids mapped to these."""
        self.nulls, self.written_missing = self.nulls or other.nulls, self.written_missing or other.written_missing
        return np.array([self.ids.setdefault(n, len(self.ids)) for n in other.ids], dtype=np.int64)


class _Counter:
    """Counts of one attribute set, over growing group / outcome / decision ids. Score sums are
    exact integer limbs (:func:`audit.stats.counts.sum_limbs`): counts of any split of the rows
    (batches, files, Ray Data blocks) add up to the same bits."""

    def __init__(self, n_bins: int) -> None:
        self.n_bins = n_bins
        self.groups: dict[tuple[int, ...], int] = {}
        self.hist = np.zeros((0, 0, 0, 0), dtype=np.int64)
        self.ssum = np.zeros((0, 0, SUM_LIMBS), dtype=np.int64)
        self.stopped = False

    def codes(self, parts: list[np.ndarray], sizes: list[int]) -> np.ndarray:
        """Each row's group id from its attributes' label ids (``sizes``: labels of each so far);
        counting over the small key space, not sorting the rows."""
        key = parts[0]
        for p, n in zip(parts[1:], sizes[1:], strict=True):
            key = key * n + p
        present = np.flatnonzero(np.bincount(key, minlength=int(np.prod(sizes))))
        lut = np.zeros(int(np.prod(sizes)), dtype=np.int64)
        for k in present.tolist():
            combo = tuple(int(v) for v in np.unravel_index(k, sizes))
            lut[k] = self.groups.setdefault(combo, len(self.groups))
        return lut[key]

    def grow(self, shape: tuple[int, int, int, int]) -> None:
        """At least ``shape`` (groups, outcome ids, decision ids, bins), keeping the counts."""
        if shape != self.hist.shape:
            hist = np.zeros(tuple(max(a, c) for a, c in zip(self.hist.shape, shape, strict=True)), dtype=np.int64)
            hist[tuple(slice(0, n) for n in self.hist.shape)] = self.hist
            ssum = np.zeros((hist.shape[0], hist.shape[3], SUM_LIMBS), dtype=np.int64)
            ssum[:self.ssum.shape[0], :self.ssum.shape[1]] = self.ssum
            self.hist, self.ssum = hist, ssum

    def stop(self) -> None:
        """Too many groups: keep counting the groups only."""
        self.stopped = True
        self.hist = self.hist[:0]

    def add(self, g: np.ndarray, cell: np.ndarray, shape: tuple[int, int, int],
            b: np.ndarray | None, limbs: np.ndarray | None) -> None:
        """Add rows of groups ``g`` in cells ``cell`` = (outcome · D + decision) · B + bin of a
        table of ``shape`` = (outcome ids, decision ids, bins) so far, and their scores' ``limbs``
        (:func:`audit.stats.counts.score_limbs`) to bin ``b``'s sum."""
        shape = (len(self.groups), *shape)
        self.grow(shape)
        G, Y, D, B = shape
        self.hist += np.bincount(g * (Y * D * B) + cell, minlength=G * Y * D * B).reshape(shape)
        if limbs is not None and b is not None:
            self.ssum += sum_limbs(g * B + b, limbs, G * B).reshape(G, B, SUM_LIMBS)


def stream_tables(path: str | Path, spec: DatasetSpec, *, threshold: float,
                  sets: Sequence[AttributeSet], max_groups: int, n_bins: int = DEFAULT_SCORE_BINS,
                  batch_rows: int | None = None,
                  progress: Callable[[int], None] | None = None) -> StreamedTables:
    """Read ``path`` (a CSV or Parquet file, or a folder of Parquet files) in batches into one
    :class:`GroupTable` per attribute set.

    ``spec`` names the target, the predictions column (scores in [0, 1] for a binary task, or
    the target's labels) and the sensitive columns; ``threshold`` turns scores into decisions
    (a score at or above it is the positive decision). An attribute with more than
    ``max_groups`` groups is an error; so is a named intersection, while an unnamed one is left
    out (``too_many``). ``progress(rows)`` is called after each batch.
    """
    if spec.predictions is None or spec.target is None:
        raise InvalidConfigError("A streamed audit needs [model] predictions and [data] target.")
    from audit import execution

    batch_rows = batch_rows or BATCH_ROWS
    root = Path(path)
    files = data_files(root)
    columns = list(dict.fromkeys([spec.target, spec.predictions, *spec.sensitive]))
    readers = [_Reader(f, root, columns, spec, batch_rows) for f in files]
    _check_same_kinds(readers, spec)
    # Each file is counted on its own and the counts are merged in file order, so the tables do
    # not depend on the backend. On Ray, Ray Data reads Parquet files on the workers and only
    # counts travel (_count_on_ray_data); a CSV file is a Ray task (a chunk of execution.map).
    local = execution.active().backend == "local"
    counted = _Counts(sets, n_bins)
    count = _FileCounter(root, columns, spec, threshold, sets, max_groups, n_bins, batch_rows,
                         progress if local else None)
    done = 0
    if not local and "path" not in columns and all(f.name.lower().endswith(_PARQUET) and "?" not in str(f)
                                                   for f in files):
        # (a data column named "path" would clash with Ray Data's column of file paths; Ray Data
        # reads a "?" in a path as the start of a URL query and finds no such file: such files,
        # and CSV files, are counted by Ray tasks, each reading its file on a worker)
        done = _count_on_ray_data(count, files, readers, counted, spec, sets, max_groups, progress)
        if done < len(files):  # Ray Data failed: the rest is counted here
            local, count.progress = True, progress
    # Files go out a window at a time: the driver holds the counts of one window, never of every file.
    window = 1 if local else max(1, 2 * int(execution.active().cpus))
    for chunk in execution.split_by(len(files) - done, window):
        count.before = counted.n_rows
        todo = files[done + chunk.start:done + chunk.stop]
        for part in (map(count, todo) if local else _on_workers(count, todo)):
            counted.merge(part, spec, sets, max_groups)
            if progress is not None and not local:
                progress(counted.n_rows)
    if counted.n_rows == 0:
        raise DataValidationError(f"The data in {repr(str(root))} has no rows.")
    return _finish(root, files, spec, sets, counted.counters, counted.target, counted.preds, counted.attrs,
                   counted.n_rows, bool(counted.scored),
                   bool(counted.scored) and _scores_are_labels(counted.only_01, counted.target), n_bins,
                   pred_seen=counted.pred_seen)


def _on_workers(count: _FileCounter, files: list[Path]) -> list[_Counts]:
    """Each file counted by a task of the active backend; a file's bad value is the run's
    input error (exit 2, the local message), not a failed chunk."""
    from audit import execution
    from audit.errors import AuditError

    try:
        return execution.map(count, files, n_jobs=1, prefer="threads")
    except execution.ChunkFailed as exc:
        if isinstance(exc.cause, AuditError):
            raise exc.cause from None
        raise


class _RayDataLost(Exception):
    """Ray Data's results do not add up to the files (rows missing): count the rest here."""


def _count_on_ray_data(count: _FileCounter, files: list[Path], readers: list[_Reader], counted: _Counts,
                       spec: DatasetSpec, sets: Sequence[AttributeSet], max_groups: int,
                       progress: Callable[[int], None] | None) -> int:
    """Count Parquet ``files`` with Ray Data into ``counted``; returns how many files (from the
    first) were counted, all of them unless Ray itself failed (the caller counts the rest here,
    and the provenance says why).

    The workers read the files and count each block's rows of a file (:meth:`_FileCounter.block`);
    the counts come back in file and row order (:func:`audit.execution.map_parquet`) and add up
    here to each file's counts, which merge into ``counted`` as a file's own counts would: score
    sums are exact integers, labels take ids by first row, so the tables, and the checks across
    files, are those of the local path bit for bit. Only counts travel and the driver holds one
    file's counts at a time, not rows.

    A bad value found on a worker is said as the local path says it: this process re-counts that
    file (:class:`_FileCounter`), which raises the same error with its 1-based row in that file,
    its column and value, and the checks of one file come before those across files, as they do
    locally.
    """
    from itertools import groupby

    from audit import execution
    from audit.errors import AuditError

    def recount(i: int) -> None:  # raises the local error of file i
        count(files[i])
        raise _RayDataLost(f"the workers found a bad value in {readers[i].where} that this process did not")

    def blocks() -> Any:  # consecutive files reading the same columns of the same types share one read
        # (one read is one schema: Ray Data cannot merge e.g. a string column with a dictionary one)
        needs = [tuple((r.raw[c], str(r.kinds[c])) for c in count.columns if c in r.names) for r in readers]
        for cols, run in groupby(range(len(files)), key=needs.__getitem__):
            run = list(run)
            for i, rows, piece in execution.map_parquet(count.block, [str(files[j]) for j in run],
                                                        columns=[c for c, _ in cols]):
                yield run[i], rows, piece

    merged, part = 0, None  # files[:merged] are in counted; part: the counts so far of files[merged]

    def close(upto: int) -> None:  # files[merged] is complete; files up to ``upto`` have no rows
        nonlocal merged, part
        if part is not None:
            if part.n_rows != readers[merged].num_rows:
                raise _RayDataLost(f"Ray Data returned {part.n_rows:,} of the {readers[merged].num_rows:,} "
                                   f"rows of {readers[merged].where}")
            counted.merge(part, spec, sets, max_groups)
            merged, part = merged + 1, None
        empty = next((j for j in range(merged, upto) if readers[j].num_rows), None)
        if empty is not None:
            raise _RayDataLost(f"Ray Data returned no rows of {readers[empty].where}")
        merged = upto

    try:
        for i, _, piece in blocks():
            if part is None or i != merged:
                close(i)
                part = count._new(readers[i].where)
            if piece is None:
                recount(i)
            piece.shift(part.n_rows)
            try:
                part.merge(piece, spec, sets, max_groups)
            except AuditError:
                recount(i)
            if progress is not None:
                progress(counted.n_rows + part.n_rows)
        close(len(files))
    except AuditError:
        raise
    except Exception as exc:  # Ray failed (a task or worker lost for good, rows missing)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        execution.active().ran_locally.append(
            f"reading the data with Ray Data ({type(exc).__name__}: {first}); files {merged + 1:,} to "
            f"{len(files):,} of {len(files):,} were counted on the driver")
    return merged


class _Counts:
    """The counts of some files: their labels (ids in the order first seen) and each attribute
    set's table. One file's (:class:`_FileCounter`) merge into the run's in file order."""

    def __init__(self, sets: Sequence[AttributeSet], n_bins: int, where: str = "") -> None:
        self.where = where
        self.target, self.preds = _Labels(), _Labels()
        self.attrs: dict[str, _Labels] = {}
        self.counters = {st.columns: _Counter(n_bins) for st in sets}
        self.scored: bool | None = None
        self.only_01 = True  # scores that are all exactly 0 or 1 are labels, as in memory
        self.n_rows = 0
        # each prediction label: [file, its first row there (from 1), rows], to name bad values
        self.pred_seen: dict[str, list[Any]] = {}

    def shift(self, rows: int) -> None:
        """These are the counts of a file's rows after its first ``rows``: renumber them."""
        for seen in self.pred_seen.values():
            seen[1] += rows

    def merge(self, part: _Counts, spec: DatasetSpec, sets: Sequence[AttributeSet], max_groups: int) -> None:
        """Add ``part``'s counts, its label and group ids mapped to these by their text; the
        checks that span files (two kinds of predictions, a binary target with a third label,
        too many groups) name the file that broke them."""
        if part.n_rows == 0:
            return
        if self.scored is not None and part.scored != self.scored:
            raise DataValidationError(
                f"The predictions column {spec.predictions!r} holds scores (numbers with decimals) in "
                f"one file and labels in {part.where}: every file must write them the same way.")
        self.scored = part.scored
        self.only_01 = self.only_01 and part.only_01
        y_map = self.target.add(part.target)
        if spec.task == "binary" and len(self.target.ids) > 2:
            raise DataValidationError(
                f"The target column {spec.target!r} in {part.where} has {len(self.target.ids)} distinct "
                f"values ({_show(self.target.labels)}) but the task is binary. Set task = \"multiclass\" "
                "or map the labels to two values.")
        d_map = np.arange(2) if part.scored else self.preds.add(part.preds)
        for label, (where, row, rows) in part.pred_seen.items():
            self.pred_seen.setdefault(label, [where, row, 0])[2] += rows
        a_maps = {}
        for c in spec.sensitive:
            a_maps[c] = self.attrs.setdefault(c, _Labels()).add(part.attrs[c])
            if self.attrs[c].clash():  # one file with missing cells, another with "missing"
                raise missing_group_clash(c, part.where)
            _check_attribute_groups(c, self.attrs[c], max_groups, part.where)
        for st in sets:
            mine, theirs = self.counters[st.columns], part.counters[st.columns]
            g_map = np.array([mine.groups.setdefault(tuple(int(a_maps[c][v]) for c, v in zip(st.columns, combo,
                                                                                           strict=True)),
                                                     len(mine.groups)) for combo in theirs.groups], dtype=np.int64)
            if mine.stopped:
                continue
            if theirs.stopped or len(mine.groups) > max_groups:
                _check_intersection_groups(st, max_groups, part.where)
                mine.stop()
                continue
            G, Y, D, B = theirs.hist.shape
            if G == 0:
                continue
            mine.grow((len(mine.groups), len(self.target.ids), 2 if part.scored else len(self.preds.ids), B))
            # distinct ids map to distinct ids: a plain fancy-index add is exact
            mine.hist[np.ix_(g_map[:G], y_map[:Y], d_map[:D])] += theirs.hist
            if part.scored:
                mine.ssum[g_map[:G]] += theirs.ssum[:G]
        self.n_rows += part.n_rows


def _check_attribute_groups(column: str, labels: _Labels, max_groups: int, where: str) -> None:
    if len(labels.ids) > max_groups:
        raise InvalidConfigError(
            f"The sensitive column {column!r} has more than {max_groups} distinct values (more than "
            f"max_groups = {max_groups}) in {where}; group it into fewer bins (e.g. age "
            "ranges such as 18-25, 26-40, ...) in the data before the audit, or raise "
            "[methods.fairness] max_groups.")


def _check_intersection_groups(st: AttributeSet, max_groups: int, where: str) -> None:
    if st.named:
        raise InvalidConfigError(
            f"The fairness intersection {st.name or ' × '.join(st.columns)!r} named in [methods.fairness] has more "
            f"than {max_groups} groups in {where}, more than max_groups = "
            f"{max_groups}. Remove it, bin its attributes into fewer groups, or raise "
            "[methods.fairness] max_groups.")


class _FileCounter:
    """Counts one file in batches: a chunk of :func:`audit.execution.map` (picklable: the
    progress callback travels only when it runs in this process); with Ray Data, a block's rows
    of one file (:meth:`block`, on the worker that read them)."""

    def __init__(self, root: Path, columns: list[str], spec: DatasetSpec, threshold: float,
                 sets: Sequence[AttributeSet], max_groups: int, n_bins: int, batch_rows: int,
                 progress: Callable[[int], None] | None) -> None:
        self.root, self.columns, self.spec, self.threshold = root, columns, spec, threshold
        self.sets, self.max_groups, self.n_bins, self.batch_rows = list(sets), max_groups, n_bins, batch_rows
        self.progress, self.before = progress, 0

    def _new(self, where: str) -> _Counts:
        out = _Counts(self.sets, self.n_bins, where)
        out.attrs = {c: _Labels() for c in self.spec.sensitive}
        return out

    def __call__(self, file: Path) -> _Counts:
        reader = _Reader(file, self.root, self.columns, self.spec, self.batch_rows)
        out = self._new(reader.where)
        for batch in reader.batches():
            self._add(out, batch, reader.where, reader.partition)
            if self.progress is not None:
                self.progress(self.before + out.n_rows)
        return out

    def block(self, rows: Any, path: str) -> _Counts:
        """The counts of ``rows`` (a ``pyarrow.Table``: a Ray Data block's rows of the file at
        ``path``, without its partition columns), as if they were a file of their own: their
        rows are numbered from 1 (the caller shifts them), batches of at most ``batch_rows``."""
        file = Path(path)
        where, partition = _where(file, self.root), _partition_values(file, self.root, self.spec.na_values)
        out = self._new(where)
        for start in range(0, rows.num_rows, self.batch_rows):
            self._add(out, rows.slice(start, self.batch_rows), where, partition)
        return out

    def _add(self, out: _Counts, batch: Any, where: str, partition: Mapping[str, str | None]) -> None:
        """Add a batch of rows (the next ones of ``out``'s file, from row ``out.n_rows``)."""
        from audit.core.adapter import PROBA_TOLERANCE

        spec, sets, n_bins, max_groups, threshold = self.spec, self.sets, self.n_bins, self.max_groups, self.threshold
        target, preds, counters, attrs = out.target, out.preds, out.counters, out.attrs
        n, offset = batch.num_rows, out.n_rows
        if n == 0:
            return
        markers = missing_text(spec.na_values)
        cols = {name.strip(): _text_missing(_storage(batch.column(name)), markers)  # names as in memory
                for name in batch.schema.names}

        def rows_of(mask: np.ndarray, what: str, fix: str) -> None:
            idx = np.flatnonzero(mask)
            raise DataValidationError(
                f"{what} has missing values in {_file_rows(idx, offset, where)}. {fix}")

        def column(name: str) -> Any:
            if name in cols:
                return cols[name]
            import pyarrow as pa

            if partition[name] is None:  # a missing value (Hive's null folder): every row misses it
                return pa.nulls(n, pa.string())
            return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)),
                                                  pa.array([partition[name]], pa.string()))

        y = target.encode(column(spec.target), on_missing=lambda m: rows_of(
            m, f"The target column {spec.target!r}", "Drop those rows: an outcome is needed to judge the model."))
        if spec.task == "binary" and len(target.ids) > 2:
            raise DataValidationError(
                f"The target column {spec.target!r} in {where} has {len(target.ids)} distinct "
                f"values ({_show(target.labels)}) but the task is binary. Set task = \"multiclass\" "
                "or map the labels to two values.")
        raw = column(spec.predictions)
        import pyarrow as pa

        is_score = spec.task == "binary" and _is_scores(raw.type)
        if out.scored is not None and out.scored != is_score:
            raise DataValidationError(
                f"The predictions column {spec.predictions!r} holds scores (numbers with decimals) in "
                f"one file and labels in {where}: every file must write them the same way.")
        out.scored = is_score
        b = limbs = None
        if is_score:
            if pa.types.is_decimal(raw.type):  # via its exact text: the nearest float, as float(Decimal) in memory
                import pyarrow.compute as pc

                raw = pc.cast(pc.cast(raw, pa.string()), pa.float64())
            s = raw.to_numpy(zero_copy_only=False).astype(float, copy=False)
            bad = ~np.isfinite(s)
            if bad.any():
                rows_of(bad, f"The predictions column {spec.predictions!r}",
                        "Every audited row needs a score in [0, 1].")
            outside = (s < -PROBA_TOLERANCE) | (s > 1 + PROBA_TOLERANCE)
            if outside.any():
                idx = np.flatnonzero(outside)
                raise DataValidationError(
                    f"The predictions column {spec.predictions!r} has a score outside [0, 1] "
                    f"({float(s[idx[0]])}) in {_file_rows(idx, offset, where)}. A binary "
                    "predictions column holds the target's labels or scores in [0, 1] (probabilities "
                    "of the positive label).")
            s = np.clip(s, 0.0, 1.0)
            out.only_01 = out.only_01 and bool(np.all((s == 0) | (s == 1)))
            d = (s >= threshold).astype(np.int64)
            b = score_bin(s, n_bins)
            limbs = score_limbs(s)
        else:
            d = preds.encode(raw, on_missing=lambda m: rows_of(
                m, f"The predictions column {spec.predictions!r}", "Every audited row needs a prediction."))
            ids, first, rows = np.unique(d, return_index=True, return_counts=True)
            for k, i, r in zip(ids.tolist(), first.tolist(), rows.tolist(), strict=True):
                out.pred_seen.setdefault(preds.labels[k], [where, offset + i + 1, 0])[2] += r
        codes = {}
        for c in spec.sensitive:
            codes[c] = attrs[c].encode(
                column(c), missing=MISSING_GROUP if spec.missing_sensitive == "group" else None,
                on_missing=lambda m, _c=c: rows_of(
                    m, f"The sensitive column {_c!r}",
                    "Fill them or drop those rows, or set missing_sensitive = \"group\" in [data] to "
                    "audit them as an explicit \"missing\" group."))
            if attrs[c].clash():
                raise missing_group_clash(c, where)
            _check_attribute_groups(c, attrs[c], max_groups, where)
        Y, D, B = len(target.ids), 2 if is_score else len(preds.ids), max(n_bins, 1) if is_score else 1
        cell = (y * D + d) * B + (b if b is not None else 0)
        for st in sets:
            counter = counters[st.columns]
            parts, sizes = [codes[c] for c in st.columns], [len(attrs[c].ids) for c in st.columns]
            if counter.stopped:
                counter.codes(parts, sizes)  # keep counting its groups only
                continue
            g = counter.codes(parts, sizes)
            if len(counter.groups) > max_groups:
                _check_intersection_groups(st, max_groups, where)
                counter.stop()
                continue
            counter.add(g, cell, (Y, D, B), b, limbs)
        out.n_rows += n


def _text_missing(column: Any, markers: frozenset[str]) -> Any:
    """A column with its text cells that are missing as the in-memory reader reads them, in CSV,
    Parquet and Ray Data blocks alike (:func:`audit.core.dataset.missing_text`): blank once
    stripped, or one of ``[data] na_values``, as null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        return pa.chunked_array([_text_missing(c, markers) for c in column.chunks], type=column.type)

    def is_text(t: Any) -> bool:
        return bool(pa.types.is_string(t) or pa.types.is_large_string(t))

    def marked(text: Any) -> Any:
        return pc.fill_null(pc.is_in(pc.utf8_trim_whitespace(text), value_set=pa.array(sorted(markers))), False)

    if is_text(column.type):
        return pc.if_else(marked(column), pa.scalar(None, column.type), column)
    if pa.types.is_dictionary(column.type) and is_text(column.type.value_type):
        drop = pc.take(marked(column.dictionary), column.indices)  # a row whose value is a marker
        if pc.any(drop).as_py():
            return pa.DictionaryArray.from_arrays(
                pc.if_else(drop, pa.scalar(None, column.indices.type), column.indices), column.dictionary)
    return column


def _is_scores(t: Any) -> bool:
    """Numbers with decimals (floats, or decimals as a database writes them): a binary task's scores."""
    import pyarrow as pa

    return bool(pa.types.is_floating(t) or pa.types.is_decimal(t))


def _plain_type(t: Any) -> bool:
    """Text, numbers or booleans: values a label or a score can be read from."""
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
                or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t))


def _storage(column: Any) -> Any:
    """A column of an extension type as its storage (checked plain by the reader)."""
    import pyarrow as pa

    if not isinstance(column.type, pa.BaseExtensionType):
        return column
    if isinstance(column, pa.ChunkedArray):
        return pa.chunked_array([chunk.storage for chunk in column.chunks], type=column.type.storage_type)
    return column.storage


def _file_rows(idx: np.ndarray, offset: int, where: str) -> str:
    """Rows ``idx`` of a batch that starts at data row ``offset`` of file ``where``, as a user
    counts them: from 1, the header not counted (data row 1 is a CSV's second line).

    Examples
    --------
    >>> _file_rows(np.array([4, 9]), 1000, "'part-0.parquet'")
    "row 1,005 of 'part-0.parquet' (and 1 more in the same batch of rows; rows counted from 1, the header not counted)"
    """
    more = f" (and {idx.size - 1:,} more in the same batch of rows; " if idx.size > 1 else " ("
    return f"row {int(idx[0]) + offset + 1:,} of {where}{more}{ROWS_COUNTED})"


def _scores_are_labels(only_01: bool, target: _Labels) -> bool:
    """A float column of 0.0 / 1.0 with a 0/1 target is read as labels in memory: the same here."""
    return only_01 and set(target.ids) <= {"0", "1"}


def _check_same_kinds(readers: list[_Reader], spec: DatasetSpec) -> None:
    """Every file must give the predictions the same kind (scores or labels)."""
    import pyarrow as pa

    kinds = {}
    for r in readers:
        t = r.kinds.get(spec.predictions)
        if t is not None:
            kinds.setdefault(_is_scores(t), r.where)
    if len(kinds) > 1:
        raise DataValidationError(
            f"The predictions column {spec.predictions!r} is a column of numbers with decimals (scores) in "
            f"{kinds[True]} but of {'labels'} in {kinds[False]}: the files of the folder have different "
            "schemas. Write the column the same way in every file.")


def _finish(root: Path, files: list[Path], spec: DatasetSpec, sets: Sequence[AttributeSet],
            counters: dict[tuple[str, ...], _Counter], target: _Labels, preds: _Labels, attrs: dict[str, _Labels],
            n_rows: int, scored: bool, as_labels: bool, n_bins: int, *,
            pred_seen: Mapping[str, Sequence[Any]]) -> StreamedTables:
    """The tables with outcome and decision ids turned into class indices and groups sorted;
    ``scored``: the predictions were scores (decision ids 0/1), ``as_labels``: scores that were
    all 0 or 1 with a 0/1 target, which the in-memory path reads as labels (no histogram)."""
    where = repr(root.name)
    # the target's classes by the in-memory rules, from its distinct labels
    y_code, classes = _encode_target(pd.Series(target.labels, dtype=object), spec, None, where)
    if classes is None:  # a regression target: refused before reading, said again here
        raise DataValidationError(f"The data {where} is read into count tables of classes; a regression "
                                  "target needs the rows: point [data] path at one CSV or Parquet file.")
    K = len(classes)
    if scored:
        d_code = np.array([0, 1])
    else:
        # labels that are not the target's: named with their file, first row and count (checking
        # the list of distinct labels would count and number those, not the rows)
        bad = [label for label in preds.labels if label not in classes]
        if bad:
            seen = [(label, *pred_seen[label]) for label in bad if label in pred_seen]
            shown = "; ".join(f"{label!r} in {rows:,} row(s), first at row {row:,} of {file}"
                              for label, file, row, rows in seen[:5])
            raise DataValidationError(
                f"The predictions column {spec.predictions!r} holds values that are not the target's classes "
                f"{_show(classes)}: {shown}{' …' if len(seen) > 5 else ''} (rows counted from 1 within each "
                "file, the header not counted). Write the predictions as the target's labels, or as scores in "
                "[0, 1] (numbers with decimals).")
        labels = pd.Series(preds.labels, dtype=object)
        d_code = _precomputed(labels, spec, classes, where)
        if d_code.dtype.kind != "i":
            raise DataValidationError(
                f"The predictions column {spec.predictions!r} in {where} holds labels "
                f"{_show(preds.labels)} that are not the target's classes {_show(classes)}. Write the "
                "predictions as the target's labels, or as scores in [0, 1] (numbers with decimals).")
    tables: dict[tuple[str, ...], GroupTable] = {}
    too_many: dict[tuple[str, ...], int] = {}
    positives = None
    for st in sets:
        c = counters[st.columns]
        if c.stopped:
            too_many[st.columns] = len(c.groups)
            continue
        names = [GROUP_SEP.join(attrs[col].labels[i] for col, i in zip(st.columns, combo, strict=True))
                 for combo in c.groups]
        order = sorted(range(len(names)), key=lambda i: names[i])
        hist = c.hist[order]
        # outcome and decision ids -> class indices
        G = hist.shape[0]
        out = np.zeros((G, K, K if not scored else 2, hist.shape[3]), dtype=np.int64)
        for yi in range(hist.shape[1]):
            for di in range(hist.shape[2]):
                out[:, y_code[yi], d_code[di]] += hist[:, yi, di]
        levels = [names[i] for i in order]
        if scored and not as_labels:
            table = GroupTable.from_histogram(levels, out, limb_sums_to_float(c.ssum[order]))
        else:
            table = GroupTable(tuple(levels), out.sum(axis=-1).reshape(G, K * K))
        tables[st.columns] = table
        if positives is None and spec.task == "binary":
            positives = int(table.cells[:, 2:].sum())
    return StreamedTables(
        source=root.name, files=tuple(str(f) for f in files), n_rows=n_rows, classes=tuple(classes),
        tables=tables, too_many=too_many, has_scores=scored and not as_labels,
        positive_rate=None if positives is None else positives / n_rows,
        n_bins=n_bins if scored and not as_labels else 0)


@dataclass(frozen=True, eq=False)
class StreamedData(AuditData):
    """The audited data of a streamed audit: its count tables, not its rows.

    Methods that need rows skip it (:attr:`audit.core.method.AuditMethod.counts_only`); the
    fairness method reads :attr:`tables`. ``sensitive`` lists each attribute's groups (for the
    report's checks of user text), not one value per row.
    """

    streamed: StreamedTables = field(kw_only=True)

    @property
    def n_rows(self) -> int:
        return self.streamed.n_rows

    @property
    def positive_rate(self) -> float | None:
        return self.streamed.positive_rate

    @classmethod
    def build(cls, spec: DatasetSpec, streamed: StreamedTables) -> StreamedData:
        levels = {c: list(streamed.tables[(c,)].levels) if (c,) in streamed.tables else [] for c in spec.sensitive}
        width = max((len(v) for v in levels.values()), default=0)
        sensitive = pd.DataFrame({c: (v + v[-1:] * (width - len(v))) if v else [None] * width
                                  for c, v in levels.items()})
        frame = pd.DataFrame(columns=[c for c in (spec.target, spec.predictions, *spec.sensitive) if c])
        return cls(spec, Encoding(()), frame, np.empty((0, 0), dtype=np.float32),
                   np.empty(0, dtype=np.int64), streamed.classes, sensitive, None, streamed.source,
                   streamed=streamed)


__all__ = ["AttributeSet", "BATCH_ROWS", "NEEDS_ROWS", "StreamedData", "StreamedTables", "data_files", "left_out_files",
           "stream_tables"]
