"""How the fakes read a window prompt and answer it: the ReasonRank grammar of :mod:`reasonrank.core.format`."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from reasonrank.core.format import format_output, parse_user_message

__all__ = ["RankFn", "format_answer", "lexical_ranking", "parse_window_prompt", "score_ranking", "scored_passages"]

#: ``rank(query, passages) -> 0-based order``
RankFn = Callable[[str, list[str]], list[int]]

_WORD = re.compile(r"\w+")
_SCORE = re.compile(r"score(\d+)")


def parse_window_prompt(messages: Sequence[dict[str, str]]) -> tuple[str, list[str]]:
    """(query, passages) of the last user message built by :func:`reasonrank.build_messages`.

    A user message that is not a window prompt reads as no query and no passages.
    """
    user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    try:
        return parse_user_message(user)
    except ValueError:
        return "", []


def lexical_ranking(query: str, passages: list[str]) -> list[int]:
    """0-based order by the number of distinct query words in each passage; ties keep input order."""
    q = {w.lower() for w in _WORD.findall(query)}
    overlap = [len(q & {w.lower() for w in _WORD.findall(p)}) for p in passages]
    return sorted(range(len(passages)), key=lambda i: (-overlap[i], i))


def format_answer(order: Sequence[int], reasoning: str = "Comparing each passage with the query.") -> str:
    """The model's output for a 0-based order: ``<think>..</think> <answer>[a] > [b]</answer>``."""
    return format_output(reasoning, [i + 1 for i in order], spaced=False)


def scored_passages(relevance: Sequence[int]) -> list[str]:
    """Passages that carry their relevance in their text (``"doc3 score42"``), for :func:`score_ranking`."""
    return [f"doc{i} score{r}" for i, r in enumerate(relevance)]


def score_ranking(query: str, passages: list[str]) -> list[int]:
    """A perfect window ranker for :func:`scored_passages`: 0-based order by the ``score<k>`` they carry."""
    return sorted(range(len(passages)), key=lambda i: -int(_SCORE.search(passages[i]).group(1)))
