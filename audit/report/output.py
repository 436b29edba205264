"""Where a report goes: checks before the audit, one writer at a time, a durable swap.

A report folder is replaced as a whole, so this module decides, before any method runs, whether
the target may be written at all:

- It may be replaced (``overwrite=True``) only when it is recognisably an audit-suite report:
  it holds nothing but ``report.html``, ``report.pdf``, ``results.json`` and the ``.audit-report``
  marker, and has the marker (or, for reports written before the marker existed, a
  ``results.json`` of this tool's schema). An empty folder holds nothing to lose.
- It may never be (or lie above) an input of the run, a folder holding an input, the current
  folder, the home folder or one of their ancestors, a symbolic link or a file.
- Its parent must be creatable and writable, on a writable file system with some free space,
  and its name short enough for the hidden work folders made beside it.

One writer at a time: :func:`reserve_output` holds an exclusive ``flock`` on ``.NAME.lock`` beside
the target from the preflight check to the final rename, so a second run aimed at the same folder
fails at once with exit 2 instead of silently replacing the first run's report. The kernel drops
the lock when its process dies, so a lock file left by a killed run never blocks the next one.

Durability: files are written and fsynced into ``.NAME.partial-PID-*``, the ``.audit-report``
marker last (so a work folder with the marker is a complete report); the folder is fsynced and
renamed into place with ``renameat2(RENAME_NOREPLACE)``. An old report is first renamed aside to
``.NAME.old-PID`` and deleted only after the new one is in place. A run killed between those two
renames leaves the old report aside and the complete new one in its work folder: the next run
(under the lock, before any work) moves the complete new report into place; had the new one not
been complete, it moves the old one back. Other leftovers are deleted.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from audit.errors import ReportRenderError

MARKER = ".audit-report"
MARKER_SCHEMA = "audit-suite/report-folder@1"
REPORT_FILES = frozenset({"report.html", "report.pdf", "results.json", MARKER})
RESULTS_SCHEMA_PREFIX = b'{\n  "schema": "audit-suite/results@'  # how model.AuditReport.json_bytes starts
# Bytes the hidden siblings add to the folder's name: ".NAME.partial-<pid>-<8 random>".
_SIBLING_ROOM = len("..partial--") + 10 + 8
MIN_FREE_BYTES = 4 << 20  # a report is rarely below 100 kB; refuse up front when less than this is left

_held: dict[str, list[int]] = {}  # target -> [owner thread id, depth] for the locks this process holds
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


def _check_location(out: str | os.PathLike[str], target: Path) -> tuple[Path, list[Path]]:
    """Name lengths and the parent: returns the nearest existing ancestor and the folders to create."""
    existing = target.parent
    missing: list[Path] = []
    while not os.path.lexists(existing):
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        raise _fail(out, f"cannot be created: {str(existing)!r} is a file, not a folder",
                    "Choose an output folder whose parent is a folder.")
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
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _fail(out, f"cannot be created: {str(existing)!r} is not writable",
                    "Choose a folder you can write to.")
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
    if not os.path.lexists(target):
        return
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


_STALE = r"^\.{name}\.(partial|old)-(\d+)(?:-.*)?$"


def clean_stale(target: Path, *, locked: bool = True) -> None:
    """Finish or undo what a killed run (SIGKILL, power loss) left beside ``target``.

    Called with the target's lock held, so no live audit-suite run is writing this target and
    every leftover is stale. A ``.NAME.old-PID`` folder with no report at the target is a previous
    report moved aside by a run killed in the swap window: when that run's work folder is complete
    (it holds the marker), the new report is moved into place; otherwise the old one is moved back.
    Everything else is deleted. Without the lock (``locked=False``) only leftovers of dead
    processes are touched.
    """
    pattern = re.compile(_STALE.format(name=re.escape(target.name)))
    try:
        siblings = sorted(target.parent.iterdir())
    except OSError:
        return
    found = [(p, m.group(1), int(m.group(2))) for p in siblings
             if (m := pattern.match(p.name)) and p.is_dir() and not p.is_symlink()]
    if not locked:
        found = [f for f in found if not _pid_alive(f[2])]
    for old, kind, pid in found:
        if kind != "old" or os.path.lexists(target):
            continue
        done = [p for p, k, q in found if k == "partial" and q == pid and _has_marker(p)]
        os.rename(done[0] if done else old, target)
    for p, _, _ in found:
        if os.path.lexists(p):
            shutil.rmtree(p, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but belongs to someone else
    return True


def _lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def _acquire(out: str | os.PathLike[str], target: Path) -> int | None:
    """An exclusive flock on ``.NAME.lock``; None where the platform has no flock."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the no-replace rename is then the only guard
        return None
    path = _lock_path(target)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise _fail(out, "is the output folder of another audit run that is still going"
                        + (f" (process {holder})" if holder.isdigit() else ""),
                        "Wait for it to finish, or choose another folder with --out.") from None
        except BaseException:
            os.close(fd)
            raise
        # The previous holder unlinks the file on release: a lock on an unlinked file guards
        # nothing, so take it again on the file that is there now.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


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
    try:
        try:
            for folder in missing:
                os.mkdir(folder)
                created.append(folder)
            fd = _acquire(out_dir, target)
            clean_stale(target, locked=fd is not None)
        except OSError as exc:
            raise _fail(out_dir, f"cannot be prepared: {exc.filename or target}: {_cause(exc)}",
                        "Choose a folder on a writable disk with free space.") from None
        check_target(out_dir, target, overwrite=overwrite, inputs=inputs)  # under the lock
        with _held_guard:
            _held[key] = [threading.get_ident(), 1]
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
    with contextlib.suppress(OSError):
        os.unlink(_lock_path(target))  # while holding it: see _acquire
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
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=target.parent))
    except OSError as exc:
        raise _late(out_dir, exc, target.parent) from None
    try:
        for name, data in files.items():
            _write_durable(tmp / name, data)
        marker = {"schema": MARKER_SCHEMA, "files": sorted(files)}
        _write_durable(tmp / MARKER, (json.dumps(marker) + "\n").encode())  # last: marks it complete
        os.chmod(tmp, 0o755)
        _fsync_dir(tmp)
        _swap_into_place(out_dir, tmp, target, overwrite=overwrite)
    except OSError as exc:
        raise _late(out_dir, exc, tmp) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a successful swap; a failure's leftovers


def _late(out_dir: str | os.PathLike[str], exc: OSError, where: Path) -> ReportRenderError:
    path = exc.filename or where
    return _fail(out_dir, f"could not be written ({path}: {_cause(exc)}); any previous report "
                          "there is unchanged", "Fix the cause (disk space, permissions) and run again.")


def _swap_into_place(out_dir: str | os.PathLike[str], new: Path, target: Path, *, overwrite: bool) -> None:
    """Rename ``new`` to ``target``; an old ``target`` is renamed aside first and removed last."""
    if not os.path.lexists(target):
        try:
            rename_noreplace(new, target)
        except FileExistsError:
            raise _fail(out_dir, "appeared while the report was being written",
                        "Run again with another --out.") from None
        _synced(out_dir, target)
        return
    if not overwrite:  # created since the preflight check by something that takes no lock
        raise _fail(out_dir, "already exists", "Pass --overwrite to replace it, or choose "
                                               "another folder with --out.")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
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


__all__ = ["MARKER", "check_target", "clean_stale", "locate", "place_report", "recognised_report",
           "rename_noreplace", "reserve_output"]
