"""Data passed between the reranker and its backends, and what a rerank returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SamplingParams", "ChatRequest", "Completion", "WindowTrace", "RerankResult", "BackendError"]


class BackendError(RuntimeError):
    """A backend could not produce an output for a window (after its retries)."""


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings for one window. ``temperature == 0`` means greedy."""

    max_new_tokens: int = 3172
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = -1  # -1: off
    min_p: float = 0.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class ChatRequest:
    """One window to rank: chat messages plus decoding settings. ``tag`` names it in errors and traces."""

    messages: list[dict[str, str]]
    sampling: SamplingParams
    tag: str = ""


@dataclass
class Completion:
    """A backend's answer to one :class:`ChatRequest`. ``error`` is set (and ``text`` empty) on failure."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0
    finish_reason: str | None = None
    error: str | None = None


@dataclass
class WindowTrace:
    """One LLM call: what it saw, what it said and how that was read."""

    query_index: int
    round: int
    passages: list[int]  # input indices shown as [1], [2], ... in this window
    order: list[int]  # input indices best first, as applied
    raw_output: str
    reasoning: str
    answer: str | None
    repairs: list[str] = field(default_factory=list)
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0
    finish_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RerankResult:
    """The reranking of one query's passages.

    ``order`` is a permutation of ``range(len(passages))``, best first; ``scores[i]`` is the score of
    passage ``order[i]``: strictly decreasing and derived from the rank (``1 / (rank + 1)``), not a
    calibrated relevance. ``windows`` traces every LLM call made for this query.
    """

    query: str
    order: list[int]
    scores: list[float]
    windows: list[WindowTrace] = field(default_factory=list)
    rounds: int = 0

    @property
    def calls(self) -> int:
        return len(self.windows)

    @property
    def repaired(self) -> bool:
        """Whether any window's output needed repair (or failed and kept its order)."""
        return any(w.repairs or w.error for w in self.windows)

    def score_of(self) -> dict[int, float]:
        """Input index -> score."""
        return dict(zip(self.order, self.scores))

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "order": self.order,
            "scores": self.scores,
            "rounds": self.rounds,
            "windows": [w.to_dict() for w in self.windows],
        }


def rank_scores(n: int) -> list[float]:
    """Strictly decreasing scores for ranks ``0..n-1``."""
    return [1.0 / (rank + 1) for rank in range(n)]
