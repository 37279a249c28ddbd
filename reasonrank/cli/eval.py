"""``reasonrank eval``: score runs, compare two (``reasonrank bench`` is in :mod:`reasonrank.cli.bench`).

reasonrank eval --dataset dl19                                  # the shipped first stage: ndcg@10 0.5058
reasonrank eval --run run.trec --qrels qrels.txt --metrics ndcg@10,recall@100 [--json] [--per-query]
reasonrank eval --run run.trec --dataset dl19                   # qrels (and BRIGHT exclusions) from a dataset
reasonrank eval --compare bm25.trec reranked.trec --dataset dl19 --plot diff.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score TREC runs (nDCG@10, ...), compare two with paired tests",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--run", help="TREC run to score (.gz ok); without it, --dataset's own first stage")
    runs.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="score both and test B against A")
    parser.add_argument("--qrels", help="TREC qrels (qid 0 docid grade) or JSON {qid: {docid: grade}}")
    parser.add_argument(
        "--dataset",
        help="take qrels (and BRIGHT excluded ids) from dl19, dl20, noveleval, bright[:TASK,...] or a JSONL file",
    )
    parser.add_argument(
        "--metrics",
        default="ndcg@10",
        help="comma-separated: ndcg@10, recall@100, map, mrr@10, p@5 or ir-measures syntax such as R(rel=2)@100 (default ndcg@10)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON: {metric: value} (or both runs and tests with --compare)"
    )
    parser.add_argument("--per-query", action="store_true", help="also print each query's values")
    parser.add_argument(
        "--missing",
        default="skip",
        choices=("skip", "zero"),
        help="judged queries absent from the run: left out of the mean (trec_eval default) or scored 0 (trec_eval -c)",
    )
    parser.add_argument("--digits", type=int, default=4, help="decimals printed, JSON included (default 4)")
    parser.add_argument("--percent", action="store_true", help="print tables x100 (as papers report BRIGHT)")
    parser.add_argument("--plot", help="with --compare: write a per-query difference plot (PNG)")
    parser.add_argument("--resamples", type=int, default=10_000, help="randomization test resamples (default 10000)")
    parser.set_defaults(func=run)


# ------------------------------------------------------------------------------------------- eval
def _judgments(args: argparse.Namespace) -> dict[str, tuple[dict, dict]]:
    """``{name: (qrels, excluded)}``: one entry, or one per BRIGHT task (first stage only)."""
    from reasonrank.evaluation import load_datasets, read_qrels

    if args.qrels and args.dataset:
        raise ValueError("give either --qrels or --dataset, not both")
    if args.qrels:
        return {Path(args.qrels).name: (read_qrels(args.qrels), {})}
    if args.dataset:
        return {name: (ds.qrels, ds.excluded) for name, ds in load_datasets(args.dataset).items()}
    raise ValueError("give --qrels QRELS or --dataset NAME")


def _round(values: dict[str, float], digits: int) -> dict[str, float]:
    return {k: round(v, digits) for k, v in values.items()}


def _coverage(name: str, evaluation: Any) -> str:
    notes = [f"{name}: {len(evaluation.per_query)} queries evaluated"]
    if evaluation.unjudged:
        shown = ", ".join(evaluation.unjudged[:5]) + ("..." if len(evaluation.unjudged) > 5 else "")
        notes.append(f"{len(evaluation.unjudged)} without judgments skipped ({shown})")
    if evaluation.missing:
        notes.append(
            f"{len(evaluation.missing)} judged queries not in the run "
            "(left out of the mean; --missing zero counts them as 0)"
        )
    return "; ".join(notes)


def _evaluations(args: argparse.Namespace, metrics: list[str]) -> dict[str, Any]:
    """``{name: Evaluation}``: the given run, or each dataset's own first stage."""
    from reasonrank.evaluation import evaluate, load_datasets, read_run

    if args.run:
        judged = _judgments(args)
        if len(judged) > 1:
            raise ValueError(
                f"{args.dataset!r} holds {len(judged)} datasets whose query ids overlap; evaluate one, e.g. --dataset bright:biology"
            )
        qrels, excluded = next(iter(judged.values()))
        run = read_run(args.run)
        return {Path(args.run).name: evaluate(run, qrels, metrics, excluded=excluded, missing=args.missing)}
    if not args.dataset:
        raise ValueError(
            "give --run RUN (with --qrels or --dataset), --compare RUN_A RUN_B, or --dataset alone for its first stage"
        )
    return {
        name: evaluate(ds.first_stage_run(), ds.qrels, metrics, excluded=ds.excluded, missing=args.missing)
        for name, ds in load_datasets(args.dataset).items()
    }


