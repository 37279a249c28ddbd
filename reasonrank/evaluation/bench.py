"""End to end: first-stage candidates -> rerank -> evaluate, with the run, metrics and traces on disk.

Output folder of :func:`bench` for one dataset::

    run.trec        the reranked run (TREC, scores 1/rank: strictly decreasing)
    first_stage.trec  the first stage on the same queries, as trec_eval ranks it (for ``eval --compare``)
    metrics.json    first stage vs reranked (mean over evaluated queries), paired tests, cost
    traces.jsonl    one line per LLM call (window): qid, docids seen, raw output, parsed order, repairs

Several datasets (the BRIGHT tasks) get one sub-folder each and a summary ``metrics.json`` with the
per-task table and the average over tasks (BRIGHT reports the unweighted mean of the task means).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from reasonrank.evaluation.compare import compare
from reasonrank.evaluation.datasets import Dataset
from reasonrank.evaluation.io import write_run
from reasonrank.evaluation.metrics import DEFAULT_METRICS, Evaluation, evaluate, exclude, format_table, parse_metrics

__all__ = ["RerankedRun", "rerank_dataset", "BenchResult", "bench_dataset", "bench", "summary_table"]


@dataclass
class RerankedRun:
    """The reranked lists (``{qid: [(docid, score), ...]}``, best first) and what producing them cost."""

    rankings: dict[str, list[tuple[str, float]]]
    calls: int = 0
    rounds: int = 0  # sequential rounds, summed over batches
    repaired_windows: int = 0
    failed_windows: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def run(self) -> dict[str, dict[str, float]]:
        return {q: dict(docs) for q, docs in self.rankings.items()}

    def cost(self) -> dict[str, Any]:
        n = max(len(self.rankings), 1)
        return {
            "queries": len(self.rankings),
            "calls": self.calls,
            "rounds": self.rounds,
            "repaired_windows": self.repaired_windows,
            "failed_windows": self.failed_windows,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
            "seconds_per_query": round(self.seconds / n, 3),
        }


def rerank_dataset(
    dataset: Dataset,
    reranker: Any,
    *,
    batch_size: int = 8,
    traces: IO[str] | None = None,
    progress: bool = False,
) -> RerankedRun:
    """Rerank every query's candidates with ``reranker`` (a :class:`reasonrank.Reranker`).

    ``batch_size`` queries go to one ``rerank_batch`` call (their windows are batched together).
    Excluded ids (BRIGHT) are dropped from the candidates first, as a valid first stage would.
    Each window is written to ``traces`` as one JSON line.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    qids = dataset.qids
    out = RerankedRun({})
    bar = tqdm(total=len(qids), unit="query", desc=f"reranking {dataset.name}", disable=not progress)
    started = time.perf_counter()
    try:
        for start in range(0, len(qids), batch_size):
            chunk = qids[start : start + batch_size]
            lists = []
            for qid in chunk:
                drop = dataset.excluded.get(qid, set())
                lists.append([c for c in dataset.candidates[qid] if c.docid not in drop])
            results = reranker.rerank_batch(
                [dataset.queries[q] for q in chunk], [[c.passage() for c in cands] for cands in lists]
            )
            for qid, cands, result in zip(chunk, lists, results):
                out.rankings[qid] = [(cands[i].docid, float(s)) for i, s in zip(result.order, result.scores)]
                out.calls += len(result.windows)
                for window in result.windows:
                    out.repaired_windows += bool(window.repairs) and window.error is None
                    out.failed_windows += window.error is not None
                    out.prompt_tokens += window.prompt_tokens or 0
                    out.completion_tokens += window.completion_tokens or 0
                    if traces is not None:
                        record = {"dataset": dataset.name, "qid": qid, **window.to_dict()}
                        record["docids"] = [cands[i].docid for i in window.passages]
                        record["order_docids"] = [cands[i].docid for i in window.order]
                        traces.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.rounds += max((r.rounds for r in results), default=0)
            bar.update(len(chunk))
    finally:
        bar.close()
    out.seconds = time.perf_counter() - started
    return out


@dataclass
class BenchResult:
    """One dataset's bench: the first stage and the reranked run evaluated on the same queries."""

    dataset: str
    first_stage: Evaluation
    reranked: Evaluation
    reranked_run: RerankedRun
    folder: Path

    def to_dict(self, reranker_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        metrics = self.first_stage.metrics
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "queries": len(self.reranked.per_query),
            "first_stage": self.first_stage.aggregate,
            "reranked": self.reranked.aggregate,
            "difference": {m: self.reranked.aggregate[m] - self.first_stage.aggregate[m] for m in metrics},
        }
        if len(self.reranked.per_query) >= 2:
            out["paired_tests"] = {m: compare(self.first_stage, self.reranked, m).to_dict() for m in metrics}
        if self.reranked.unjudged:
            out["unjudged_queries"] = self.reranked.unjudged
        out["cost"] = self.reranked_run.cost()
        if reranker_config:
            out["reranker"] = dict(reranker_config)
        return out


