"""Rerank a dataset query batch by query batch, writing the run and the traces as it goes.

A long run loses nothing it finished: after each ``rerank_batch`` call, its queries' lines are
appended to the run file and their windows to the traces, and both are flushed. A crash (or
``on_error="raise"``) at query 900 leaves the first 899 on disk.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, fields
from typing import IO, Any

from reasonrank.evaluation.accounting import (
    planned_windows,
    token_cost,
    trace_line,
)
from reasonrank.evaluation.datasets import Candidate, Dataset
from reasonrank.evaluation.io import check_tag, write_ranking

__all__ = ["RerankedRun", "rerank_dataset"]

_COUNTS = (
    "calls",
    "rounds",
    "windows",
    "cached_calls",
    "repaired_windows",
    "failed_windows",
    "skipped_windows",
    "error_windows",
    "incomplete_queries",
    "prompt_tokens",
    "completion_tokens",
)


@dataclass
class RerankedRun:
    """The reranked lists (``{qid: [(docid, score), ...]}``, best first) and what producing them cost.

    ``calls``: model calls made (failed ones included, cache hits not); ``windows``: planned windows;
    ``error_windows``: windows the model did not rank because of an error: failed ones, plus those
    skipped in a ``rerank_batch`` call where a window failed (fail-fast); windows skipped only because
    a ``deadline`` ran out are not errors. ``first_error`` is the first failed window's error.
    """

    rankings: dict[str, list[tuple[str, float]]]
    calls: int = 0
    rounds: int = 0  # sequential rounds, summed over batches
    windows: int = 0
    cached_calls: int = 0
    repaired_windows: int = 0
    failed_windows: int = 0
    skipped_windows: int = 0
    error_windows: int = 0
    incomplete_queries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    first_error: str | None = None

    def run(self) -> dict[str, dict[str, float]]:
        return {q: dict(docs) for q, docs in self.rankings.items()}

    @property
    def failed_share(self) -> float:
        """The share of windows lost to errors (``error_windows / windows``; 0 without windows)."""
        return self.error_windows / self.windows if self.windows else 0.0

    def usd(self, price_in: float | None = None, price_out: float | None = None) -> float | None:
        """The tokens' cost at these prices per million tokens (None when neither is given)."""
        return token_cost(self.prompt_tokens, self.completion_tokens, price_in, price_out)

    def cost(self, price_in: float | None = None, price_out: float | None = None) -> dict[str, Any]:
        n = max(len(self.rankings), 1)
        out: dict[str, Any] = {"queries": len(self.rankings), **{name: getattr(self, name) for name in _COUNTS}}
        out["failed_share"] = round(self.failed_share, 4)
        out["seconds"] = round(self.seconds, 3)
        out["seconds_per_query"] = round(self.seconds / n, 3)
        usd = self.usd(price_in, price_out)
        if usd is not None:
            out["usd"] = round(usd, 6)
        if self.first_error is not None:
            out["first_error"] = self.first_error
        return out

    def usage_line(self, price_in: float | None = None, price_out: float | None = None) -> str:
        """``tokens: P prompt + C completion; K cached calls, S skipped windows[; $X]``."""
        line = (
            f"tokens: {self.prompt_tokens} prompt + {self.completion_tokens} completion; "
            f"{self.cached_calls} cached calls, {self.skipped_windows} skipped windows"
        )
        usd = self.usd(price_in, price_out)
        return line + (f"; cost ${usd:.4f}" if usd is not None else "")

    @classmethod
    def total(cls, runs: list[RerankedRun]) -> RerankedRun:
        """The counts of several runs added up (rankings left out: query ids may repeat across datasets)."""
        out = cls({})
        for run in runs:
            for f in fields(cls):
                if f.name in _COUNTS or f.name == "seconds":
                    setattr(out, f.name, getattr(out, f.name) + getattr(run, f.name))
            out.first_error = out.first_error or run.first_error
        return out

    def add_batch(self, results: list[Any]) -> None:
        """Count one ``rerank_batch`` call's results (their rankings are added by the caller).

        Skipped windows come from ``usage`` (a sliding schedule cut short never traces its later windows).
        """
        failed = skipped = 0
        for result in results:
            usage = result.usage
            statuses = [w.status for w in result.windows]
            for name in ("calls", "cached_calls", "prompt_tokens", "completion_tokens"):
                setattr(self, name, getattr(self, name) + getattr(usage, name))
            self.windows += len(statuses) - statuses.count("skipped") + usage.skipped_windows
            self.repaired_windows += statuses.count("repaired")
            failed += statuses.count("failed")
            skipped += usage.skipped_windows
            complete = getattr(result, "complete", None)
            if complete is None:
                complete = not usage.skipped_windows and "failed" not in statuses
            self.incomplete_queries += not complete
            if self.first_error is None:
                self.first_error = next((w.error for w in result.windows if w.status == "failed"), None)
        self.failed_windows += failed
        self.skipped_windows += skipped
        self.error_windows += failed + (skipped if failed else 0)
        self.rounds += max((r.rounds for r in results), default=0)


