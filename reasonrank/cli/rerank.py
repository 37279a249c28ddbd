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
]


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
            value_type = next((t for t in kinds if t in (int, float)), str)
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
        group.add_argument(
            "--" + name.replace("_", "-"),
            type=value_type,
            default=default,
            choices=meta["choices"],
            help=meta["help"] + (shown and shown + ")"),
        )
    group.add_argument("--concurrency", type=int, default=None, help="openai backend: concurrent requests at most")


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


def backend_failed(command: str, err: Exception) -> int:
    """Report a window the backend could not answer (``--on-error raise``) without a traceback."""
    print(
        f"reasonrank {command}: error: {err}\n(--on-error keep keeps a failed window's order instead)", file=sys.stderr
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
    add_reranker_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reasonrank import BackendError
    from reasonrank.evaluation import rerank_dataset, write_run

    ((name, dataset),) = load_input(args).items()
    if not dataset.has_texts():
        raise ValueError(f"{name} has no document texts; give --corpus")
    reranker = build_reranker(args)
    traces = open(args.traces, "w", encoding="utf-8") if args.traces else None
    try:
        result = rerank_dataset(
            dataset, reranker, batch_size=args.batch_size, traces=traces, progress=not args.no_progress
        )
    except BackendError as err:
        return backend_failed("rerank", err)
    finally:
        if traces is not None:
            traces.close()
        reranker.close()
    path = write_run(args.output, result.rankings, args.tag)
    cost = result.cost()
    print(
        f"reranked {cost['queries']} queries of {name} with {cost['calls']} LLM calls "
        f"({cost['repaired_windows']} repaired, {cost['failed_windows']} failed) in {cost['seconds']:.1f} s -> {path}",
        file=sys.stderr,
    )
    return 0
