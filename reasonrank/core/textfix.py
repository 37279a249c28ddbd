"""``ftfy.fix_text`` of one segment (a line), byte for byte, without running ftfy's steps that cannot change it.

ftfy runs all its fixers over a line, again and again until a pass changes nothing. Three of them are
``str.translate`` with a table (Latin ligatures, character width, control characters): ~17 µs each
on a 400-character line even when no character of the table is in it, about a third of ftfy's time
on DL19's passages. Here each of the three runs only when a character of its table is in the text (one
regex scan, ~1 µs), which is the same text either way; every other step is ftfy's own, in ftfy's
order. That order is ftfy 6's (``fix_and_explain``): another major version, or a fixer this loop
does not know, gets ``ftfy.fix_text`` itself. ``tests/core/test_prompts.py`` compares the two on
DL19 and on generated mojibake.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Literal

import ftfy
from ftfy import badness, chardata, fixes

__all__ = ["fix_segment"]

# ftfy 6's fixers after fix_encoding, in fix_and_explain's order
_STEPS = (
    "fix_c1_controls",
    "fix_latin_ligatures",
    "fix_character_width",
    "uncurl_quotes",
    "fix_line_breaks",
    "fix_surrogates",
    "remove_terminal_escapes",
    "remove_control_chars",
)
# the fixers ftfy.fix_encoding runs itself
_ENCODING_STEPS = ("restore_byte_a0", "replace_lossy_sequences", "decode_inconsistent_utf8")


def _any_of(table: Mapping[int, object]) -> re.Pattern[str]:
    return re.compile("[" + "".join(re.escape(chr(code)) for code in sorted(table)) + "]")


def _copies_this_ftfy() -> bool:
    """This ftfy is one whose ``fix_text`` the loop below copies: version 6, the default config, the same fixers."""
    config = ftfy.TextFixerConfig()
    return (
        ftfy.__version__.split(".")[0] == "6"
        and set(ftfy.FIXERS) == {"unescape_html", *_STEPS, *_ENCODING_STEPS}
        and all(getattr(config, step) is True for step in ("fix_encoding", *_STEPS, *_ENCODING_STEPS))
        and config.normalization == "NFC"
        and fixes.fix_latin_ligatures("ﬁ") == "fi"  # the three table steps are the tables below
        and fixes.fix_character_width("Ａ") == "A"
        and fixes.remove_control_chars("\x00") == ""
    )


def _reach_of_matches_needing_non_ascii(pattern: re.Pattern[str]) -> int | None:
    """The longest match of ``pattern`` when every match has a non-ASCII character, else None.

    Read from the parsed pattern: each alternative must have an element that matches only non-ASCII
    characters (a literal or a class of them), and the match width must be bounded.
    """
    try:
        from re import _parser  # the stdlib's own parser; any change to it falls back to ftfy's search

        tree = _parser.parse(pattern.pattern, pattern.flags)
        longest = tree.getwidth()[1]
        items = tree.data
        branches = items[0][1][1] if len(items) == 1 and str(items[0][0]) == "BRANCH" else [tree]
        if pattern.flags & re.IGNORECASE or longest > 64:
            return None

        def non_ascii_only(op: object, av: object) -> bool:
            if str(op) == "LITERAL":
                return av > 127  # type: ignore[operator]
            if str(op) == "IN":
                return all(
                    (str(o) == "LITERAL" and a > 127) or (str(o) == "RANGE" and a[0] > 127)  # type: ignore[index,operator]
                    for o, a in av  # type: ignore[attr-defined]
                )
            return False

        if all(any(non_ascii_only(op, av) for op, av in branch.data) for branch in branches):
            return longest
    except Exception:  # noqa: BLE001 - a parser that reads differently: use ftfy's own search
        return None
    return None


_EXACT = _copies_this_ftfy()
_BAD_REACH = _reach_of_matches_needing_non_ascii(badness.BADNESS_RE)
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")


def _is_bad(text: str) -> bool:
    """``ftfy.badness.is_bad(text)``, searching only near the non-ASCII characters that every match has.

    A match holding the character at ``i`` lies within ``[i - reach + 1, i + reach)``; ``search`` with
    ``pos`` does not let ``^`` match there (it matches at the string's real start only).
    """
    if _BAD_REACH is None:
        return badness.is_bad(text)
    search, reach, n = badness.BADNESS_RE.search, _BAD_REACH, len(text)
    lo = hi = -1
    for run in _NON_ASCII_RUN.finditer(text):
        start, end = max(run.start() - reach + 1, 0), min(run.end() + reach - 1, n)
        if start > hi:
            if hi > lo and search(text, lo, hi):
                return True
            lo = start
        hi = end
    return hi > lo and search(text, lo, hi) is not None


_LIGATURES = _any_of(chardata.LIGATURES)
_WIDTH = _any_of(chardata.WIDTH_MAP)
_CONTROL = _any_of(chardata.CONTROL_CHARS)


def fix_segment(segment: str, unescape_html: bool | Literal["auto"] = "auto") -> str:
    """``ftfy.fix_text(segment, unescape_html=unescape_html)`` for a segment ftfy fixes whole.

    A segment is at most one line (ending in ``\\n`` or not) of under ``max_decode_length`` characters.
    """
    if not _EXACT:
        return ftfy.fix_text(segment, unescape_html=unescape_html)
    if unescape_html == "auto" and "<" in segment:
        unescape_html = False
    text = segment
    while True:
        before = text
        if unescape_html:
            text = fixes.unescape_html(text)
        if not text.isascii() and _is_bad(text):  # else ftfy.fix_encoding returns the text as it is
            text = ftfy.fix_encoding(text)
        text = fixes.fix_c1_controls(text)
        if _LIGATURES.search(text):
            text = fixes.fix_latin_ligatures(text)
        if _WIDTH.search(text):
            text = fixes.fix_character_width(text)
        text = fixes.uncurl_quotes(text)
        text = fixes.fix_line_breaks(text)
        text = fixes.fix_surrogates(text)
        text = fixes.remove_terminal_escapes(text)
        if _CONTROL.search(text):
            text = fixes.remove_control_chars(text)
        text = unicodedata.normalize("NFC", text)
        if text == before:
            return text