class _WindowProgress:
    """A progress bar over the planned windows, ticked as each window finishes (``on_window``)."""

    def __init__(self, reranker: Any, name: str, lists: dict[str, list[Candidate]], enabled: bool) -> None:
        from tqdm.auto import tqdm

        self._planned = _planned_per_query(reranker, lists)
        total = sum(self._planned.values()) if self._planned is not None else None
        self._bar = tqdm(total=total, unit="window", desc=f"reranking {name}", disable=not enabled)
        self._lock = threading.Lock()
        self._ticked = 0  # in the current batch
        self._queries = 0
        self._of = len(lists)

    def tick(self, trace: Any = None) -> None:
        with self._lock:
            self._ticked += 1
            self._bar.update(1)

    def batch_done(self, qids: list[str], windows: int) -> None:
        """Catch up with windows that were not ticked (skipped ones)."""
        with self._lock:
            planned = sum(self._planned[q] for q in qids) if self._planned is not None else windows
            self._bar.update(max(planned - self._ticked, 0))
            self._ticked = 0
            self._queries += len(qids)
            self._bar.set_postfix_str(f"{self._queries}/{self._of} queries", refresh=False)

    def close(self) -> None:
        self._bar.close()


def _planned_per_query(reranker: Any, lists: dict[str, list[Candidate]]) -> dict[str, int] | None:
    """Planned windows per query, or None for a reranker without ``strategy`` and ``depth``."""
    strategy, depth = getattr(reranker, "strategy", None), getattr(reranker, "depth", None)
    if strategy is None or not hasattr(strategy, "plan") or not isinstance(depth, int):
        return None
    by_size: dict[int, int] = {}
    out = {}
    for qid, cands in lists.items():
        n = min(depth, len(cands))
        if n not in by_size:
            by_size[n] = planned_windows(strategy, n)
        out[qid] = by_size[n]
    return out


def _write_traces(traces: IO[str], dataset: str, qid: str, cands: list[Candidate], result: Any) -> None:
    for window in result.windows:
        record = {"dataset": dataset, "qid": qid, **window.to_dict()}
        record["docids"] = [cands[i].docid for i in window.passages]
        record["order_docids"] = [cands[i].docid for i in window.order]
        traces.write(trace_line(record))


def rerank_dataset(
    dataset: Dataset,
    reranker: Any,
    *,
    batch_size: int = 8,
    traces: IO[str] | None = None,
    progress: bool = False,
    run_out: IO[str] | None = None,
    tag: str = "reasonrank",
) -> RerankedRun:
    """Rerank every query's candidates with ``reranker`` (a :class:`reasonrank.Reranker`).

    ``batch_size`` queries go to one ``rerank_batch`` call (their windows are batched together).
    Excluded ids (BRIGHT) are dropped from the candidates first, as a valid first stage would.
    After each call, its queries' rankings are appended to ``run_out`` (TREC lines tagged ``tag``)
    and each window to ``traces`` as one JSON line (:func:`~reasonrank.evaluation.accounting.trace_line`),
    and both are flushed. The progress bar counts windows as they finish.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if run_out is not None:
        check_tag(tag)
    qids = dataset.qids
    lists = {}
    for qid in qids:
        drop = dataset.excluded.get(qid, set())
        lists[qid] = [c for c in dataset.candidates[qid] if c.docid not in drop]
    out = RerankedRun({})
    bar = _WindowProgress(reranker, dataset.name, lists, progress)
    started = time.perf_counter()
    try:
        for start in range(0, len(qids), batch_size):
            chunk = qids[start : start + batch_size]
            results = reranker.rerank_batch(
                [dataset.queries[q] for q in chunk],
                [[c.passage() for c in lists[q]] for q in chunk],
                on_window=bar.tick,
            )
            out.add_batch(results)
            for qid, result in zip(chunk, results):
                cands = lists[qid]
                out.rankings[qid] = [(cands[i].docid, float(s)) for i, s in zip(result.order, result.scores)]
                if run_out is not None:
                    write_ranking(run_out, qid, out.rankings[qid], tag)
                if traces is not None:
                    _write_traces(traces, dataset.name, qid, cands, result)
            for handle in (run_out, traces):
                if handle is not None:
                    handle.flush()
            bar.batch_done(chunk, sum(len(r.windows) for r in results))
    finally:
        bar.close()
        out.seconds = time.perf_counter() - started
    return out
