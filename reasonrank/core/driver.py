"""One rerank call's state, without I/O: each query's plan and traces, the call's deadline and stop.

The sync path (:meth:`~reasonrank.core.reranker.Reranker.rerank_batch`) steps every query's plan a
round at a time; the async engine (:mod:`reasonrank.core.scheduler`) steps each query on its own.
Both read completions into traces with :func:`read_window`, move plans on with
:meth:`QueryState.finish_round` and end with :meth:`CallState.results`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reasonrank.core.parsing import KEPT_WINDOW_ORDER, parse_response
from reasonrank.core.types import BackendError, ChatRequest, Completion, RerankResult, Usage, WindowTrace, rank_scores
from reasonrank.core.windows import Plan

__all__ = ["CallState", "QueryState", "check_deadline", "read_window"]

log = logging.getLogger(__name__)

DEADLINE = "deadline exceeded"
WindowCallback = Callable[[WindowTrace], None]


def check_deadline(deadline: Any) -> float | None:
    """A per-call ``deadline=``: seconds > 0 (``math.inf``: no limit) or None."""
    if deadline is None:
        return None
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or math.isnan(deadline) or deadline <= 0:
        raise ValueError(f"deadline must be a number of seconds > 0, got {deadline!r}")
    return None if math.isinf(deadline) else float(deadline)


@dataclass
class QueryState:
    """One query of a call: its passages, its plan, their prompt contents and the window traces so far."""

    index: int
    query: str
    passages: Sequence[str]  # their texts, read once when the call was checked
    plan: Plan
    contents: list[str | None] = field(init=False)  # prompt contents of the head, None until prepared
    windows: list[WindowTrace] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.contents = [None] * self.plan.n

    def unprepared(self, windows: Sequence[Sequence[int]]) -> list[int]:
        """The passages of ``windows`` whose prompt contents are not made yet, in head order."""
        return sorted({i for window in windows for i in window if self.contents[i] is None})

    def finish_round(self, rankings: Sequence[list[int] | None]) -> None:
        """Move the plan on by this round's rankings; a window not ranked (None) ends the plan there."""
        if any(r is None for r in rankings):
            self.plan.stop(rankings)
        else:
            self.plan.apply(rankings)  # type: ignore[arg-type]

    def result(self) -> RerankResult:
        n = len(self.passages)
        usage = self.usage()
        return RerankResult(
            query=self.query,
            order=self.plan.order + list(range(self.plan.n, n)),
            scores=rank_scores(n),
            windows=self.windows,
            rounds=self.plan.rounds,
            complete=usage.failed_calls == 0 and usage.skipped_windows == 0,
            usage=usage,
        )

    def usage(self) -> Usage:
        called = [w for w in self.windows if w.status != "skipped" and not w.cached]
        return Usage(
            calls=len(called),
            cached_calls=sum(1 for w in self.windows if w.cached),
            prompt_tokens=sum(w.prompt_tokens or 0 for w in called),
            completion_tokens=sum(w.completion_tokens or 0 for w in called),
            failed_calls=sum(1 for w in called if w.status == "failed"),
            skipped_windows=max(self.plan.planned - sum(1 for w in self.windows if w.status != "skipped"), 0),
        )


