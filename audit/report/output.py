"""Where a report goes: checks before the audit, one writer at a time, a durable swap.

A report folder is replaced as a whole, so this module decides, before any method runs, whether
the target may be written at all:

- It may be replaced (``overwrite=True``) only when it is recognisably an audit-suite report:
  it holds nothing but ``report.html``, ``report.pdf``, ``results.json``, ``model_card.md``,
  ``predictions.parquet`` and the ``.audit-report`` marker, and has the marker (or, for reports
  written before the marker existed, a
  ``results.json`` of this tool's schema). An empty folder holds nothing to lose.
- It may never be (or lie above) an input of the run, a folder holding an input, the current
  folder, the home folder or one of their ancestors, a symbolic link or a file.
- Its parent must be creatable and writable, on a writable file system with some free space,
  and its name short enough for the hidden work folders made beside it.

One writer at a time: :func:`reserve_output` holds an exclusive ``flock`` on ``.NAME.lock`` beside
the target from the preflight check to the final rename, so a second run aimed at the same folder
fails at once with exit 2 instead of silently replacing the first run's report. The kernel drops
the lock when its process dies, so a lock file left by a killed run never blocks the next one.
The lock file is created whole, with its content, by ``link`` (never through a symbolic link,
never over an existing file) and holds ``{"schema": "audit-suite/lock@1", "pid", "token"}``. An
existing ``.NAME.lock`` is opened with ``O_NOFOLLOW`` and used only if it is a regular file in
that form; a link, a folder or any other file there is refused (exit 2), never truncated or
deleted. On release the lock file is unlinked only if it is still the file this run holds.

Durability: files are written and fsynced into ``.NAME.partial-PID-TOKEN``, the ``.audit-report``
marker last (so a work folder with the marker is a complete report); the folder is fsynced and
renamed into place with ``renameat2(RENAME_NOREPLACE)``. An old report is first renamed aside to
``.NAME.old-PID-TOKEN`` and deleted only after the new one is in place. TOKEN is a random token
the run records in its lock file before it creates either folder.

Recovery touches only what it can prove is its own: the lock file left by a killed run names that
run's PID and TOKEN, and only the two folders with exactly those names are candidates, and only if
they hold nothing but report files (regular files, no links) and are not, do not hold and do not
lie inside an input of the run. A run killed between the two renames leaves the old report aside
and the complete new one in its work folder: the next run (under the lock, after the input checks,
before any work) moves the complete new report into place; had the new one not been complete, it
moves the old one back; the work folder left by a run killed while writing is deleted. Any other
folder, whatever its name, is never renamed or deleted.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from audit.errors import ReportRenderError

MARKER = ".audit-report"
MARKER_SCHEMA = "audit-suite/report-folder@1"
REPORT_FILES = frozenset({"report.html", "report.pdf", "results.json", "model_card.md", "predictions.parquet",
                          MARKER})
RESULTS_SCHEMA_PREFIX = b'{\n  "schema": "audit-suite/results@'  # how model.AuditReport.json_bytes starts
LOCK_SCHEMA = "audit-suite/lock@1"
_TOKEN_BYTES = 8  # 16 hex digits
# Bytes the hidden siblings add to the folder's name: ".NAME.partial-<pid>-<16 hex>".
_SIBLING_ROOM = len("..partial--") + 10 + 2 * _TOKEN_BYTES
MIN_FREE_BYTES = 4 << 20  # a report is rarely below 100 kB; refuse up front when less than this is left

_held: dict[str, list] = {}  # target -> [owner thread id, depth, token] for the locks this process holds
_held_guard = threading.Lock()


def _cause(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0)
    return f"{exc.strerror or exc}{f' ({name})' if name else ''}"


def _fail(out: str | os.PathLike[str], why: str, fix: str) -> ReportRenderError:
    return ReportRenderError(f"The output folder {str(out)!r} {why}. {fix}")


def locate(out_dir: str | os.PathLike[str]) -> Path:
    """The absolute location ``out_dir`` names: its parent resolved, its own name kept.

    The name itself is not resolved, so a symbolic link at the target is seen as a link, not as
    the folder it points to; ``.`` and ``..`` are resolved.
    """
    p = Path(out_dir)
    if p.name in ("", ".", ".."):
        return Path(os.path.realpath(p))
    return Path(os.path.realpath(p.parent)) / p.name


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _input_conflict(target: Path, inputs: Iterable[tuple[str, str]]) -> str | None:
    for role, raw in inputs:
        if not raw:
            continue
        path = Path(os.path.realpath(raw))
        if target == path:
            return f"is the run's {role} file {raw!r}"
        if target in path.parents:
            return f"holds the run's {role} {raw!r}"
        if os.path.isdir(path) and path in target.parents:
            return f"lies inside the run's {role} folder {raw!r}"
    return None


def _place_conflict(target: Path) -> str | None:
    for what, where in (("current folder", os.curdir), ("home folder", os.path.expanduser("~"))):
        try:
            where = Path(os.path.realpath(where))
        except OSError:  # the current folder was deleted: nothing there to protect
            continue
        if target == where:
            return f"is the {what}"
        if target in where.parents:
            return f"holds the {what} {str(where)!r}"
    return None


def recognised_report(folder: Path) -> str | None:
    """None when ``folder`` holds exactly a report of this tool (or nothing), else why not."""
    try:
        entries = sorted(os.listdir(folder))
    except OSError as exc:
        return f"cannot be listed ({_cause(exc)})"
    foreign = [e for e in entries
               if e not in REPORT_FILES or os.path.islink(folder / e) or not (folder / e).is_file()]
    if foreign:
        shown = ", ".join(repr(e) for e in foreign[:3]) + (f" and {len(foreign) - 3} more"
                                                           if len(foreign) > 3 else "")
        entries_word = "entry" if len(foreign) == 1 else "entries"
        return f"holds {len(foreign)} {entries_word} that audit-suite did not write ({shown})"
    if not entries or _has_marker(folder):
        return None
    try:
        with open(folder / "results.json", "rb") as fh:
            if fh.read(len(RESULTS_SCHEMA_PREFIX)) == RESULTS_SCHEMA_PREFIX:
                return None  # a report written before the marker existed
    except OSError:
        pass
    return f"is not recognisably an audit-suite report (it has no {MARKER} marker)"


def _has_marker(folder: Path) -> bool:
    try:
        with open(folder / MARKER, "rb") as fh:
            doc = json.loads(fh.read(4096))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("schema") == MARKER_SCHEMA


def _nearest_folder(target: Path, refuse: Callable[[str, str], Exception]) -> tuple[Path, list[Path]]:
    """The nearest existing ancestor of ``target`` (which must be a writable folder) and the
    folders to create below it, outermost last; ``refuse(why, fix)`` builds the error."""
    existing = target.parent
    missing: list[Path] = []
    while not os.path.lexists(existing):
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        raise refuse(f"cannot be created: {str(existing)!r} is a file, not a folder",
                     "Choose a path whose parent is a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise refuse(f"cannot be created: {str(existing)!r} is not writable",
                     "Choose a folder you can write to.")
    return existing, missing


def _check_location(out: str | os.PathLike[str], target: Path) -> tuple[Path, list[Path]]:
    """Name lengths and the parent: returns the nearest existing ancestor and the folders to create."""
    existing, missing = _nearest_folder(target, lambda why, fix: _fail(out, why, fix))
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    limit = name_max - _SIBLING_ROOM
    if len(os.fsencode(target.name)) > limit:
        raise _fail(out, f"has a name of {len(os.fsencode(target.name))} bytes; the file system "
                         f"allows {name_max}, of which audit-suite needs {_SIBLING_ROOM} for the hidden "
                         f"work folders beside it", f"Use a folder name of at most {limit} bytes.")
    for folder in missing:
        if len(os.fsencode(folder.name)) > name_max:
            raise _fail(out, f"cannot be created: the folder name {folder.name[:40]!r}... is longer than "
                             f"{name_max} bytes", "Use shorter folder names.")
    if len(os.fsencode(str(target))) + _SIBLING_ROOM + 16 > path_max:
        raise _fail(out, f"has a path longer than the file system allows ({path_max} bytes)",
                    "Choose a shorter path.")
    try:
        st = _statvfs(existing)
    except OSError:
        return existing, missing[::-1]
    if st.f_flag & os.ST_RDONLY:
        raise _fail(out, f"cannot be created: {str(existing)!r} is on a read-only file system",
                    "Choose a folder on a writable disk.")
    free = st.f_bavail * st.f_frsize
    if free < MIN_FREE_BYTES:
        raise _fail(out, f"cannot be written: only {free / 2**20:.1f} MiB are free on the disk "
                         f"holding {str(existing)!r}",
                    f"Free at least {MIN_FREE_BYTES >> 20} MiB or choose another disk.")
    return existing, missing[::-1]


def _statvfs(path: Path) -> os.statvfs_result:
    return os.statvfs(path)


def check_target(out: str | os.PathLike[str], target: Path, *, overwrite: bool,
                 inputs: Iterable[tuple[str, str]]) -> None:
    """Raise unless ``target`` may receive a report now (with ``overwrite`` when it exists)."""
    inputs = list(inputs)
    conflict = _input_conflict(target, inputs) or _place_conflict(target)
    if conflict:
        raise _fail(out, conflict, "A report folder is replaced as a whole, so it must be a folder "
                                   "of its own: choose a new one with --out or [report] out.")
    if os.path.lexists(target):
        _check_replaceable(out, target, overwrite=overwrite)


def _check_replaceable(out: str | os.PathLike[str], target: Path, *, overwrite: bool) -> None:
    """The one "the folder exists" check, before the run and again at the final rename: raise
    unless the existing ``target`` is a report folder of audit-suite and ``overwrite`` is set."""
    if os.path.islink(target):
        why = "is a symbolic link"
    elif not target.is_dir():
        why = "is a file, not a folder"
    else:
        why = recognised_report(target)
    if why:
        raise _fail(out, f"{why}, so audit-suite will not replace it, even with --overwrite",
                    "Choose a new folder with --out, or move its contents away.")
    if not overwrite:
        raise _fail(out, "already exists", "Pass --overwrite to replace it, or choose another "
                                           "folder with --out.")


def _work_names(target: Path, pid: int, token: str) -> tuple[Path, Path]:
    """The work folder and the moved-aside folder of the run (``pid``, ``token``)."""
    return (target.with_name(f".{target.name}.partial-{pid}-{token}"),
            target.with_name(f".{target.name}.old-{pid}-{token}"))


def _only_report_files(folder: Path) -> bool:
    """True when ``folder`` is a real folder (not a link) holding only report files (regular
    files, no links), which is all a work folder or a moved-aside report of this tool holds."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        return all(e.name in REPORT_FILES and e.is_file(follow_symlinks=False)
                   for e in os.scandir(folder))
    except OSError:
        return False


