"""The ReasonRank text grammar, in one place: the window prompt's shape and the model's output shape.

Output: ``<think> reasoning </think> <answer> [2] > [1] > [3] </answer>``. Prompt: the user message of
:func:`reasonrank.core.prompts.build_messages` (``I will provide you with N passages ... [1] ... Search
Query: ...``). Everything that reads or writes either shape (the parser, the reward, the training-data
loaders, the test fakes) uses the definitions here.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "ANSWER_PATTERN",
    "OUTPUT_RE",
    "OUTPUT_RE_LENIENT",
    "TEXT_FIELDS",
    "OutputMatch",
    "OutputPattern",
    "Tags",
    "find_output",
    "format_id_chain",
    "format_output",
    "parse_user_message",
]

# The format regex of the authors' toml (a literal string, so the backslash is kept). Case-sensitive,
# as the reward and the training data check it.
ANSWER_PATTERN = r"<think>(.*?)</think>\s*<answer>(.*?)</answer>"

THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = "<think>", "</think>", "<answer>", "</answer>"
Span = tuple[int, int]


class Tags:
    """Where the four tags occur in one text: ``spans[tag]`` lists ``(start, end)`` in text order.

    Found in one regex pass over the text (a literal alternation, so linear), with ``re``'s own
    case-insensitive matching when ``ignore_case`` (which also accepts e.g. ``<thİnk>``, as the regex
    grammar does). Every search below looks positions up in these lists, so each costs O(log n).
    """

    _SCAN = {
        False: re.compile(r"<(/?)(?:(think)|answer)>"),
        True: re.compile(r"<(/?)(?:(think)|answer)>", re.IGNORECASE),
    }

    def __init__(self, text: str, *, ignore_case: bool = True) -> None:
        self.text = text
        self.ignore_case = ignore_case
        self.spans: dict[str, list[Span]] = {THINK_OPEN: [], THINK_CLOSE: [], ANSWER_OPEN: [], ANSWER_CLOSE: []}
        for match in self._SCAN[ignore_case].finditer(text):
            closing, think = match.group(1), match.group(2) is not None
            tag = (THINK_CLOSE if closing else THINK_OPEN) if think else (ANSWER_CLOSE if closing else ANSWER_OPEN)
            self.spans[tag].append(match.span())

    def first(self, tag: str, at: int = 0) -> Span | None:
        """The first ``tag`` starting at or after ``at``."""
        spans = self.spans[tag]
        k = bisect.bisect_left(spans, (at, -1))
        return spans[k] if k < len(spans) else None

    def last(self, tag: str) -> Span | None:
        spans = self.spans[tag]
        return spans[-1] if spans else None

    def pair(self, opening: str, closing: str) -> tuple[Span, Span] | None:
        """The first ``opening`` followed by a ``closing``: what ``<x>(.*?)</x>`` finds first (same spans)."""
        start = self.first(opening)
        end = self.first(closing, start[1]) if start else None
        # a later opening tag has no closing tag after it either, so the first opening decides
        return (start, end) if start and end else None


_SPACE_THEN_ANSWER = {
    False: re.compile(r"\s*<answer>"),
    True: re.compile(r"\s*<answer>", re.IGNORECASE),
}


def find_output(text: str, *, ignore_case: bool = True, tags: Tags | None = None) -> OutputMatch | None:
    """What ``re.search(ANSWER_PATTERN, text, re.DOTALL [| re.IGNORECASE])`` finds, in linear time.

    The regex retries its lazy ``.*?`` from every ``<think>``, which is quadratic in repeated tags; this
    gives the same match: the first ``<think>``, then its first ``</think>`` followed by white space and
    ``<answer>`` (runs of white space between closing tags are disjoint, so all these checks together
    are linear), then the first ``</answer>`` after that. ``tags`` reuses a scan of ``text``.
    """
    tags = tags if tags is not None else Tags(text, ignore_case=ignore_case)
    start = tags.first(THINK_OPEN)
    if start is None:
        return None
    follows = _SPACE_THEN_ANSWER[tags.ignore_case]
    closes = tags.spans[THINK_CLOSE]
    for close in closes[bisect.bisect_left(closes, (start[1], -1)) :]:
        answer = follows.match(text, close[1])
        if answer is None:
            continue
        # every later candidate has its <answer> later still: no </answer> here, none there
        end = tags.first(ANSWER_CLOSE, answer.end())
        if end is None:
            return None
        return OutputMatch(text, ((start[0], end[1]), (start[1], close[0]), (answer.end(), end[0])))
    return None


class OutputMatch:
    """The ``re.Match``-like result of :func:`find_output`: group 1 the reasoning, group 2 the answer."""

    __slots__ = ("string", "_spans")

    def __init__(self, string: str, spans: tuple[Span, Span, Span]) -> None:
        self.string = string
        self._spans = spans

    def span(self, group: int = 0) -> Span:
        return self._spans[group]

    def start(self, group: int = 0) -> int:
        return self._spans[group][0]

    def end(self, group: int = 0) -> int:
        return self._spans[group][1]

    def group(self, *groups: int) -> Any:
        texts = tuple(self.string[slice(*self._spans[g])] for g in groups or (0,))
        return texts[0] if len(texts) == 1 else texts

    def groups(self) -> tuple[str, str]:
        return self.group(1, 2)

    def __getitem__(self, group: int) -> str:
        return self.group(group)

    def __repr__(self) -> str:
        return f"<OutputMatch span={self._spans[0]} match={self.group(0)[:60]!r}>"


class OutputPattern:
    """``ANSWER_PATTERN`` compiled for linear search: ``search(text)`` as ``re.Pattern.search`` gives it.

    ``regex`` is the plain compiled regex (same matches, quadratic on adversarial text).
    """

    def __init__(self, *, ignore_case: bool) -> None:
        self.ignore_case = ignore_case
        self.pattern = ANSWER_PATTERN
        self.flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
        self.regex = re.compile(ANSWER_PATTERN, self.flags)

    def search(self, text: str) -> OutputMatch | None:
        return find_output(text, ignore_case=self.ignore_case)

    def __repr__(self) -> str:
        return f"OutputPattern({self.pattern!r}, ignore_case={self.ignore_case})"


#: group 1 the reasoning, group 2 the answer; case-sensitive (reward, training data)
OUTPUT_RE = OutputPattern(ignore_case=False)
#: the same, case-insensitive: what inference accepts from a model
OUTPUT_RE_LENIENT = OutputPattern(ignore_case=True)

# Which field of a passage dict holds its text, in priority order (the authors' convert_doc_to_prompt_content).
TEXT_FIELDS = ("text", "segment", "contents", "content", "body", "passage")


def format_id_chain(ids: Sequence[int]) -> str:
    """``[a] > [b] > ...`` for 1-based ids."""
    return " > ".join(f"[{i}]" for i in ids)


def format_output(reasoning: str, ids: Sequence[int], *, spaced: bool = True) -> str:
    """A model output for 1-based ``ids``.

    ``spaced=True`` is the form of the system prompt and the paper's Fig. 12, which SFT targets use:
    ``<think> {reasoning} </think> <answer> [a] > [b] </answer>``; ``spaced=False`` the tight form
    ``<think>{reasoning}</think> <answer>[a] > [b]</answer>``.
    """
    chain = format_id_chain(ids)
    if spaced:
        return f"<think> {reasoning.strip()} </think> <answer> {chain} </answer>"
    return f"<think>{reasoning}</think> <answer>{chain}</answer>"


_PREFIX_RE = re.compile(
    r"^I will provide you with (?P<num>\d+) passages, each indicated by a numerical identifier \[\]\. "
    r"Rank the passages based on their relevance to the search query: (?P<query>.*?)\.\n\n(?=\[1\] )",
    re.DOTALL,
)


def parse_user_message(text: str) -> tuple[str, list[str]]:
    """Split a ReasonRank user message back into (query, passage contents); ``ValueError`` if it is not one.

    Unambiguous because the prompt builder turns every ``[n]`` inside the query and the passages into
    ``(n)``: the first ``.\\n\\n[1] `` ends the query, ``\\n[k+1] `` ends passage k, and the suffix repeats
    the query (``\\nSearch Query: {query}.\\nRank the {num} passages above``).
    """
    match = _PREFIX_RE.match(text)
    if not match:
        raise ValueError(
            "user message does not start with the ReasonRank prefix "
            "('I will provide you with N passages ... search query: Q.' then a blank line and [1])"
        )
    num, query = int(match.group("num")), match.group("query")
    suffix_at = text.rfind(f"\nSearch Query: {query}.\nRank the {num} passages above")
    if suffix_at < match.end():
        raise ValueError(f"user message has no 'Search Query: ...' suffix repeating the query for {num} passages")
    body = text[match.end() : suffix_at + 1]  # keeps the newline that ends the last passage
    passages = []
    position = 0
    for k in range(1, num + 1):
        marker = f"[{k}] "
        if not body.startswith(marker, position):
            raise ValueError(f"user message: passage [{k}] not found where expected")
        start = position + len(marker)
        if k < num:
            end = body.find(f"\n[{k + 1}] ", start)
            if end < 0:
                raise ValueError(f"user message: passage [{k + 1}] of {num} not found")
        else:
            end = len(body) - 1
            if f"\n[{k + 1}] " in body[start:]:
                raise ValueError(f"user message holds more than the {num} passages its prefix announces")
        passages.append(body[start:end])
        position = end + 1
    return query, passages
