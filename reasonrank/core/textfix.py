"""``ftfy.fix_text`` of one segment (a line), byte for byte, without ftfy's work that cannot change it.

ftfy runs all its fixers over a line, again and again until a pass changes nothing. On DL19's lines
most of its time goes to steps that leave the text as it is:

- three ``str.translate`` fixers with a table (Latin ligatures, character width, control characters),
  ~17 µs each on a 400-character line: here each runs only when a character of its table is present;
- the mojibake test (``badness.is_bad``, a large regex searched over the whole line, 40-75 µs), which
  ``fix_encoding`` runs before every step and once more over the fixed text: here it is searched only
  near the non-ASCII characters of which every match has one (read from the parsed regex; most fixed
  text has none of them, and is not searched at all), and the encoding step
  (ftfy's, copied without its gate; checked against ftfy's source) is not asked twice;
- the other fixers of each pass (~13 µs on such a line), again in the pass that finds nothing left to
  fix: here they run only when the text has a character one of them changes (one class of them all,
  from their tables and from the source of the others, checked against ftfy's).

Every other step is ftfy's own, in ftfy's order. That order is ftfy 6's (``fix_and_explain``): another
major version, or a fixer this loop does not know, gets ``ftfy.fix_text`` itself.
``tests/core/test_prompts.py`` compares the two on DL19 and on generated mojibake.
"""

from __future__ import annotations

import hashlib
import inspect
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
        and callable(getattr(ftfy, "_fix_encoding_one_step_and_explain", None))
    )


def _non_ascii_only(op: object, av: object) -> set[int] | None:
    """The code points a parsed regex element matches when it is one character, only non-ASCII ones
    (a literal or a class of literals and ranges); else None."""
    if str(op) == "LITERAL":
        return {av} if av > 127 else None  # type: ignore[operator,set-item]
    if str(op) != "IN":
        return None
    codes: set[int] = set()
    for o, a in av:  # type: ignore[attr-defined]
        if str(o) == "LITERAL" and a > 127:
            codes.add(a)
        elif str(o) == "RANGE" and a[0] > 127:
            codes.update(range(a[0], a[1] + 1))
        else:
            return None
    return codes


def _read_badness(pattern: re.Pattern[str]) -> tuple[int, str] | None:
    """(the longest match of ``pattern``, a class of non-ASCII characters every match has one of), or None.

    Read from the parsed pattern: each alternative must have an element that matches one character,
    only non-ASCII ones (a literal or a class of them); a match of that alternative holds a character
    of its smallest such element, so the class is their union. The match width must be bounded.
    """
    try:
        from re import _parser  # the stdlib's own parser; any change to it falls back to ftfy's search

        tree = _parser.parse(pattern.pattern, pattern.flags)
        longest = tree.getwidth()[1]
        items = tree.data
        branches = items[0][1][1] if len(items) == 1 and str(items[0][0]) == "BRANCH" else [tree]
        if pattern.flags & re.IGNORECASE or longest > 64:
            return None
        anchors: set[int] = set()
        for branch in branches:
            elements = [codes for op, av in branch.data if (codes := _non_ascii_only(op, av))]
            if not elements:
                return None
            anchors |= min(elements, key=len)
        return longest, "".join(re.escape(chr(code)) for code in sorted(anchors))
    except Exception:  # noqa: BLE001 - a parser that reads differently: use ftfy's own search
        return None


_EXACT = _copies_this_ftfy()
_BAD_REACH, _BAD_CHARS = _read_badness(badness.BADNESS_RE) or (None, "")
# characters of that class with at most 2 * (reach - 1) others between them: their windows below overlap
_NEAR_BAD = (
    re.compile(rf"[{_BAD_CHARS}](?:[^{_BAD_CHARS}]{{0,{2 * _BAD_REACH - 2}}}[{_BAD_CHARS}])*") if _BAD_REACH else None
)


