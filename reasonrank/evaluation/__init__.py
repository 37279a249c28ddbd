"""Evaluation harness: TREC runs and qrels, shipped datasets (DL19/DL20/NovelEval/BRIGHT), metrics
on ir-measures (pytrec_eval, trec_eval-exact), paired comparisons and end-to-end benches.

Heavy libraries (ir-measures, scipy, matplotlib) are imported when used.
"""

from reasonrank.evaluation.bench import BenchResult, RerankedRun, bench, bench_dataset, rerank_dataset
from reasonrank.evaluation.compare import Comparison, compare, plot_differences
from reasonrank.evaluation.datasets import (
    BRIGHT_TASKS,
    Candidate,
    Dataset,
    data_dir,
    dataset_from_files,
    load_bright,
    load_dataset,
    load_datasets,
    load_text_jsonl,
)
from reasonrank.evaluation.io import (
    Qrels,
    Run,
    ranking,
    read_corpus,
    read_qrels,
    read_queries,
    read_run,
    write_qrels,
    write_run,
)
from reasonrank.evaluation.metrics import DEFAULT_METRICS, Evaluation, evaluate, exclude, parse_metrics

__all__ = [
    "BRIGHT_TASKS",
    "BenchResult",
    "Candidate",
    "Comparison",
    "DEFAULT_METRICS",
    "Dataset",
    "Evaluation",
    "Qrels",
    "RerankedRun",
    "Run",
    "bench",
    "bench_dataset",
    "compare",
    "data_dir",
    "dataset_from_files",
    "evaluate",
    "exclude",
    "load_bright",
    "load_dataset",
    "load_datasets",
    "load_text_jsonl",
    "parse_metrics",
    "plot_differences",
    "ranking",
    "read_corpus",
    "read_qrels",
    "read_queries",
    "read_run",
    "rerank_dataset",
    "write_qrels",
    "write_run",
]
