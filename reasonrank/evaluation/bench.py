"""End to end: first-stage candidates -> rerank -> evaluate, with the run, metrics and traces on disk.

Output folder of :func:`bench` for one dataset::

    run.trec        the reranked run (TREC, scores 1/rank: strictly decreasing)
    first_stage.trec  the first stage on the same queries, as trec_eval ranks it (for ``eval --compare``)
    metrics.json    first stage vs reranked (mean over evaluated queries), paired tests, cost
    traces.jsonl    one line per window: qid, docids seen, raw output, parsed order, repairs, status

``run.trec`` and ``traces.jsonl`` are appended to and flushed after each batch of queries, so an
interrupted bench keeps the queries it finished; ``metrics.json`` is written at the end.

Several datasets (the BRIGHT tasks) get one sub-folder each and a summary ``metrics.json`` with the
per-task table and the average over tasks (BRIGHT reports the unweighted mean of the task means).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonrank.evaluation.compare import compare
from reasonrank.evaluation.datasets import Dataset
from reasonrank.evaluation.io import open_text, write_run
from reasonrank.evaluation.metrics import DEFAULT_METRICS, Evaluation, evaluate, exclude, format_table, parse_metrics
from reasonrank.evaluation.reranking import RerankedRun, rerank_dataset

__all__ = ["RerankedRun", "rerank_dataset", "BenchResult", "bench_dataset", "bench", "summary_table"]


@dataclass
class BenchResult:
    """One dataset's bench: the first stage and the reranked run evaluated on the same queries."""

    dataset: str
    first_stage: Evaluation
    reranked: Evaluation
    reranked_run: RerankedRun
    folder: Path

    price_in: float | None = None  # $ per million prompt tokens, for the cost in metrics.json
    price_out: float | None = None  # $ per million completion tokens

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
        out["cost"] = self.reranked_run.cost(self.price_in, self.price_out)
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
    prices: tuple[float | None, float | None] = (None, None),
) -> BenchResult:
    """Rerank ``dataset`` and evaluate it beside its first stage; write run, metrics and traces to ``folder``.

    ``prices``: $ per million prompt and completion tokens, for a cost estimate in ``metrics.json``.
    """
    parse_metrics(metrics)  # fail on a bad metric before spending model time
    if not dataset.qrels:
        raise ValueError(f"{dataset.name} has no judgments to evaluate against")
    if not dataset.has_texts():
        raise ValueError(f"{dataset.name} has no document texts; give a corpus (e.g. --corpus corpus.jsonl)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with (
        open_text(folder / "run.trec", "w") as run_out,
        open(folder / "traces.jsonl", "w", encoding="utf-8") as traces,
    ):
        reranked_run = rerank_dataset(
            dataset, reranker, batch_size=batch_size, traces=traces, progress=progress, run_out=run_out, tag=tag
        )
    # The first stage in the order trec_eval gives it (scores 1/rank), for `reasonrank eval --compare`.
    first_stage = exclude(dataset.first_stage_run(), dataset.excluded)
    write_run(folder / "first_stage.trec", first_stage, "first_stage", rescore=True)
    first = evaluate(dataset.first_stage_run(), dataset.qrels, metrics, excluded=dataset.excluded)
    reranked = evaluate(reranked_run.run(), dataset.qrels, metrics, excluded=dataset.excluded)
    result = BenchResult(dataset.name, first, reranked, reranked_run, folder, *prices)
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
    prices: tuple[float | None, float | None] = (None, None),
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
                prices=prices,
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
            "cost": RerankedRun.total([r.reranked_run for r in results]).cost(*prices),
            "reranker": config,
        }
        (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return results