def reranker_config(reranker: Any) -> dict[str, Any]:
    """The settings of a :class:`reasonrank.Reranker` worth recording beside its figures."""
    config = {
        "model": getattr(reranker, "model", None),
        "backend": getattr(reranker, "backend_name", None),
        "prompt_mode": getattr(getattr(reranker, "prompt_mode", None), "value", None),
        "strategy": repr(getattr(reranker, "strategy", None)),
        "window_size": getattr(reranker, "window_size", None),
        "step": getattr(reranker, "step", None),
        "depth": getattr(reranker, "depth", None),
        "max_passage_tokens": getattr(reranker, "max_passage_tokens", None),
    }
    sampling = getattr(reranker, "sampling", None)
    if sampling is not None:
        config["sampling"] = dict(sampling.__dict__)
    return config


def bench_dataset(
    dataset: Dataset,
    reranker: Any,
    folder: str | Path,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    batch_size: int = 8,
    tag: str = "reasonrank",
    progress: bool = False,
) -> BenchResult:
    """Rerank ``dataset`` and evaluate it beside its first stage; write run, metrics and traces to ``folder``."""
    parse_metrics(metrics)  # fail on a bad metric before spending model time
    if not dataset.qrels:
        raise ValueError(f"{dataset.name} has no judgments to evaluate against")
    if not dataset.has_texts():
        raise ValueError(f"{dataset.name} has no document texts; give a corpus (e.g. --corpus corpus.jsonl)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "traces.jsonl", "w", encoding="utf-8") as traces:
        reranked_run = rerank_dataset(dataset, reranker, batch_size=batch_size, traces=traces, progress=progress)
    write_run(folder / "run.trec", reranked_run.rankings, tag)
    # The first stage in the order trec_eval gives it (scores 1/rank), for `reasonrank eval --compare`.
    first_stage = exclude(dataset.first_stage_run(), dataset.excluded)
    write_run(folder / "first_stage.trec", first_stage, "first_stage", rescore=True)
    first = evaluate(dataset.first_stage_run(), dataset.qrels, metrics, excluded=dataset.excluded)
    reranked = evaluate(reranked_run.run(), dataset.qrels, metrics, excluded=dataset.excluded)
    result = BenchResult(dataset.name, first, reranked, reranked_run, folder)
    (folder / "metrics.json").write_text(json.dumps(result.to_dict(reranker_config(reranker)), indent=2) + "\n")
    return result


def summary_table(
    results: Sequence[BenchResult],
    metric: str,
    *,
    scale: float = 100.0,
    digits: int = 2,
    labels: tuple[str, str] = ("first stage", "reranked"),
) -> str:
    """Per-dataset first stage / reranked / difference on ``metric``, and the unweighted average."""
    first, second = labels
    rows: dict[str, dict[str, float]] = {}
    for r in results:
        before, after = r.first_stage.aggregate[metric], r.reranked.aggregate[metric]
        rows[r.dataset] = {first: before, second: after, "diff": after - before}
    if len(results) > 1:
        rows["average"] = {k: sum(v[k] for v in rows.values()) / len(results) for k in (first, second, "diff")}
    table = format_table(rows, [first, second, "diff"], scale=scale, digits=digits)
    return f"{metric}" + (f" (x{scale:g})" if scale != 1 else "") + f"\n{table}"


def bench(
    datasets: Mapping[str, Dataset],
    reranker: Any,
    out_dir: str | Path,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    batch_size: int = 8,
    limit: int | None = None,
    tag: str = "reasonrank",
    progress: bool = False,
) -> list[BenchResult]:
    """:func:`bench_dataset` over one or more datasets (``limit`` queries each); a summary for several."""
    out_dir = Path(out_dir)
    results = []
    for name, dataset in datasets.items():
        folder = out_dir if len(datasets) == 1 else out_dir / name.replace("/", "_")
        results.append(
            bench_dataset(
                dataset.limit(limit),
                reranker,
                folder,
                metrics=metrics,
                batch_size=batch_size,
                tag=tag,
                progress=progress,
            )
        )
    if len(results) > 1:
        config = reranker_config(reranker)
        names = list(parse_metrics(metrics))
        summary = {
            "datasets": {r.dataset: r.to_dict() for r in results},
            "average": {
                stage: {m: sum(getattr(r, stage).aggregate[m] for r in results) / len(results) for m in names}
                for stage in ("first_stage", "reranked")
            },
            "reranker": config,
        }
        (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return results