def _is_bad(text: str) -> bool:
    """``ftfy.badness.is_bad(text)``, searching only near the characters of which every match has one.

    A match holding the character at ``i`` lies within ``[i - reach + 1, i + reach)``; ``search`` with
    ``pos`` does not let ``^`` match there (it matches at the string's real start only). Most text
    fixed from mojibake has none of them (a DL19 line's ’ – … are not): no search at all.
    """
    if _NEAR_BAD is None or _BAD_REACH is None:  # (None together: the regex was not read)
        return badness.is_bad(text)
    search, reach, n = badness.BADNESS_RE.search, _BAD_REACH, len(text)
    for near in _NEAR_BAD.finditer(text):
        if search(text, max(near.start() - reach + 1, 0), min(near.end() + reach - 1, n)):
            return True
    return False


def _fix_encoding(text: str) -> str:
    """``ftfy.fix_encoding(text)``: ftfy's steps, gated by ``_is_bad`` instead of its full search.

    ``fix_encoding`` repeats one step until the text stops changing, and a step returns ASCII or
    not-bad text unchanged: a full ``is_bad`` search on each step (on a DL19 line ~40 µs when it finds
    mojibake, ~75 µs over the fixed text when it does not; ``_is_bad`` takes ~10).
    """
    while not text.isascii() and _is_bad(text):
        fixed = _encoding_step(text)
        if fixed == text:
            return text
        text = fixed
    return text


def _encoding_step(text: str) -> str:
    """One step of ``ftfy.fix_encoding`` on text that is non-ASCII and ``is_bad``.

    ftfy 6.3's ``_fix_encoding_one_step_and_explain`` with the default config, without its ASCII and
    ``is_bad`` gate (already passed) and its explanations; ftfy's own helpers do the work. Used only
    when ftfy's function is the one this was copied from (``_STEP_SOURCE``); else ftfy's function runs.
    ftfy is Copyright Robyn Speer, Apache License 2.0.
    """
    if not _COPIED_STEP:
        return ftfy._fix_encoding_one_step_and_explain(text, _ENCODING_CONFIG).text
    possible_1byte_encodings = []
    for encoding in chardata.CHARMAP_ENCODINGS:
        if chardata.possible_encoding(text, encoding):
            possible_1byte_encodings.append(encoding)
            fixed = _as_utf8(text, encoding)
            if fixed is not None:
                return fixed
    return _not_utf8(text, possible_1byte_encodings)


def _not_utf8(text: str, possible_1byte_encodings: list[str]) -> str:
    """The rest of ftfy's step, for text that no single-byte encoding turns into UTF-8."""
    if chardata.UTF8_DETECTOR_RE.search(text):
        fixed = fixes.decode_inconsistent_utf8(text)
        if fixed != text:
            return fixed
    if "latin-1" in possible_1byte_encodings:
        if "windows-1252" in possible_1byte_encodings:
            return text
        try:
            fixed = text.encode("latin-1").decode("windows-1252")
            if fixed != text:
                return fixed
        except UnicodeDecodeError:
            pass
    if chardata.C1_CONTROL_RE.search(text):
        return fixes.fix_c1_controls(text)
    return text


def _as_utf8(text: str, encoding: str) -> str | None:
    """``text`` encoded in ``encoding`` and decoded as UTF-8 (ftfy's repairs of the bytes first), or None."""
    encoded_bytes = text.encode(encoding)
    if encoding != "macroman" and chardata.ALTERED_UTF8_RE.search(encoded_bytes):
        encoded_bytes = fixes.restore_byte_a0(encoded_bytes)
    if encoding.startswith("sloppy"):
        encoded_bytes = fixes.replace_lossy_sequences(encoded_bytes)
    decoding = "utf-8-variants" if 0xED in encoded_bytes or 0xC0 in encoded_bytes else "utf-8"
    try:
        return encoded_bytes.decode(decoding)
    except UnicodeDecodeError:
        return None


# sha256 of inspect.getsource(ftfy._fix_encoding_one_step_and_explain) in ftfy 6.3.1
_STEP_SOURCE = "995180c6d3d524b27245073a2d87342e0ddf9494f00e9adb4d7b4734852587f7"


