"""What the three framework adapters share: config keys, input checks, result -> ranked items.

No framework is imported here. Each adapter converts its framework's items to passage dicts, calls
the core :class:`~reasonrank.core.reranker.Reranker`, and maps the :class:`RankedItem` list back onto
copies of its inputs.

Behaviour fixed here, once, for all adapters:

- the empty query (or whitespace only) and a non-positive ``top_n``/``top_k`` raise ``ValueError``;
- zero inputs return ``[]`` without building the model; one input is returned without an LLM call;
- a ``top`` larger than the input returns every input;
- duplicate ids are kept: items are ranked by position, so nothing is dropped or merged;
- scores are strictly decreasing in the returned order (``1 / (rank + 1)`` of the core).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reasonrank.core.reranker import Reranker
from reasonrank.core.types import RerankResult, rank_scores

__all__ = [
    "RERANKER_KEYS",
    "RankedItem",
    "LazyReranker",
    "check_query",
    "check_top",
    "ranked_items",
    "RETRIEVAL_SCORE_KEY",
    "REASONING_KEY",
    "RANK_KEY",
    "as_sequence",
    "passage",
    "split_config",
    "trivial_items",
]

# Metadata keys the adapters write on returned items.
RETRIEVAL_SCORE_KEY = "retrieval_score"  # the first-stage score of the item, when it had one
REASONING_KEY = "reasonrank_reasoning"  # with include_reasoning=True: reasoning of the window that placed it
RANK_KEY = "reasonrank_rank"  # 0-based rank after reranking

# Constructor keywords of Reranker that the adapters accept and pass through.
RERANKER_KEYS = (
    "model",
    "backend",
    "base_url",
    "api_key",
    "prompt_mode",
    "window_size",
    "step",
    "depth",
    "strategy",
    "max_passage_tokens",
    "max_new_tokens",
    "temperature",
    "seed",
    "on_error",
)


def check_query(query: str | None) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ValueError("the query is empty; ReasonRank needs a non-empty query to rerank against")
    return query


def check_top(top: int | None, name: str = "top_n") -> int | None:
    if top is None:
        return None
    if isinstance(top, bool) or not isinstance(top, int):
        raise ValueError(f"{name} must be a positive int or None, got {top!r}")
    if top < 1:
        raise ValueError(f"{name} must be >= 1, got {top}")
    return top


@dataclass(frozen=True)
class RankedItem:
    """One returned item: its position in the input, its new rank and score."""

    index: int
    rank: int
    score: float
    reasoning: str | None = None


def _placing_reasoning(result: RerankResult) -> dict[int, str]:
    """Input index -> reasoning of the last window that ranked it (the one that fixed its place)."""
    out: dict[int, str] = {}
    for window in result.windows:  # in call order, so later windows overwrite earlier ones
        for i in window.passages:
            out[i] = window.reasoning
    return out


def ranked_items(result: RerankResult, top: int | None, *, include_reasoning: bool = False) -> list[RankedItem]:
    """The first ``top`` items of ``result`` (all when None), best first."""
    reasoning = _placing_reasoning(result) if include_reasoning else {}
    keep = len(result.order) if top is None else min(top, len(result.order))
    return [
        RankedItem(index=i, rank=r, score=result.scores[r], reasoning=reasoning.get(i) if include_reasoning else None)
        for r, i in enumerate(result.order[:keep])
    ]


def trivial_items(n: int, top: int | None) -> list[RankedItem] | None:
    """The answer without an LLM call for 0 or 1 inputs, else None."""
    if n > 1:
        return None
    return [RankedItem(index=i, rank=i, score=s) for i, s in enumerate(rank_scores(n))][: top or n]


def passage(text: str, title: str | None = None) -> dict[str, str]:
    return {"text": text, "title": title} if title else {"text": text}


class LazyReranker:
    """Holds a ready :class:`Reranker` or the keywords to build one on first use (thread-safe, once)."""

    def __init__(self, reranker: Reranker | None = None, config: Mapping[str, Any] | None = None) -> None:
        config = {k: v for k, v in (config or {}).items() if v is not None}
        if reranker is not None and config:
            raise ValueError(
                f"pass either reranker=Reranker(...) or reranker settings ({', '.join(sorted(config))}), not both"
            )
        if reranker is not None and not isinstance(reranker, Reranker):
            raise TypeError(f"reranker must be a reasonrank.Reranker, got {type(reranker).__name__}")
        self._reranker = reranker
        self._config = dict(config)
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._reranker is not None

    def get(self) -> Reranker:
        if self._reranker is None:
            with self._lock:
                if self._reranker is None:
                    self._reranker = Reranker(**self._config)
        return self._reranker


def split_config(values: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Reranker keywords among ``values`` (None dropped), plus ``extra`` backend keywords."""
    config = {k: values[k] for k in RERANKER_KEYS if values.get(k) is not None}
    config.update(extra or {})
    return config


def as_sequence(items: Sequence[Any] | None, what: str) -> list[Any]:
    if items is None:
        return []
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise TypeError(f"{what} must be a list, got {type(items).__name__}")
    return list(items)
