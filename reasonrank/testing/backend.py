"""An in-process stand-in model as a :class:`~reasonrank.core.backends.Backend`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reasonrank.core.backends.base import Backend
from reasonrank.core.types import ChatRequest, Completion
from reasonrank.testing.answers import RankFn, format_answer, lexical_ranking, parse_window_prompt

__all__ = ["FunctionBackend"]


class FunctionBackend(Backend):
    """An in-process backend that ranks each window with ``rank(query, passages) -> 0-based order``.

    ``respond(query, passages, order) -> str`` may replace the formatting of the output (to produce
    malformed answers, for instance). ``calls`` records every batch it received.
    """

    def __init__(
        self,
        rank: RankFn = lexical_ranking,
        respond: Callable[[str, list[str], list[int]], str] | None = None,
        name: str = "function",
    ) -> None:
        self.rank = rank
        self.respond = respond or (lambda q, p, order: format_answer(order))
        self.name = name
        self.calls: list[list[ChatRequest]] = []

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        self.calls.append(list(requests))
        out = []
        for request in requests:
            query, passages = parse_window_prompt(request.messages)
            order = list(self.rank(query, passages))
            out.append(Completion(text=self.respond(query, passages, order), finish_reason="stop"))
        return out