def _source_sha256(functions: list[object], *texts: str) -> str:
    """sha256 of the functions' ``inspect.getsource`` and then ``texts``, all joined; "" without source."""
    try:
        sources = [inspect.getsource(function) for function in functions]  # type: ignore[arg-type]
    except (OSError, TypeError):  # no source shipped
        return ""
    return hashlib.sha256("".join([*sources, *texts]).encode()).hexdigest()


def _is_the_copied_step() -> bool:
    return _source_sha256([ftfy._fix_encoding_one_step_and_explain]) == _STEP_SOURCE


_ENCODING_CONFIG = ftfy.TextFixerConfig(explain=False)  # what ftfy.fix_encoding passes
_COPIED_STEP = _EXACT and _is_the_copied_step()
_LIGATURES = _any_of(chardata.LIGATURES)
_WIDTH = _any_of(chardata.WIDTH_MAP)
_CONTROL = _any_of(chardata.CONTROL_CHARS)

# The fixers after the encoding fix that change text by pattern, not by table, and the characters
# without which each returns a text as it is, read from their source in ftfy 6.3.1 (``_PATTERN_SOURCE``).
_PATTERN_STEPS = {
    "fix_c1_controls": [chardata.C1_CONTROL_RE],  # C1_CONTROL_RE.sub
    "uncurl_quotes": [chardata.SINGLE_QUOTE_RE, chardata.DOUBLE_QUOTE_RE],  # their .sub
    "fix_line_breaks": [re.compile("[\r\u2028\u2029\x85]")],  # str.replace of these
    "fix_surrogates": [fixes.SURROGATE_RE],  # only when SURROGATE_RE.search
    "remove_terminal_escapes": [re.compile("[\x1b]")],  # ANSI_RE.sub, and ANSI_RE begins with ESC
}
# sha256 of those fixers' inspect.getsource, those patterns and ANSI_RE's, in ftfy 6.3.1
_PATTERN_SOURCE = "bf5b83ae0bd7a3f288791d1d66c1a4bc3610f9aafa4e5cb15fcfc0f11ceafd8a"


def _pattern_source() -> str:
    regexes = [regex for regexes in _PATTERN_STEPS.values() for regex in regexes] + [fixes.ANSI_RE]
    return _source_sha256(
        [getattr(fixes, name) for name in _PATTERN_STEPS], *(ascii(regex.pattern) for regex in regexes)
    )


def _chars_some_step_changes() -> re.Pattern[str] | None:
    """One class of every character that some fixer after the encoding fix changes (None: not this ftfy).

    Each of those fixers returns a text without its characters as it is, so a text without any of
    them passes all of them unchanged, one after the other. The table fixers' characters are their
    tables' keys; the others' are read from their source, used only while it is the one read.
    """
    if not (_EXACT and _pattern_source() == _PATTERN_SOURCE):
        return None
    classes = [regex.pattern[1:-1] for regexes in _PATTERN_STEPS.values() for regex in regexes]
    classes += [table.pattern[1:-1] for table in (_LIGATURES, _WIDTH, _CONTROL)]
    return re.compile("[" + "".join(classes) + "]")


_STEP_CHARS = _chars_some_step_changes()


def fix_segment(segment: str, unescape_html: bool | Literal["auto"] = "auto") -> str:
    """``ftfy.fix_text(segment, unescape_html=unescape_html)`` for a segment ftfy fixes whole.

    A segment is at most one line (ending in ``\\n`` or not) of under ``max_decode_length`` characters.
    """
    if not _EXACT:
        return ftfy.fix_text(segment, unescape_html=unescape_html)
    if unescape_html == "auto" and "<" in segment:
        unescape_html = False
    text = segment
    encoded = None  # _fix_encoding's last result: it is its own fix (the loop ran to a fixed point)
    while True:
        before = text
        if unescape_html:
            text = fixes.unescape_html(text)
        if text != encoded:
            text = encoded = _fix_encoding(text)
        if _STEP_CHARS is None or _STEP_CHARS.search(text):
            text = _steps(text)
        text = unicodedata.normalize("NFC", text)
        if text == before:
            return text


def _steps(text: str) -> str:
    """ftfy's fixers between the encoding fix and normalization, in its order (table fixers when needed)."""
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
    return text
