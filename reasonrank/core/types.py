"""Data passed between the reranker and its backends, and what a rerank returns."""

from __future__ import annotations

from dataclasses import asdict, astuple, dataclass, field
from typing import Any

__all__ = [
    "SamplingParams",
    "ChatRequest",
    "Completion",
    "WindowTrace",
    "RerankResult",
    "BackendError",
    "Usage",
    "WINDOW_STATUSES",
]

#: what happened to a planned window: ranked as answered, ranked after repairs, failed (order kept),
#: not sent to the model (deadline or fail-fast; order kept)
WINDOW_STATUSES = ("ok", "repaired", "failed", "skipped")


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
    """A backend's answer to one :class:`ChatRequest`. ``error`` is set (and ``text`` empty) on failure.

    ``fatal``: the failure would repeat for every window of this backend (HTTP 401/403/404, connection
    refused after the retries, an open circuit), so the reranker stops the call's remaining windows.
    ``cached``: read from the window cache, not generated. ``status``: ``"skipped"`` when the request
    was not finished by the deadline (``error`` then says so); None otherwise.
    """

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0
    finish_reason: str | None = None
    error: str | None = None
    fatal: bool = False
    cached: bool = False
    status: str | None = None


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
    status: str = "ok"  # one of WINDOW_STATUSES
    cached: bool = False  # answered by the window cache: no model call

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Usage:
    """What one query's reranking cost.

    ``calls``: model calls made (failed ones included, cache hits not); ``cached_calls``: windows
    answered by the cache; ``prompt_tokens`` / ``completion_tokens``: the tokens the backend reported
    for the calls made (cache hits cost none); ``failed_calls``: calls that failed (their window kept
    its order); ``skipped_windows``: planned windows never sent (deadline, fail-fast).
    """

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failed_calls: int = 0
    skipped_windows: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(astuple(self), astuple(other))))

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "total_tokens": self.total_tokens}


@dataclass
class RerankResult:
    """The reranking of one query's passages.

    ``order`` is a permutation of ``range(len(passages))``, best first; ``scores[i]`` is the score of
    passage ``order[i]``: strictly decreasing and derived from the rank (``1 / (rank + 1)``), not a
    calibrated relevance. ``windows`` traces every window of this query that was sent to the model or
    answered by the cache, and those that were due when the call stopped (status ``"skipped"``).
    ``complete`` is False when any planned window was not ranked by the model (it failed, or was
    skipped by a deadline or after a fatal error). ``usage`` counts calls, cache hits and tokens.
    """

    query: str
    order: list[int]
    scores: list[float]
    windows: list[WindowTrace] = field(default_factory=list)
    rounds: int = 0
    complete: bool = True
    usage: Usage = field(default_factory=Usage)

    @property
    def calls(self) -> int:
        """Model calls made for this query (cache hits and skipped windows not counted)."""
        return sum(1 for w in self.windows if w.status != "skipped" and not w.cached)

    @property
    def repaired(self) -> bool:
        """Whether any window's output needed repair (or failed and kept its order)."""
        return any(w.status in ("repaired", "failed") for w in self.windows)

    def score_of(self) -> dict[int, float]:
        """Input index -> score."""
        return dict(zip(self.order, self.scores))

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "order": self.order,
            "scores": self.scores,
            "rounds": self.rounds,
            "complete": self.complete,
            "usage": self.usage.to_dict(),
            "windows": [w.to_dict() for w in self.windows],
        }


def rank_scores(n: int) -> list[float]:
    """Strictly decreasing scores for ranks ``0..n-1``."""
    return [1.0 / (rank + 1) for rank in range(n)]
