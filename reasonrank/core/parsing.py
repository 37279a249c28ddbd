"""Turn a model's window answer into a permutation, never dropping, duplicating or inventing a passage.

Follows the authors' ``_clean_response`` / ``receive_permutation`` with one deliberate change: when the
output has no ``<answer>`` (the reasoning hit the token cap) the original reads every number in the
reasoning as an identifier. We use the last well-formed ``[a] > [b] > ...`` chain instead, and keep
the window's order when there is none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from reasonrank.core.format import OUTPUT_RE_LENIENT

__all__ = ["ParsedAnswer", "parse_ranking", "parse_response"]

_ANSWER_ONLY = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
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


def _answer_text(text: str, *, direct: bool) -> tuple[str | None, list[str]]:
    match = OUTPUT_RE_LENIENT.search(text)
    if match:  # the full grammar: <think>...</think> <answer>...</answer>
        return match.group(2).strip(), []
    match = _ANSWER_ONLY.search(text)
    if match:
        return match.group(1).strip(), []
    opens = list(_ANSWER_OPEN.finditer(text))
    if opens:  # truncated inside the answer: take what follows the last <answer>
        return text[opens[-1].end() :].strip(), [UNCLOSED_ANSWER]
    repairs = [] if direct else [NO_ANSWER_TAG]
    tail = text
    close = list(_THINK_CLOSE.finditer(text))
    if close:
        tail = text[close[-1].end() :]
    chains = _CHAIN.findall(tail) or ([] if tail is text else _CHAIN.findall(text))
    if chains:
        return chains[-1], repairs + ([] if direct else [USED_LAST_CHAIN])
    return None, repairs + [KEPT_WINDOW_ORDER]


def _reasoning(text: str) -> str:
    match = _THINK.search(text)
    if match:
        return match.group(1).strip()
    close = _THINK_CLOSE.search(text)
    if close:
        return text[: close.start()].replace("<think>", "").strip()
    opens = _ANSWER_OPEN.search(text)
    return (text[: opens.start()] if opens else text).replace("<think>", "").strip()


def _permutation(answer: str, n: int) -> tuple[list[int], list[str]]:
    """Ids in order of appearance, de-duplicated, in range; missing ones appended in window order."""
    seen: set[int] = set()
    order: list[int] = []
    duplicates = out_of_range = False
    for token in _NUMBER.findall(answer):
        index = int(token) - 1
        if not 0 <= index < n:
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
    answer, repairs = _answer_text(text, direct=direct)
    if answer is None and direct and text.strip():
        answer, repairs = text.strip(), []
    if answer is None:
        return ParsedAnswer(list(range(n)), None, _reasoning(text), repairs)
    order, more = _permutation(answer, n)
    return ParsedAnswer(order, answer, "" if direct else _reasoning(text), repairs + more)


def parse_ranking(text: str | None, n: int) -> list[int]:
    """The 0-based permutation of ``range(n)`` that a window output describes (see :func:`parse_response`)."""
    return parse_response(text, n).order
