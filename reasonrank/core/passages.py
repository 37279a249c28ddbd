"""The one passage path: user passages -> prompt contents (text, clean, truncate, escape ids).

The authors' order, for every prompt the package builds (inference, training data, synthesis, demo):
title + text, strip, ftfy, truncate to the model's tokens, then ``[n]`` -> ``(n)`` so passage text
cannot pose as an identifier. Truncation is a batch call on a backend (or a tokenizer), so the
reranker's sans-IO driver can yield it to a sync or async runner: :func:`passage_contents` is that
generator; :func:`prepare_passages` runs it with a plain callable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

from reasonrank.core.format import TEXT_FIELDS
from reasonrank.core.prompts import fix_text

__all__ = [
    "Passage",
    "Truncate",
    "clean_passage",
    "escape_ids",
    "passage_contents",
    "passage_text",
    "prepare_passages",
]

Passage = str | Mapping[str, Any]
#: a batch truncation: (texts, max_tokens) -> texts, e.g. ``Backend.truncate``
Truncate = Callable[[list[str], int], list[str]]

_BRACKETED_NUMBER = re.compile(r"\[(\d+)\]")


def passage_text(passage: Passage) -> str:
    """The raw text of a passage: a string, or a dict with a text field and an optional title."""
    if isinstance(passage, str):
        return passage
    if not isinstance(passage, Mapping):
        raise TypeError(f"a passage must be a str or a dict with a 'text' field, got {type(passage).__name__}")
    text = next((passage[f] for f in TEXT_FIELDS if passage.get(f) is not None), None)
    if text is None:
        raise ValueError(
            f"passage dict has no text field (expected one of {', '.join(TEXT_FIELDS)}); keys: {sorted(passage)}"
        )
    if not isinstance(text, str):
        raise TypeError(f"passage text must be a str, got {type(text).__name__}")
    title = passage.get("title")
    return f"Title: {title} Content: {text}" if title else text


def clean_passage(passage: Passage) -> str:
    """Steps before truncation: text (with title), strip, ftfy."""
    return fix_text(passage_text(passage).strip())


def escape_ids(content: str) -> str:
    """Step after truncation: ``[n]`` -> ``(n)``."""
    return _BRACKETED_NUMBER.sub(r"(\1)", content)


def passage_contents(passages: Sequence[Passage], max_tokens: int | None) -> Generator[list[str], list[str], list[str]]:
    """Prompt contents of ``passages``; yields the cleaned texts once to be truncated (when ``max_tokens``)."""
    cleaned = [clean_passage(p) for p in passages]
    if max_tokens is not None and cleaned:
        truncated = yield cleaned
        if len(truncated) != len(cleaned):
            raise ValueError(f"truncation returned {len(truncated)} texts for {len(cleaned)} passages")
        cleaned = list(truncated)
    return [escape_ids(c) for c in cleaned]


def prepare_passages(
    passages: Sequence[Passage], truncate: Truncate | None = None, max_tokens: int | None = None
) -> list[str]:
    """Prompt contents of ``passages``, truncated by ``truncate(texts, max_tokens)`` when both are given.

    >>> prepare_passages([{"title": "T", "text": " see [1] "}])
    ['Title: T Content: see (1)']
    """
    steps = passage_contents(passages, max_tokens if truncate is not None else None)
    try:
        texts = next(steps)
        while True:
            texts = steps.send(truncate(texts, max_tokens))  # type: ignore[misc,arg-type]
    except StopIteration as done:
        return done.value