class CallState:
    """What the queries of one call share: the absolute deadline, the reason it stopped, progress."""

    def __init__(
        self,
        queries: list[QueryState],
        *,
        deadline: float | None,
        on_window: WindowCallback | None = None,
        show_progress: bool = False,
        backend_name: str = "",
    ) -> None:
        self.queries = queries
        self.started = time.monotonic()
        self.deadline = None if deadline is None else self.started + deadline  # a time.monotonic() instant
        self.on_window = on_window
        self.backend_name = backend_name
        self.stop_reason: str | None = None  # DEADLINE, or the fatal error that stopped the call
        self.fatal = False
        self.on_stop: Callable[[], None] | None = None  # the async engine cancels in-flight windows
        self._progress = _progress_bar(sum(q.plan.planned for q in queries)) if show_progress else None

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(self.deadline - time.monotonic(), 0.0)

    def stop(self, reason: str, *, fatal: bool = False) -> None:
        """Stop the call (the first reason wins): no window is sent after this."""
        if self.stop_reason is None:
            self.stop_reason, self.fatal = reason, fatal
            if self.on_stop is not None:
                self.on_stop()

    def record(self, query: QueryState, trace: WindowTrace) -> None:
        """Keep a finished (or skipped) window's trace, tick the progress bar, tell ``on_window``."""
        query.windows.append(trace)
        if self._progress is not None:
            self._progress.update(1)
        if self.on_window is not None:
            self.on_window(trace)

    def skip(self, query: QueryState, windows: list[list[int]]) -> None:
        """Trace the windows that were due when the call stopped, and end the query's plan."""
        for window in windows:
            self.record(query, skipped_trace(query, window, self.skip_reason()))
        query.plan.stop()

    def skip_reason(self) -> str:
        if self.fatal:
            return f"skipped after a fatal error: {self.stop_reason}"
        return self.stop_reason or DEADLINE

    def results(self) -> list[RerankResult]:
        """The results, in query order; warns once when windows failed or were skipped by a failure."""
        self.close()
        results = [q.result() for q in self.queries]
        self._report(results)
        return results

    def close(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def _report(self, results: list[RerankResult]) -> None:
        usage = sum((r.usage for r in results), Usage())
        planned = sum(q.plan.planned for q in self.queries)
        if usage.failed_calls == 0 and not self.fatal:
            if self.stop_reason == DEADLINE:
                log.info("%s: deadline reached after %.2f s; %d of %d windows skipped (their order kept)",
                         self.backend_name, time.monotonic() - self.started, usage.skipped_windows, planned)  # fmt: skip
            return
        cause = self.stop_reason if self.fatal else _first_error(results)
        stopped = "stopped the call after a fatal error" if self.fatal else "windows failed"
        log.warning(
            "%s: %s: %s; %d of %d windows failed and %d skipped, their order kept (on_error='keep')",
            self.backend_name, stopped, cause, usage.failed_calls, planned, usage.skipped_windows,
        )  # fmt: skip


def _first_error(results: list[RerankResult]) -> str | None:
    return next((w.error for r in results for w in r.windows if w.status == "failed"), None)


def _progress_bar(total: int) -> Any:
    from tqdm.auto import tqdm  # imported only when a bar is asked for

    return tqdm(total=total, unit="window", desc="reranking", dynamic_ncols=True)


# ---------------------------------------------------------------------- reading one window
def read_window(
    query: QueryState, window: list[int], request: ChatRequest, done: Completion, *, direct: bool, raise_errors: bool,
    backend_name: str,
) -> tuple[list[int] | None, WindowTrace]:  # fmt: skip
    """The window's order (0-based within the window; None when it was not ranked) and its trace.

    A failed window raises :class:`BackendError` with ``raise_errors``, else keeps its order; a fatal
    failure or a skipped request (deadline) gives None, so the plan keeps that window's order too.
    """
    if done.status == "skipped":
        return None, skipped_trace(query, window, done.error or DEADLINE)
    round_ = query.plan.rounds
    if done.error is not None:
        if raise_errors:
            raise BackendError(f"{backend_name}: {request.tag} (query {query.query[:80]!r}) failed: {done.error}")
        local: list[int] | None = None if done.fatal else list(range(len(window)))
        reasoning, answer, repairs, status = "", None, [KEPT_WINDOW_ORDER], "failed"
    else:
        parsed = parse_response(done.text, len(window), direct=direct)
        local, reasoning, answer, repairs = parsed.order, parsed.reasoning, parsed.answer, parsed.repairs
        status = "repaired" if repairs else "ok"
    trace = WindowTrace(
        query_index=query.index,
        round=round_,
        passages=list(window),
        order=[window[i] for i in local] if local is not None else list(window),
        raw_output=done.text,
        reasoning=reasoning,
        answer=answer,
        repairs=repairs,
        error=done.error,
        prompt_tokens=done.prompt_tokens,
        completion_tokens=done.completion_tokens,
        seconds=done.seconds,
        finish_reason=done.finish_reason,
        status=status,
        cached=done.cached,
    )
    return local, trace


def skipped_trace(query: QueryState, window: list[int], reason: str) -> WindowTrace:
    """A window not sent to the model (or not finished in time): its order is kept."""
    return WindowTrace(
        query_index=query.index,
        round=query.plan.rounds,
        passages=list(window),
        order=list(window),
        raw_output="",
        reasoning="",
        answer=None,
        error=reason,
        status="skipped",
    )
