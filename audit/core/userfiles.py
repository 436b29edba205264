"""Reading the user's small text files (audit.toml, encoding/architecture/training JSON).

One helper per format, so every such file gets the same checks and the same one-line errors:

- the path must be a regular file: a FIFO or a device (``/dev/zero``, a symlink to one) is
  refused from its metadata and never opened, since reading it can hang or never end;
- the text must be UTF-8 (a byte-order mark is allowed);
- the document must parse, and nest arrays/objects/tables at most :data:`MAX_NESTING` levels
  deep: the parsers recurse once per level, so ``[[[...]]]`` 100,000 deep would otherwise end
  in a ``RecursionError`` traceback, and a document that parses just under the interpreter's
  limit would fail later in whatever walks it.

Examples
--------
>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "a.json"
>>> _ = p.write_text('{"a": [1, 2]}')
>>> load_json(p, "encoding file")  # doctest: +ELLIPSIS
{'a': [1, 2]}
>>> _ = p.write_text("[" * 200 + "]" * 200)
>>> load_json(p, "encoding file")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
audit.errors.InvalidConfigError: The encoding file '...a.json' is nested too deeply: more than 64 levels of arrays or objects. No audit file needs more than a few; check that this is the right file.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audit.errors import AuditError, InvalidConfigError

# Audit files nest a few levels (a [methods.x] table holding a list of lists); 64 leaves room
# and stays far below Python's recursion limit (1,000) for code that walks the result.
MAX_NESTING = 64


def _kind(mode: int) -> str:
    """What a path that is not a regular file is, from its ``stat`` mode."""
    return ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket"
            if stat.S_ISSOCK(mode) else "not a plain file")


def check_regular_file(path: str | Path, what: str, *,
                       error: type[AuditError] = InvalidConfigError, hint: str = "") -> Path:
    """``path`` if it is a regular file (symlinks followed); otherwise raise ``error``.

    Only metadata is read (``stat``): a FIFO or character device is refused without being
    opened. ``what`` names the file ("config file"); ``hint`` is added to "does not exist".
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise error(f"The {what} {str(path)!r} does not exist.{(' ' + hint) if hint else ''}") from None
    except OSError as exc:
        raise error(f"The {what} {str(path)!r} could not be read ({exc.strerror or exc}).") from None
    if not stat.S_ISREG(mode):
        raise error(f"The {what} {str(path)!r} is not a regular file: it is {_kind(mode)}. Give the path "
                    "of a regular file (a pipe or device is never read: it can block forever).")
    return path


