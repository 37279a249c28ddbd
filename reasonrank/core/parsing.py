"""Turn a model's window answer into a permutation, never dropping, duplicating or inventing a passage.

Follows the authors' ``_clean_response`` / ``receive_permutation`` with one deliberate change: when the
output has no ``<answer>`` (the reasoning hit the token cap) the original reads every number in the
reasoning as an identifier. We use the last well-formed ``[a] > [b] > ...`` chain instead, and keep
the window's order when there is none.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from reasonrank.core.format import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN, Tags, find_output

__all__ = ["ParsedAnswer", "parse_ranking", "parse_response"]

# Every step is linear in the output: the tags are found in one scan (format.Tags), the chain and
# number regexes have no nested unbounded repetition that could re-scan, and ids are compared by length
# before int() (a 5,000-digit id is out of range, not a ValueError).
# A chain of at least two bracketed ids joined by '>' (a lone "[3]" in prose is not an answer).
_CHAIN = re.compile(r"\[\s*\d+\s*\](?:\s*>\s*\[\s*\d+\s*\])+")
_NUMBER = re.compile(r"\d+")  # \d matches any Unicode decimal digit; int() reads them (e.g. fullwidth)

# Repair flags recorded in the window trace.
NO_ANSWER_TAG = "no_answer_tag"
UNCLOSED_ANSWER = "unclosed_answer"
USED_LAST_CHAIN = "used_last_chain"
KEPT_WINDOW_ORDER = "kept_window_order"
DROPPED_DUPLICATES = "dropped_duplicates"
DROPPED_OUT_OF_RANGE = "dropped_out_of_range"
APPENDED_MISSING = "appended_missing"


@dataclass(frozen=True)
class ParsedAnswer:
    """What one window's output says: the 0-based permutation and how it was obtained."""

    order: list[int]
    answer: str | None  # the text the ids were read from; None when the window kept its order
    reasoning: str
    repairs: list[str] = field(default_factory=list)

    @property
    def repaired(self) -> bool:
        return bool(self.repairs)


def _answer_text(text: str, tags: Tags, *, direct: bool) -> tuple[str | None, list[str]]:
    match = find_output(text, tags=tags)
    if match:  # the full grammar: <think>...</think> <answer>...</answer>
        return match.group(2).strip(), []
    pair = tags.pair(ANSWER_OPEN, ANSWER_CLOSE)
    if pair:
        return text[pair[0][1] : pair[1][0]].strip(), []
    last_open = tags.last(ANSWER_OPEN)
    if last_open:  # truncated inside the answer: take what follows the last <answer>
        return text[last_open[1] :].strip(), [UNCLOSED_ANSWER]
    repairs = [] if direct else [NO_ANSWER_TAG]
    close = tags.last(THINK_CLOSE)
    tail = text[close[1] :] if close else text
    chain = _last_chain(tail) or (_last_chain(text) if close else None)
    if chain:
        return chain, repairs + ([] if direct else [USED_LAST_CHAIN])
    return None, repairs + [KEPT_WINDOW_ORDER]


def _last_chain(text: str) -> str | None:
    last = None
    for last in _CHAIN.finditer(text):  # noqa: B007 - only the last one is wanted
        pass
    return last.group(0) if last else None


def _reasoning(text: str, tags: Tags) -> str:
    pair = tags.pair(THINK_OPEN, THINK_CLOSE)
    if pair:
        return text[pair[0][1] : pair[1][0]].strip()
    close = tags.first(THINK_CLOSE)
    if close:
        return text[: close[0]].replace("<think>", "").strip()
    opens = tags.first(ANSWER_OPEN)
    return (text[: opens[0]] if opens else text).replace("<think>", "").strip()


def _index(token: str, n: int) -> int | None:
    """The 0-based index an id token names, or None when it is out of ``1..n`` (without int() on huge ids)."""
    if len(token) > len(str(n)):  # maybe leading zeros (of any script): skip them, then compare lengths
        first = next((k for k, ch in enumerate(token) if ch != "0" and unicodedata.decimal(ch) != 0), len(token))
        token = token[first:]
        if len(token) > len(str(n)):
            return None
    index = int(token or "0") - 1
    return index if 0 <= index < n else None


def _permutation(answer: str, n: int) -> tuple[list[int], list[str]]:
    """Ids in order of appearance, de-duplicated, in range; missing ones appended in window order."""
    seen: set[int] = set()
    order: list[int] = []
    duplicates = out_of_range = False
    for token in _NUMBER.findall(answer):
        index = _index(token, n)
        if index is None:
            out_of_range = True
            continue
        if index in seen:
            duplicates = True
            continue
        seen.add(index)
        order.append(index)
    repairs = []
    if duplicates:
        repairs.append(DROPPED_DUPLICATES)
    if out_of_range:
        repairs.append(DROPPED_OUT_OF_RANGE)
    if not order and n:
        repairs.append(KEPT_WINDOW_ORDER)
    elif len(order) < n:
        repairs.append(APPENDED_MISSING)
    order.extend(i for i in range(n) if i not in seen)
    return order, repairs


def parse_response(text: str | None, n: int, *, direct: bool = False) -> ParsedAnswer:
    """Parse one window's raw output for a window of ``n`` passages.

    ``direct=True`` is for the non-reasoning prompt, whose whole output is the ranking: a missing
    ``<answer>`` is then expected, and the whole text is read when it holds no ``[a] > [b]`` chain.
    """
    if n < 0:
        raise ValueError(f"window size must be >= 0, got {n}")
    text = text or ""
    tags = Tags(text)
    answer, repairs = _answer_text(text, tags, direct=direct)
    if answer is None and direct and text.strip():
        answer, repairs = text.strip(), []
    if answer is None:
        return ParsedAnswer(list(range(n)), None, _reasoning(text, tags), repairs)
    order, more = _permutation(answer, n)
    return ParsedAnswer(order, answer, "" if direct else _reasoning(text, tags), repairs + more)


def parse_ranking(text: str | None, n: int) -> list[int]:
    """The 0-based permutation of ``range(n)`` that a window output describes (see :func:`parse_response`)."""
    return parse_response(text, n).order