def clean_stale(target: Path, previous: tuple[int, str] | None, *,
                inputs: Iterable[tuple[str, str]] = ()) -> None:
    """Finish or undo what a killed run (SIGKILL, power loss) left beside ``target``.

    Called with the target's lock held, after the input checks. ``previous`` is the (PID, TOKEN)
    that the lock file of a killed run named (None when the lock file was new): only
    ``.NAME.partial-PID-TOKEN`` and ``.NAME.old-PID-TOKEN`` are candidates, and each only when it
    holds nothing but report files and is not, does not hold and does not lie inside an input.
    With no report at the target, a moved-aside old report is replaced by the killed run's new
    one if that is complete (it holds the marker), else moved back; the work folder is deleted.
    Nothing else is renamed or deleted.
    """
    if previous is None:
        return
    inputs = list(inputs)
    partial, old = _work_names(target, *previous)
    ours = {p: _only_report_files(p) and _input_conflict(p, inputs) is None for p in (partial, old)}
    if ours[old] and not os.path.lexists(target):
        os.rename(partial if ours[partial] and _has_marker(partial) else old, target)
    for p in (partial, old):
        if ours[p] and os.path.lexists(p):
            shutil.rmtree(p)


def _lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def _lock_bytes(token: str) -> bytes:
    return (json.dumps({"schema": LOCK_SCHEMA, "pid": os.getpid(), "token": token}) + "\n").encode()


