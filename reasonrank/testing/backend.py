"""An in-process stand-in model as a :class:`~reasonrank.core.backends.Backend`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from reasonrank.core.backends.base import Backend, skipped_completion
from reasonrank.core.types import ChatRequest, Completion
from reasonrank.testing.answers import RankFn, format_answer, lexical_ranking, parse_window_prompt

__all__ = ["FunctionBackend"]


class FunctionBackend(Backend):
    """An in-process backend that ranks each window with ``rank(query, passages) -> 0-based order``.

    ``respond(query, passages, order)`` may replace the formatting of the output: it returns the text,
    or a whole :class:`Completion` (to fail a window, e.g. ``Completion(error="...", fatal=True)``).
    ``latency`` seconds pass per ``generate`` call (one batch), slept with ``asyncio.sleep`` on the
    async path; ``concurrency`` (None: a batching local backend) is what the async engine reads.
    ``calls`` records every batch it received. A ``deadline`` is honoured between requests: those
    not started by then come back skipped.
    """

    def __init__(
        self,
        rank: RankFn = lexical_ranking,
        respond: Callable[[str, list[str], list[int]], str | Completion] | None = None,
        name: str = "function",
        *,
        latency: float = 0.0,
        concurrency: int | None = None,
    ) -> None:
        self.rank = rank
        self.respond = respond or (lambda q, p, order: format_answer(order))
        self.name = name
        self.latency = latency
        self.concurrency = concurrency
        self.calls: list[list[ChatRequest]] = []
        self._lock = threading.Lock()

    def _answer(self, request: ChatRequest) -> Completion:
        query, passages = parse_window_prompt(request.messages)
        answer = self.respond(query, passages, list(self.rank(query, passages)))
        if isinstance(answer, Completion):
            return answer
        prompt_tokens = sum(len(m["content"].split()) for m in request.messages)
        return Completion(
            text=answer,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(answer.split()),
            seconds=self.latency,
            finish_reason="stop",
        )

    def _answers(self, requests: Sequence[ChatRequest], deadline: float | None) -> list[Completion]:
        with self._lock:
            self.calls.append(list(requests))
        out = []
        for request in requests:
            if deadline is not None and time.monotonic() >= deadline:
                out.append(skipped_completion(request.tag))
            else:
                out.append(self._answer(request))
        return out

    def generate(self, requests: Sequence[ChatRequest], *, deadline: float | None = None) -> list[Completion]:
        if self.latency:
            wait = self.latency if deadline is None else min(self.latency, max(deadline - time.monotonic(), 0.0))
            time.sleep(wait)
            if wait < self.latency:  # the deadline came first: nothing finished
                with self._lock:
                    self.calls.append(list(requests))
                return [skipped_completion(r.tag) for r in requests]
        return self._answers(requests, deadline)

    async def agenerate(self, requests: Sequence[ChatRequest], *, deadline: float | None = None) -> list[Completion]:
        import asyncio

        if self.latency:
            await asyncio.sleep(self.latency)  # cancelled with the caller's task
        return self._answers(requests, deadline)