def folder_files(folder: str | Path, *, skip: tuple[str, ...] = (),
                 error: type[AuditError] = InvalidConfigError,
                 on_link: Callable[[Path, Path], None] | None = None) -> list[Path]:
    """Every file under ``folder``, sorted, following links to files and folders as they are
    (each path keeps the link's name: a partition folder ``region=b`` linked elsewhere is still
    ``region=b``); files and folders whose name starts with one of ``skip`` are left out.

    Nothing else is left out silently, and nothing is read twice: ``error`` names

    - an entry that is neither a file nor a folder (a broken link, a FIFO, a device, a
      socket), from its metadata: it is never opened (reading a pipe can block forever);
    - a folder reached twice (a link to a folder above it, or two paths to one folder), which
      would be read without end or twice, naming both paths;
    - a file reached twice (a link to another file of the folder, symbolic or hard), whose
      rows would be counted twice, naming both paths.

    ``on_link(path, target)`` is called with each symbolic link and the real path it leads to
    before the link is followed, so a caller can refuse it (e.g. one leading outside a folder)
    before anything behind it is listed. ``pathlib``'s ``rglob`` (before Python 3.13) skips
    linked folders silently, losing their files.

    Examples
    --------
    >>> import os, tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "a.parquet").write_bytes(b"")
    >>> (root / "b.parquet").symlink_to("a.parquet")
    >>> folder_files(root)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    audit.errors.InvalidConfigError: The file 'b.parquet' under '...' is the file 'a.parquet' again (through a link), ...
    """
    import os

    root = Path(folder)

    def name(path: Path) -> str:
        return repr(str(path.relative_to(root)) or ".")

    seen: dict[str, Path] = {}
    files: list[tuple[Path, str, tuple[int, int] | None]] = []
    todo = [root]
    while todo:
        here = todo.pop()
        real = os.path.realpath(here)
        if real in seen:
            raise error(
                f"The folder {name(here)} under {str(root)!r} is the folder {name(seen[real])} again (through a "
                "symbolic link), so its files would be read twice or without end. Remove the link, or link "
                "only folders that lie nowhere else under the data folder.")
        seen[real] = here
        try:
            with os.scandir(here) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            raise error(f"The folder {name(here)} under {str(root)!r} could not be listed "
                        f"({exc.strerror or exc}). Check its permissions.") from None
        for entry in entries:
            if skip and entry.name.startswith(skip):
                continue
            path = here / entry.name
            if on_link is not None and entry.is_symlink():
                on_link(path, Path(os.path.realpath(path)))
            try:
                info = entry.stat()  # follows a link
            except OSError as exc:
                linked = entry.is_symlink()
                why = "which does not exist" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
                kind = f"a broken symbolic link (to {os.readlink(path)!r}, {why})" if linked else f"unreadable ({why})"
                fix = "Restore what it points to, or remove the link." if linked else "Check its permissions."
                never = ""
            else:
                if stat.S_ISDIR(info.st_mode):
                    todo.append(path)
                    continue
                if stat.S_ISREG(info.st_mode):
                    # its real path, and its inode where the file system gives one (0: none), so a
                    # hard link is caught too
                    files.append((path, os.path.realpath(path), (info.st_dev, info.st_ino) if info.st_ino else None))
                    continue
                kind, fix = _kind(info.st_mode), "Remove it from the folder."
                never = " (it is never opened: reading a pipe or device can block forever)"
            raise error(
                f"The entry {name(path)} in the folder {str(root)!r} is {kind}, not a file or folder{never}; "
                f"leaving it out silently would read less than the folder holds. {fix}")
    files.sort()
    first: dict[object, Path] = {}
    for path, real, node in files:
        again = first.get(real) or (first.get(node) if node else None)
        if again is not None:
            raise error(
                f"The file {name(path)} under {str(root)!r} is the file {name(again)} again (through a "
                "link), so its rows would be counted twice. Remove the link, or link only files that lie "
                "nowhere else under the data folder.")
        first[real] = path
        if node:
            first[node] = path
    return [path for path, _, _ in files]


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidConfigError(f"The {what} {str(path)!r} is not UTF-8 text.") from None
    except OSError as exc:
        raise InvalidConfigError(f"The {what} {str(path)!r} could not be read ({exc.strerror or exc}).") from None


def _too_deep(path: Path, what: str, kinds: str) -> InvalidConfigError:
    return InvalidConfigError(
        f"The {what} {str(path)!r} is nested too deeply: more than {MAX_NESTING} levels of {kinds}. "
        "No audit file needs more than a few; check that this is the right file.")


def nesting_depth(doc: Any) -> int:
    """How many list/dict levels ``doc`` nests (iteratively: any depth is safe to measure)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_NESTING:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _load(path: str | Path, what: str, parse: Any, error: type[Exception], language: str,
          containers: str) -> Any:
    path = check_regular_file(path, what)
    text = _read_text(path, what)
    try:
        doc = parse(text)
    except RecursionError:
        raise _too_deep(path, what, containers) from None
    except error as exc:
        raise InvalidConfigError(f"The {what} {str(path)!r} is not valid {language}: {exc}.") from None
    if nesting_depth(doc) > MAX_NESTING:
        raise _too_deep(path, what, containers)
    return doc


def load_json(path: str | Path, what: str) -> Any:
    """Parse the JSON file ``path`` (``what`` names it in errors: "encoding file")."""
    return _load(path, what, json.loads, json.JSONDecodeError, "JSON", "arrays or objects")


def load_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Parse the TOML file ``path`` (a byte-order mark, as Windows Notepad writes, is allowed)."""
    import tomllib

    return _load(path, what, tomllib.loads, tomllib.TOMLDecodeError, "TOML", "arrays or tables")


__all__ = ["MAX_NESTING", "check_regular_file", "folder_files", "load_json", "load_toml", "nesting_depth"]
