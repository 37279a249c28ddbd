"""``reasonrank rerank``: rerank a first-stage run (or a shipped dataset) into a TREC run file.

    reasonrank rerank --run bm25.trec --queries queries.tsv --corpus corpus.jsonl \\
        --model liuwenhan/reasonrank-7B --base-url http://localhost:8000/v1 --output reranked.trec
    reasonrank rerank --dataset dl19 --model ... --base-url ... --output dl19.reasonrank.trec --traces traces.jsonl
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = [
    "register",
    "run",
    "add_reranker_options",
    "build_reranker",
    "add_input_options",
    "load_input",
    "backend_failed",
    "add_report_options",
    "check_report_options",
    "failure_status",
]

#: the share of windows that may fail (or be skipped after a failure) before the CLI exits 1
MAX_FAILED_SHARE = 0.1


def _cli_settings() -> list[tuple[str, Any, dict[str, Any], type, bool]]:
    """``(name, default, metadata, value type, zero means None)`` of the settings exposed as flags.

    A setting that may be None but defaults to a number (``max_passage_tokens``) takes 0 for None.
    """
    import typing

    from reasonrank.core.config import RerankerConfig, iter_settings

    hints = typing.get_type_hints(RerankerConfig)
    out = []
    for name, default, meta in iter_settings():
        if meta["cli"]:
            kinds = typing.get_args(hints[name]) or (hints[name],)
            value_type = bool if bool in kinds else next((t for t in kinds if t in (int, float)), str)
            zero_means_none = type(None) in kinds and value_type is not str and default is not None
            out.append((name, default, meta, value_type, zero_means_none))
    return out


def add_reranker_options(parser: argparse.ArgumentParser) -> None:
    """The :class:`reasonrank.Reranker` settings as flags (shared with ``reasonrank bench``).

    Flags, defaults, choices and help come from :class:`reasonrank.core.config.RerankerConfig`.
    """
    group = parser.add_argument_group("reranker")
    for name, default, meta, value_type, zero_means_none in _cli_settings():
        shown = "" if meta["secret"] or default is None else f" (default: {default}"
        if zero_means_none:
            shown += "; 0: None"
        flag = "--" + name.replace("_", "-")
        help_text = meta["help"] + (shown and shown + ")")
        if value_type is bool:  # --cache-sampled / --no-cache-sampled
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
            continue
        group.add_argument(flag, type=value_type, default=default, choices=meta["choices"], help=help_text)
    group.add_argument("--concurrency", type=int, default=None, help="openai backend: concurrent requests at most")
    group.add_argument(
        "--http-client",
        choices=("httpx", "aiohttp"),
        default=None,
        help="openai backend: the client of its async requests (default aiohttp, ~1/3.5 of httpx's CPU a request)",
    )


def build_reranker(args: argparse.Namespace) -> Any:
    """A :class:`reasonrank.Reranker` from the flags of :func:`add_reranker_options`."""
    from reasonrank import Reranker

    settings = {}
    for name, _, _, _, zero_means_none in _cli_settings():
        value = getattr(args, name)
        settings[name] = None if zero_means_none and value == 0 else value
    backend_kwargs: dict[str, Any] = {}
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise ValueError(f"--concurrency must be >= 1, got {args.concurrency}")
        if args.backend != "openai":
            raise ValueError("--concurrency applies to the openai backend")
        backend_kwargs["concurrency"] = args.concurrency
    if args.http_client is not None:
        if args.backend != "openai":
            raise ValueError("--http-client applies to the openai backend")
        backend_kwargs["http_client"] = args.http_client
    if args.backend == "openai" and not args.base_url:
        raise ValueError("the openai backend needs --base-url (an OpenAI-compatible /v1 server)")
    return Reranker(**settings, **backend_kwargs)


def add_input_options(parser: argparse.ArgumentParser, *, dataset_help: str) -> None:
    group = parser.add_argument_group("input")
    group.add_argument("--dataset", default=None, help=dataset_help)
    group.add_argument("--run", default=None, help="first-stage TREC run (qid Q0 docid rank score tag); .gz ok")
    group.add_argument("--queries", default=None, help="queries: TSV 'qid<TAB>query' or JSONL (qid, query)")
    group.add_argument(
        "--corpus",
        default=None,
        help="documents: JSONL (id/docid/_id, contents/text, title) or TSV; BRIGHT: corpus.jsonl or a folder of <task>/corpus.jsonl",
    )
    group.add_argument(
        "--skip-missing", action="store_true", help="drop candidates missing from the corpus instead of failing"
    )
    group.add_argument("--limit", type=int, default=None, help="only the first N queries")
    group.add_argument("--batch-size", type=int, default=8, help="queries per rerank_batch call (default 8)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_input(args: argparse.Namespace, *, many: bool = False) -> dict[str, Any]:
    """``{name: Dataset}`` from --dataset or --run/--queries/--corpus (one dataset unless ``many``)."""
    from reasonrank.evaluation import dataset_from_files, load_datasets

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.dataset and args.run:
        raise ValueError("give either --dataset or --run/--queries/--corpus, not both")
    if args.dataset:
        if args.queries:
            raise ValueError("--queries applies with --run; a --dataset brings its own queries")
        found = load_datasets(args.dataset, args.corpus, skip_missing=args.skip_missing)
        if not many and len(found) > 1:
            raise ValueError(f"{args.dataset!r} holds {len(found)} datasets; name one, e.g. bright:biology")
    elif args.run:
        if not args.queries or not args.corpus:
            raise ValueError("--run needs --queries and --corpus (the texts to rerank)")
        ds = dataset_from_files(
            args.run, args.queries, args.corpus, getattr(args, "qrels", None), skip_missing=args.skip_missing
        )
        found = {ds.name: ds}
    else:
        raise ValueError("give --dataset NAME|FILE, or --run RUN --queries QUERIES --corpus CORPUS")
    return {name: ds.limit(args.limit) for name, ds in found.items()}


def backend_failed(command: str, err: Exception, written: str | None = None) -> int:
    """Report a window the backend could not answer (``--on-error raise``) without a traceback."""
    kept = f"\nthe queries finished before it are in {written}" if written else ""
    print(
        f"reasonrank {command}: error: {err}\n(--on-error keep keeps a failed window's order instead){kept}",
        file=sys.stderr,
    )
    return 1


def add_report_options(parser: argparse.ArgumentParser) -> None:
    """``--max-failed-share`` and the token prices (shared with ``reasonrank bench``)."""
    group = parser.add_argument_group("failures and cost")
    group.add_argument(
        "--max-failed-share",
        type=float,
        default=MAX_FAILED_SHARE,
        help="exit 1 (the run still written) when more than this share of windows failed or were skipped "
        f"after a failure (default {MAX_FAILED_SHARE}; 1: never)",
    )
    group.add_argument("--price-in", type=float, default=None, help="$ per 1M prompt tokens, for the cost estimate")
    group.add_argument("--price-out", type=float, default=None, help="$ per 1M completion tokens")


def check_report_options(args: argparse.Namespace) -> None:
    if not 0.0 <= args.max_failed_share <= 1.0:
        raise ValueError(f"--max-failed-share must be in [0, 1], got {args.max_failed_share}")
    for name in ("price_in", "price_out"):
        value = getattr(args, name)
        if value is not None and not value >= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {value}")


def failure_status(command: str, run: Any, max_share: float, written: str) -> int:
    """1 (with the cause and counts on stderr) when more than ``max_share`` of the windows were lost to errors."""
    if not run.error_windows or run.failed_share <= max_share:
        return 0
    after = run.error_windows - run.failed_windows
    print(
        f"reasonrank {command}: error: {run.error_windows} of {run.windows} windows ({run.failed_share:.0%}) were not "
        f"ranked by the model ({run.failed_windows} failed, {after} skipped after a failure), more than "
        f"--max-failed-share {max_share:g}; first error: {run.first_error}\n"
        f"those windows kept their first-stage order in {written}",
        file=sys.stderr,
    )
    return 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rerank",
        help="rerank a TREC run (or a shipped dataset) into a TREC run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(
        parser, dataset_help="shipped dataset (dl19, dl20, noveleval, bright:TASK) or a JSONL file in their format"
    )
    parser.add_argument(
        "--output", "--out", "-o", dest="output", required=True, help="where to write the reranked TREC run (.gz ok)"
    )
    parser.add_argument(
        "--traces", default=None, help="write every window (prompt ids, raw output, parsed order) to this JSONL"
    )
    parser.add_argument("--tag", default="reasonrank", help="run tag (last column)")
    add_report_options(parser)
    add_reranker_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Rerank, appending each batch's queries to ``--output`` (and ``--traces``) as they finish."""
    from contextlib import ExitStack

    from reasonrank import BackendError
    from reasonrank.evaluation import rerank_dataset
    from reasonrank.evaluation.io import check_tag, open_text

    check_report_options(args)
    check_tag(args.tag)
    ((name, dataset),) = load_input(args).items()
    if not dataset.has_texts():
        raise ValueError(f"{name} has no document texts; give --corpus")
    reranker = build_reranker(args)
    with ExitStack() as stack:
        stack.callback(reranker.close)
        run_out = stack.enter_context(open_text(args.output, "w"))
        traces = stack.enter_context(open(args.traces, "w", encoding="utf-8")) if args.traces else None
        try:
            result = rerank_dataset(
                dataset,
                reranker,
                batch_size=args.batch_size,
                traces=traces,
                progress=not args.no_progress,
                run_out=run_out,
                tag=args.tag,
            )
        except BackendError as err:
            return backend_failed("rerank", err, written=args.output)
    cost = result.cost()
    print(
        f"reranked {cost['queries']} queries of {name} with {cost['calls']} LLM calls "
        f"({cost['repaired_windows']} repaired, {cost['failed_windows']} failed) in {cost['seconds']:.1f} s "
        f"-> {args.output}\n{result.usage_line(args.price_in, args.price_out)}",
        file=sys.stderr,
    )
    return failure_status("rerank", result, args.max_failed_share, args.output)
