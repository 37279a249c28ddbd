"""``reasonrank bench``: first stage -> rerank -> evaluate a dataset, writing run, metrics and traces.

reasonrank bench --dataset dl19 --limit 5 --model M --base-url http://localhost:8000/v1 --out runs/dl19
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reasonrank.cli.rerank import (
    add_input_options,
    add_report_options,
    add_reranker_options,
    backend_failed,
    build_reranker,
    check_report_options,
    failure_status,
    load_input,
)

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="first stage -> rerank -> evaluate a dataset, writing run, metrics and traces",
        description="Rerank a dataset's first-stage candidates and evaluate them beside the first stage. "
        "Writes run.trec, metrics.json and traces.jsonl to --out (one sub-folder per BRIGHT task); the run "
        "and the traces are appended to after each batch of queries, so an interrupted bench keeps them.",
    )
    add_input_options(
        bench, dataset_help="dl19, dl20, noveleval, bright[:TASK,...] (needs --corpus) or a JSONL file in their format"
    )
    bench.add_argument("--qrels", help="with --run: TREC qrels to evaluate against")
    bench.add_argument("--out", required=True, help="output folder")
    bench.add_argument("--metrics", default="ndcg@10", help="comma-separated metrics (default ndcg@10)")
    bench.add_argument("--tag", default="reasonrank", help="run tag")
    bench.add_argument("--json", action="store_true", help="print the metrics JSON instead of a table")
    add_report_options(bench)
    add_reranker_options(bench)
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reasonrank import BackendError
    from reasonrank.evaluation import RerankedRun, bench, parse_metrics
    from reasonrank.evaluation.bench import summary_table
    from reasonrank.evaluation.io import check_tag

    check_report_options(args)
    check_tag(args.tag)
    metrics = list(parse_metrics(args.metrics))
    if args.qrels and not args.run:
        raise ValueError("--qrels applies with --run; a --dataset brings its own judgments")
    datasets = load_input(args, many=True)
    reranker = build_reranker(args)
    try:
        results = bench(
            datasets,
            reranker,
            args.out,
            metrics=metrics,
            batch_size=args.batch_size,
            tag=args.tag,
            progress=not args.no_progress,
            prices=(args.price_in, args.price_out),
        )
    except BackendError as err:
        return backend_failed("bench", err, written=args.out)
    finally:
        reranker.close()
    if args.json:
        print((Path(args.out) / "metrics.json").read_text(), end="")
    else:
        for m in metrics:
            print(summary_table(results, m))
    total = RerankedRun.total([r.reranked_run for r in results])
    print(
        f"{total.calls} LLM calls ({total.repaired_windows} repaired, {total.failed_windows} failed) in "
        f"{total.seconds:.1f} s; run, metrics.json and traces.jsonl in {args.out}\n"
        f"{total.usage_line(args.price_in, args.price_out)}",
        file=sys.stderr,
    )
    return failure_status("bench", total, args.max_failed_share, args.out)
