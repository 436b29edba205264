"""The memory budget: one limit that every reader checks *before* it allocates.

Hostile or mistaken inputs can declare sizes far beyond the machine: a small ``.csv.gz`` that
expands to gigabytes, an ``.npz`` header claiming terabytes, a PNG "decompression bomb", an
architecture with a billion hidden units. Each reader computes the bytes it is about to need
from headers and metadata (or by stream-counting decompressed bytes up to the budget) and calls
:func:`check_size`, which raises a one-line error naming the size found, the budget and how to
raise it.

The budget, in order of precedence:

1. ``[limits] memory = "4GiB"`` in the config (applied by the runner with :func:`memory_limit`);
2. the ``AUDIT_MEMORY_LIMIT`` environment variable (same syntax);
3. half of the machine's physical memory (4 GiB when that cannot be read).

Sizes are bytes, or a number with a unit: ``B``, ``KB``/``MB``/``GB``/``TB`` (powers of 1000)
or ``KiB``/``MiB``/``GiB``/``TiB`` (powers of 1024); ``K``/``M``/``G``/``T`` alone mean the
binary units.

Examples
--------
>>> parse_size("4GiB")
4294967296
>>> with memory_limit(parse_size("1MiB")):
...     memory_budget()[0]
1048576
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator

from audit.errors import AuditError, DataValidationError, InvalidConfigError

ENV_VAR = "AUDIT_MEMORY_LIMIT"
DEFAULT_FRACTION = 0.5
_FALLBACK = 4 * 1024**3
_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")
# The smallest budget accepted: below this not even the bundled examples load.
MIN_BUDGET = 1024**2

_override: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar(
    "audit_memory_limit", default=None)


def parse_size(value: object, *, where: str = "[limits] memory") -> int:
    """Bytes from ``"4GiB"``, ``"512 MB"``, ``"2G"`` or a plain integer number of bytes."""
    if isinstance(value, bool):
        raise InvalidConfigError(f"The {where} must be a size such as \"4GiB\". Got {value!r} instead.")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.match(str(value)) if isinstance(value, str) else None
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise InvalidConfigError(
                f"The {where} must be a size such as \"4GiB\", \"512MB\" or a number of bytes. "
                f"Got {value!r} instead.")
        n = int(float(m.group(1)) * _UNITS[unit])
    if n < MIN_BUDGET:
        raise InvalidConfigError(f"The {where} must be at least 1MiB. Got {value!r} instead.")
    return n


def format_size(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"`` (binary units, three significant digits)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"  # pragma: no cover


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return None


def memory_budget() -> tuple[int, str]:
    """The active budget in bytes and where it comes from (for error messages)."""
    active = _override.get()
    if active is not None:
        return active
    env = os.environ.get(ENV_VAR)
    if env:
        return parse_size(env, where=f"environment variable {ENV_VAR}"), f"{ENV_VAR}={env}"
    ram = _physical_memory()
    if ram is None:
        return _FALLBACK, "the default of 4 GiB"
    return int(ram * DEFAULT_FRACTION), f"the default: half of the {format_size(ram)} of RAM"


@contextlib.contextmanager
def memory_limit(nbytes: int | None, source: str = "[limits] memory in the config") -> Iterator[None]:
    """Apply a budget for the duration of a ``with`` block (``None`` leaves the current one).

    With ``None`` the current budget is resolved on entry, so a malformed ``AUDIT_MEMORY_LIMIT``
    is a config error naming the variable before any file is read, never a reader's error.
    """
    if nbytes is None:
        memory_budget()
        yield
        return
    token = _override.set((int(nbytes), source))
    try:
        yield
    finally:
        _override.reset(token)


def check_size(nbytes: int | float, what: str, *,
               error: type[AuditError] = DataValidationError, fix: str = "") -> None:
    """Raise ``error`` when ``nbytes`` (about to be allocated) exceeds the memory budget.

    ``what`` names the thing and where it is (``"The data file 'x.csv.gz' decompresses to"``);
    ``fix`` is an extra remedy besides raising the budget.
    """
    budget, source = memory_budget()
    if nbytes > budget:
        raise error(
            f"{what} {format_size(nbytes)}, more than the memory budget of {format_size(budget)} "
            f"({source}).{(' ' + fix) if fix else ''} If the machine has the memory, raise the "
            f"budget with [limits] memory = \"...\" in the config or the {ENV_VAR} environment "
            "variable (e.g. \"16GiB\").")


__all__ = ["ENV_VAR", "check_size", "format_size", "memory_budget", "memory_limit", "parse_size"]