def _evaluations_json(args: argparse.Namespace, evaluations: dict[str, Any], average: dict | None) -> str:
    if len(evaluations) == 1:
        (evaluation,) = evaluations.values()
        if not args.per_query:
            return json.dumps(_round(evaluation.aggregate, args.digits))
        out = evaluation.to_dict(per_query=True)
        out["aggregate"] = _round(out["aggregate"], args.digits)
        return json.dumps(out, indent=2)
    out = {
        name: (e.to_dict(per_query=True) if args.per_query else _round(e.aggregate, args.digits))
        for name, e in evaluations.items()
    }
    out["average"] = _round(average, args.digits)
    return json.dumps(out, indent=2)


def _print_evaluations(args: argparse.Namespace, metrics: list[str], evaluations: dict, average: dict | None) -> None:
    from reasonrank.evaluation.metrics import format_table

    rows = {name: e.aggregate for name, e in evaluations.items()}
    if average is not None:
        rows["average"] = average
    if args.per_query:
        for name, e in evaluations.items():
            if len(evaluations) > 1:
                print(name)
            print(format_table(e.per_query, metrics, digits=args.digits, header="qid"))
            print()
    print(format_table(rows, metrics, digits=args.digits, scale=100.0 if args.percent else 1.0))
    for name, e in evaluations.items():
        if e.unjudged or e.missing or len(evaluations) == 1:
            print(_coverage(name, e), file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from reasonrank.evaluation import parse_metrics

    metrics = list(parse_metrics(args.metrics))
    if args.plot and not args.compare:
        raise ValueError("--plot needs --compare RUN_A RUN_B")
    if args.compare:
        return _run_compare(args, metrics)
    evaluations = _evaluations(args, metrics)
    average = None
    if len(evaluations) > 1:  # BRIGHT: the unweighted mean of the task means
        average = {m: sum(e.aggregate[m] for e in evaluations.values()) / len(evaluations) for m in metrics}
    if args.json:
        print(_evaluations_json(args, evaluations, average))
    else:
        _print_evaluations(args, metrics, evaluations, average)
    return 0


def _compare_json(args: argparse.Namespace, metrics: list[str], a: Any, b: Any, tests: dict[str, Any]) -> str:
    path_a, path_b = args.compare
    out: dict[str, Any] = {
        "a": {"run": path_a, **_round(a.aggregate, args.digits)},
        "b": {"run": path_b, **_round(b.aggregate, args.digits)},
        "difference": _round({m: tests[m].difference for m in metrics}, args.digits),
        "tests": {m: t.to_dict() for m, t in tests.items()},
    }
    if args.per_query:
        out["per_query"] = {m: t.per_query_difference for m, t in tests.items()}
    return json.dumps(out, indent=2)


def _print_comparison(args: argparse.Namespace, metrics: list[str], runs: list[tuple[str, Any]], tests: dict) -> None:
    from reasonrank.evaluation.metrics import format_table

    (name_a, a), (name_b, b) = runs
    d = args.digits
    if args.per_query:
        for m, t in tests.items():
            rows = {q: {"A": x, "B": y, "B-A": y - x} for q, x, y in zip(t.queries, t.a, t.b)}
            print(f"{m}\n" + format_table(rows, ["A", "B", "B-A"], digits=d, header="qid") + "\n")
    print(format_table({f"A {name_a}": a.aggregate, f"B {name_b}": b.aggregate}, metrics, digits=d))
    print()
    print(f"{'metric':<12} {'B-A':>{d + 4}}  {'t-test p':>9}  {'random. p':>9}  better/worse/tied (n)")
    for m, t in tests.items():
        print(
            f"{m:<12} {t.difference:>+{d + 4}.{d}f}  {t.t_pvalue:>9.4g}  {t.randomization_pvalue:>9.4g}  "
            f"{t.wins}/{t.losses}/{t.ties} ({len(t.queries)})"
        )
    for name, e in runs:
        if e.unjudged or e.missing:
            print(_coverage(name, e), file=sys.stderr)
    if args.plot:
        print(f"plot: {args.plot}", file=sys.stderr)


def _run_compare(args: argparse.Namespace, metrics: list[str]) -> int:
    from reasonrank.evaluation import compare, evaluate, plot_differences, read_run

    judged = _judgments(args)
    if len(judged) > 1:
        raise ValueError(
            f"{args.dataset!r} holds {len(judged)} datasets; compare runs of one, e.g. --dataset bright:biology"
        )
    qrels, excluded = next(iter(judged.values()))
    path_a, path_b = args.compare
    name_a, name_b = Path(path_a).name, Path(path_b).name
    if name_a == name_b:
        name_a, name_b = path_a, path_b
    a = evaluate(read_run(path_a), qrels, metrics, excluded=excluded, missing=args.missing)
    b = evaluate(read_run(path_b), qrels, metrics, excluded=excluded, missing=args.missing)
    tests = {m: compare(a, b, m, resamples=args.resamples) for m in metrics}
    if args.plot:
        plot_differences(tests[metrics[0]], args.plot, labels=(name_a, name_b))
    if args.json:
        print(_compare_json(args, metrics, a, b, tests))
    else:
        _print_comparison(args, metrics, [(name_a, a), (name_b, b)], tests)
    return 0
