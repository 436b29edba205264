"""User strings on their way out: HTML bidi isolation, terminal and XML plain text.

Column names, category levels and group names come from the user's data and may hold
characters that change how *other* text is shown:

- bidi controls (U+202A..U+202E, U+2066..U+2069, ...): an unterminated right-to-left override
  inside a level name reverses everything after it in the same paragraph ("Trojan source");
- control characters (ESC, BEL, backspace, carriage return, ...): raw escape sequences on a
  terminal recolour, rewrite or hide lines; XML 1.0 forbids most of them outright.

Three helpers, one per destination:

- :func:`isolate_fragments` (HTML): every known user fragment inside a composed sentence is
  wrapped in FSI ... PDI (what ``<bdi>`` does), so an override ends where its value ends;
- :func:`visible` (terminal, JUnit XML): every control character and bidi control becomes a
  visible escape such as ``\\u202e`` or ``\\x1b``; nothing invisible reaches the output;
- :func:`xml_text`: :func:`visible` plus the code points XML 1.0 cannot carry at all.

Examples
--------
>>> visible("sex\\x1b[2Jgender")
'sex\\\\x1b[2Jgender'
>>> isolate_fragments("group \\u202eelameF has rate 0.4", ["\\u202eelameF"])
'group \\u2068\\u202eelameF\\u2069 has rate 0.4'
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

# Unicode bidi controls: LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI, ALM, LRM, RLM.
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c\u200e\u200f")
FSI, PDI = "\u2068", "\u2069"
_LINE_SEPARATORS = frozenset("\u2028\u2029\u0085")


def has_bidi(value: str) -> bool:
    """Whether ``value`` holds a bidi control."""
    return not BIDI.isdisjoint(value)


def _hidden(c: str) -> bool:
    return c in BIDI or c in _LINE_SEPARATORS or unicodedata.category(c) == "Cc"


def _escape_char(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def visible(value: Any) -> str:
    """``value`` as text with every control character and bidi control written as an escape.

    Letters of every script (Hebrew, Arabic, ...) are kept; only characters that are invisible
    and act on the text around them (ESC, BEL, CR, tab, newline, U+202E, ...) are spelled out,
    so a terminal or CI page shows the name as it is and cannot be re-ordered or re-drawn.
    """
    text = str(value)
    if text.isprintable() and not any(c in BIDI for c in text):  # the common case, fast
        return text
    return "".join(_escape_char(c) if _hidden(c) else c for c in text)


def escape_warnings() -> None:
    """Print every Python warning with :func:`visible` applied to its message and source line.

    Warnings quote user strings (matplotlib: "Glyph 27 (\\x1b) missing from font(s)"); printed
    raw, an ESC or BEL in a group name would act on the terminal. Wraps
    ``warnings.formatwarning``, which the standard ``showwarning`` uses; idempotent. Installed
    by the runner and by the figure helpers (:mod:`audit.core.plots`).
    """
    import warnings

    current = warnings.formatwarning
    if getattr(current, "_audit_visible", False):
        return

    def formatwarning(message: Any, category: Any, filename: str, lineno: int,
                      line: str | None = None) -> str:
        return current(visible(message), category, filename, lineno,
                       None if line is None else visible(line))

    formatwarning._audit_visible = True  # type: ignore[attr-defined]
    warnings.formatwarning = formatwarning


def xml_text(value: Any) -> str:
    """:func:`visible`, plus escapes for what XML 1.0 forbids (surrogates, U+FFFE, U+FFFF).

    The result is legal character data; it still needs ``xml.sax.saxutils.escape`` /
    ``quoteattr`` for ``<``, ``&`` and quotes.
    """
    text = visible(value)
    return "".join(_escape_char(c) if (0xD800 <= ord(c) <= 0xDFFF or ord(c) in (0xFFFE, 0xFFFF))
                   else c for c in text)


def bidi_fragments(strings: Iterable[Any]) -> tuple[str, ...]:
    """The user strings that hold bidi controls (the only ones that need isolating)."""
    return tuple(sorted({str(s) for s in strings if isinstance(s, str) and has_bidi(s)},
                        key=lambda s: (-len(s), s)))


def isolate_fragments(text: str, fragments: Iterable[str]) -> str:
    """Wrap every occurrence of each fragment (a user-derived value) in FSI ... PDI.

    A composed sentence ("group X has ...") holds the user's value somewhere in the middle; an
    unterminated override inside it would re-order the rest of the sentence. Isolating the value
    itself, not the whole sentence, ends its effect at the value's own end. Longer fragments
    win over the shorter ones they contain; an occurrence already inside FSI ... PDI is wrapped
    once more, which is harmless.
    """
    frags = [f for f in fragments if f and f in text]
    if not frags:
        return text
    frags.sort(key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(f) for f in frags))
    return pattern.sub(lambda m: FSI + m.group(0) + PDI, text)


def plural(word: str) -> str:
    """The plural of a grouping's name ("patch" -> "patches", "lag" -> "lags").

    Examples
    --------
    >>> plural("patch"), plural("feature")
    ('patches', 'features')
    """
    return word + ("es" if word.endswith(("s", "x", "z", "ch", "sh")) else "s")


def user_strings(data: Any) -> tuple[str, ...]:
    """Every user-derived name in an :class:`~audit.core.dataset.AuditData` that holds bidi
    controls: column names, categorical levels, sensitive groups and class labels."""
    if data is None:
        return ()
    found: list[Any] = list(getattr(data.frame, "columns", ()))
    found += list(data.spec.sensitive) + [data.spec.target]
    for f in data.encoding.features:
        found.append(f.name)
        found.extend(getattr(f, "levels", ()))
    found.extend(data.classes or ())
    for col in data.sensitive.columns:
        found.extend(data.sensitive[col].unique().tolist())
    return bidi_fragments(found)


def fixed(x: float, spec: str) -> str:
    """``format(x, spec)`` that never writes a negative zero: a value that rounds to zero is
    written without its minus sign (``-0.00004`` at ``.3f`` is ``0.000``, at ``+.3f`` ``+0.000``).

    >>> fixed(-0.0, "+.4f"), fixed(-4e-5, ",.3f"), fixed(-0.25, ".1%")
    ('+0.0000', '0.000', '-25.0%')
    """
    text = format(x, spec)
    if text.startswith("-") and not any(c in "123456789" for c in text.split("e")[0]):
        text = ("+" if "+" in spec else "") + text[1:]
    return text


__all__ = ["BIDI", "FSI", "PDI", "bidi_fragments", "escape_warnings", "fixed", "has_bidi", "isolate_fragments", "plural",
           "user_strings", "visible", "xml_text"]