def _parse_lock(raw: bytes) -> tuple[int, str] | None:
    """(pid, token) of a lock file of this tool, else None."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not (isinstance(doc, dict) and doc.get("schema") == LOCK_SCHEMA
            and type(doc.get("pid")) is int and isinstance(doc.get("token"), str)
            and re.fullmatch(r"[0-9a-f]{%d}" % (2 * _TOKEN_BYTES), doc["token"])):
        return None
    return doc["pid"], doc["token"]


def _not_our_lock(out: str | os.PathLike[str], path: Path, what: str) -> ReportRenderError:
    return _fail(out, f"cannot be locked: {str(path)!r} {what}, not a lock file of audit-suite, and "
                      "audit-suite never writes through or deletes a file it did not create",
                 f"Move {str(path)!r} away, or choose another folder with --out.")


def _create_lock(path: Path, token: str) -> int | None:
    """Create ``path`` whole (content included) with ``link``, which never follows a link and
    never replaces anything; the open descriptor, or None when something is already there."""
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}-", dir=path.parent)
    try:
        os.write(fd, _lock_bytes(token))
        os.fsync(fd)  # a lock file is never seen empty, even after a power loss
        try:
            os.link(tmp, path, follow_symlinks=False)
        except FileExistsError:
            os.close(fd)
            return None
        return fd
    except BaseException:
        os.close(fd)
        raise
    finally:
        os.unlink(tmp)


def _acquire(out: str | os.PathLike[str], target: Path,
             token: str) -> tuple[int, tuple[int, str] | None] | None:
    """An exclusive flock on ``.NAME.lock``: (descriptor, the (pid, token) a killed run left in
    it, or None for a new lock file). None where the platform has no flock."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the no-replace rename is then the only guard
        return None
    path = _lock_path(target)
    while True:
        fd = _create_lock(path, token)
        created = fd is not None
        if fd is None:
            try:
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # released by its holder since: create it
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise _not_our_lock(out, path, "is a symbolic link") from None
                if exc.errno == errno.EISDIR:
                    raise _not_our_lock(out, path, "is a folder") from None
                raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _not_our_lock(out, path, "is not a regular file")
            previous = None if created else _parse_lock(os.pread(fd, 4096, 0))
            if not created and previous is None:
                raise _not_our_lock(out, path, "is a file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _parse_lock(os.pread(fd, 4096, 0))
                raise _fail(out, "is the output folder of another audit run that is still going"
                            + (f" (process {holder[0]})" if holder else ""),
                            "Wait for it to finish, or choose another folder with --out.") from None
        except BaseException:
            os.close(fd)
            raise
        # The previous holder unlinks the file on release: a lock on an unlinked file guards
        # nothing, so take it again on the file that is there now.
        if _is_held_file(path, fd):
            if not created:  # read again under the lock: the holder may have written since
                previous = _parse_lock(os.pread(fd, 4096, 0))
            return fd, previous
        os.close(fd)


def _is_held_file(path: Path, fd: int) -> bool:
    try:
        st, held = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _record_lock(fd: int, token: str) -> None:
    """Name this run in its own lock file (after the previous holder's leftovers are dealt with)."""
    data = _lock_bytes(token)
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _held_token(target: Path) -> str | None:
    with _held_guard:
        mine = _held.get(str(target))
        return mine[2] if mine is not None else None


@contextlib.contextmanager
def reserve_output(out_dir: str | os.PathLike[str], *, overwrite: bool,
                   inputs: Iterable[tuple[str, str]] = ()) -> Iterator[Path]:
    """Check ``out_dir`` and hold it for this run; yields its absolute location.

    Everything that can be known before the audit is checked here (see the module docstring),
    so a run that cannot write its report fails before any method runs, with exit 2. Missing
    parent folders are created, and removed again if the block fails. Reentrant within a thread
    (the CLI reserves before the audit, :func:`write_report` again when writing); a second
    process or thread aiming at the same folder gets a :class:`ReportRenderError`.

    Parameters
    ----------
    out_dir : path
        The report folder.
    overwrite : bool
        Whether an existing report folder of this tool may be replaced.
    inputs : iterable of (role, path)
        The run's input files; the target may not be, hold or lie inside any of them.

    Examples
    --------
    >>> import tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "r")
    >>> with reserve_output(out, overwrite=False) as target:
    ...     place_report(out, target, {"results.json": b"{}"}, overwrite=False)
    >>> sorted(os.listdir(out))
    ['.audit-report', 'results.json']
    """
    target = locate(out_dir)
    key = str(target)
    with _held_guard:
        mine = _held.get(key)
        if mine is not None and mine[0] != threading.get_ident():
            raise _fail(out_dir, "is the output folder of another audit run in this process that "
                                 "is still going",
                        "Wait for it to finish, or choose another folder with --out.")
        if mine is not None:
            mine[1] += 1
    if mine is not None:  # already held by this thread: check again, the folder may have changed
        try:
            check_target(out_dir, target, overwrite=overwrite, inputs=inputs)
            yield target
        finally:
            with _held_guard:
                _held[key][1] -= 1
        return

    inputs = list(inputs)
    check_target(out_dir, target, overwrite=overwrite, inputs=inputs)  # cheap refusals first
    _, missing = _check_location(out_dir, target)
    created: list[Path] = []
    fd = None
    token = secrets.token_hex(_TOKEN_BYTES)
    try:
        try:
            for folder in missing:
                os.mkdir(folder)
                created.append(folder)
            lock = _acquire(out_dir, target, token)
            if lock is not None:
                fd, previous = lock
                if previous is not None:
                    # A killed run's leftovers: checked against the inputs before anything moves.
                    clean_stale(target, previous, inputs=inputs)
                    _record_lock(fd, token)
        except OSError as exc:
            raise _fail(out_dir, f"cannot be prepared: {exc.filename or target}: {_cause(exc)}",
                        "Choose a folder on a writable disk with free space.") from None
        check_target(out_dir, target, overwrite=overwrite, inputs=inputs)  # under the lock
        with _held_guard:
            _held[key] = [threading.get_ident(), 1, token]
        try:
            yield target
        finally:
            with _held_guard:
                _held.pop(key, None)
    except BaseException:
        _release(target, fd)
        fd = None
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only if still empty
        raise
    finally:
        _release(target, fd)


def _release(target: Path, fd: int | None) -> None:
    if fd is None:
        return
    path = _lock_path(target)
    if _is_held_file(path, fd):  # only the file this run holds, never what replaced it
        with contextlib.suppress(OSError):
            os.unlink(path)  # while holding it: see _acquire
    os.close(fd)


def _write_durable(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.fchmod(fd, 0o644)  # readable like any document, whatever the umask of the work folder
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, failing with FileExistsError if ``dst`` exists (atomically on
    Linux via ``renameat2(RENAME_NOREPLACE)``; elsewhere a check, then ``os.rename``, which at
    worst replaces an empty folder)."""
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        fn = None
    if fn is not None:
        at_fdcwd, rename_noreplace_flag = -100, 1
        if fn(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), rename_noreplace_flag) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):  # else: the file system lacks the flag
            raise OSError(err, os.strerror(err), str(dst))
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


def place_report(out_dir: str | os.PathLike[str], target: Path, files: Mapping[str, bytes], *,
                 overwrite: bool) -> None:
    """Write ``files`` into a fresh folder beside ``target`` and swap it into place.

    Call inside :func:`reserve_output`. Any I/O error becomes a :class:`ReportRenderError` naming
    the path and the cause; the work folder is removed and a previous report is left as it was.
    """
    token = _held_token(target) or secrets.token_hex(_TOKEN_BYTES)  # recorded in the lock file
    tmp, _ = _work_names(target, os.getpid(), token)
    try:
        os.mkdir(tmp, 0o700)
    except OSError as exc:
        raise _late(out_dir, exc, target.parent) from None
    try:
        for name, data in files.items():
            _write_durable(tmp / name, data)
        marker = {"schema": MARKER_SCHEMA, "files": sorted(files)}
        _write_durable(tmp / MARKER, (json.dumps(marker) + "\n").encode())  # last: marks it complete
        os.chmod(tmp, 0o755)
        _fsync_dir(tmp)
        _swap_into_place(out_dir, tmp, target, overwrite=overwrite, token=token)
    except OSError as exc:
        raise _late(out_dir, exc, tmp) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a successful swap; a failure's leftovers


def _late(out_dir: str | os.PathLike[str], exc: OSError, where: Path) -> ReportRenderError:
    path = exc.filename or where
    return _fail(out_dir, f"could not be written ({path}: {_cause(exc)}); any previous report "
                          "there is unchanged", "Fix the cause (disk space, permissions) and run again.")


def _swap_into_place(out_dir: str | os.PathLike[str], new: Path, target: Path, *, overwrite: bool,
                     token: str) -> None:
    """Rename ``new`` to ``target``; an old ``target`` is renamed aside first and removed last."""
    if not os.path.lexists(target):
        try:
            rename_noreplace(new, target)
        except FileExistsError:
            raise _fail(out_dir, "appeared while the report was being written",
                        "Run again with another --out.") from None
        _synced(out_dir, target)
        return
    # created or changed since the preflight check by something that takes no lock
    _check_replaceable(out_dir, target, overwrite=overwrite)
    _, old = _work_names(target, os.getpid(), token)
    os.rename(target, old)
    try:
        rename_noreplace(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
    _synced(out_dir, target)


def _synced(out_dir: str | os.PathLike[str], target: Path) -> None:
    """fsync the folder holding the renamed report; the report is in place whatever happens."""
    try:
        _fsync_dir(target.parent)
    except OSError as exc:
        raise _fail(out_dir, f"was written, but the disk did not confirm it ({target.parent}: "
                             f"{_cause(exc)})", "Check the disk before relying on the report.") from None


# --- Single files (the gate's JUnit XML) -------------------------------------------------------

JUNIT_MAX_BYTES = 64 << 20  # far above any gate's JUnit file; a larger file is not one of ours
#: The suite names :func:`audit.gate.to_junit` is given: ``audit check`` writes ``audit-gate:<run>``,
#: ``audit compare`` ``audit-compare:<champion>-vs-<challenger>``. Either command replaces a file
#: of either kind (both are gate verdicts audit-suite wrote), never any other file.
JUNIT_SUITES = ("audit-gate", "audit-compare")


def is_our_junit(path: Path) -> bool:
    """True when ``path`` holds JUnit XML as :func:`audit.gate.to_junit` writes it for
    ``audit check`` or ``audit compare``: a ``<testsuites name="audit-gate...">`` or
    ``<testsuites name="audit-compare...">`` root (:data:`JUNIT_SUITES`) whose test cases all
    have classname ``audit.gate``, and no document type declaration (so no entity can expand)."""
    import xml.etree.ElementTree as ET

    try:
        with open(path, "rb") as fh:
            raw = fh.read(JUNIT_MAX_BYTES + 1)
    except OSError:
        return False
    if len(raw) > JUNIT_MAX_BYTES or b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        return False
    try:
        root = ET.fromstring(raw)
    except ET.ParseError:
        return False
    name = root.get("name", "")
    cases = root.findall("./testsuite/testcase")
    return (root.tag == "testsuites" and any(name == s or name.startswith(f"{s}:") for s in JUNIT_SUITES)
            and all(c.get("classname") == "audit.gate" for c in cases))


def check_output_file(path: str | os.PathLike[str], *, what: str,
                      inputs: Iterable[tuple[str, str]], ours: Callable[[Path], bool]) -> Path:
    """Raise unless ``path`` may receive ``what`` (a file this tool replaces whole); returns its
    absolute location. Refused: an input of the run, a symbolic link, a folder or anything that
    is not a regular file, an existing file for which ``ours`` is false, a parent that is a file
    or not writable. Call before the work, and again just before writing."""
    target = locate(path)

    def refuse(why: str, fix: str) -> ReportRenderError:
        return ReportRenderError(f"The {what} {str(path)!r} {why}. {fix}")

    for role, raw in inputs:
        if raw and target == Path(os.path.realpath(raw)):
            raise refuse(f"is the run's {role} file, which audit-suite never overwrites",
                         f"Choose another file name for the {what}.")
    if os.path.islink(target):
        raise refuse("is a symbolic link, which audit-suite never writes through",
                     "Give the path of the file itself, or another file name.")
    if os.path.lexists(target):
        if os.path.isdir(target):
            raise refuse("is a folder", "Give a file name inside it, such as gate.xml.")
        if not stat.S_ISREG(os.lstat(target).st_mode):
            raise refuse("is not a regular file", f"Choose another file name for the {what}.")
        if not ours(target):
            raise refuse(f"exists and is not a {what} written by audit-suite, so it is not replaced",
                         "Choose another file name, or move the file away.")
    _nearest_folder(target, refuse)
    return target


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably and atomically: a fresh temporary file beside it
    (``O_EXCL``, fsynced), renamed over ``path`` (a rename replaces a link that appeared since,
    never writes through it), then the folder fsynced. Missing parent folders are created.
    Readers see the old file or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}-{secrets.token_hex(_TOKEN_BYTES)}")
    try:
        _write_durable(tmp, data)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


__all__ = ["MARKER", "check_output_file", "is_our_junit", "write_file_atomic", "check_target", "clean_stale", "locate", "place_report", "recognised_report",
           "rename_noreplace", "reserve_output"]
