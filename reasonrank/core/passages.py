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
    if not isinstance(passage, dict) and not isinstance(passage, Mapping):  # (dict first: no ABC check)
        raise TypeError(f"a passage must be a str or a dict with a 'text' field, got {type(passage).__name__}")
    for field in TEXT_FIELDS:  # the first field present and not None
        text = passage.get(field)
        if text is not None:
            break
    else:
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
    return _BRACKETED_NUMBER.sub(r"(\1)", content) if "[" in content else content


#: A text longer than ``max_tokens * CHARS_PER_TOKEN`` characters is cut at the next line end before
#: ftfy. Generous (tokenizers average 3-5 characters per token): when the truncation still cuts inside
#: the kept lines, the result is the one of the whole text; otherwise the whole text is used.
CHARS_PER_TOKEN = 6
# how far before the end of the kept lines the truncation must have cut (the last token before a line
# end may be merged with what follows it in the whole text)
_CUT_MARGIN = 16


def _head_lines(text: str, max_chars: int) -> str:
    """``text`` up to the first line end at or after ``max_chars`` (``text`` itself when there is none)."""
    if len(text) <= max_chars:
        return text
    end = text.find("\n", max_chars)
    return text if end < 0 else text[: end + 1]


def passage_contents(passages: Sequence[Passage], max_tokens: int | None) -> Generator[list[str], list[str], list[str]]:
    """Prompt contents of ``passages``; yields cleaned texts to be truncated (when ``max_tokens``).

    Each passage is cleaned once. A long passage is cut at a line end before ftfy (ftfy fixes line by
    line, so the fixed head is exactly the head of the fixed whole); only when the truncation does not
    cut well inside that head are the whole texts of those passages cleaned and yielded a second time.
    """
    stripped = [passage_text(p).strip() for p in passages]
    if max_tokens is None or not stripped:
        return [escape_ids(fix_text(s)) for s in stripped]
    heads = [_head_lines(s, max_tokens * CHARS_PER_TOKEN) if max_tokens > 0 else s for s in stripped]
    cleaned = [fix_text(h) for h in heads]
    truncated = _checked((yield cleaned), cleaned)
    redo = [i for i, (head, s) in enumerate(zip(heads, stripped)) if head is not s and not _cut_inside(
        cleaned[i], truncated[i])]  # fmt: skip
    if redo:
        whole = [fix_text(stripped[i]) for i in redo]
        for i, text in zip(redo, _checked((yield whole), whole)):
            truncated[i] = text
    return [escape_ids(t) for t in truncated]


def _checked(truncated: list[str], texts: list[str]) -> list[str]:
    if len(truncated) != len(texts):
        raise ValueError(f"truncation returned {len(truncated)} texts for {len(texts)} passages")
    return list(truncated)


def _cut_inside(head: str, truncated: str) -> bool:
    return len(truncated) + _CUT_MARGIN <= len(head.rstrip())


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
