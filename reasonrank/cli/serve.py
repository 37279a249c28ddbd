"""``reasonrank serve``: the reranker as a Cohere/Jina/TEI-compatible HTTP service.

    reasonrank serve                                    # offline: the embedded demo model on CPU
    reasonrank serve --base-url http://gpu-host:8000/v1 --model liuwenhan/reasonrank-7B --port 8080

Client keys come from $REASONRANK_SERVE_API_KEYS (comma-separated, sent as "Authorization: Bearer KEY"),
never from the command line. Endpoints: POST /v2/rerank, /v1/rerank, /rerank; GET /health, /v1/models,
/metrics. SIGTERM finishes the requests in flight, then exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from reasonrank.cli.rerank import add_reranker_options, build_reranker

__all__ = ["register", "run", "DEMO_MAX_NEW_TOKENS"]

# The demo model is a plumbing check: a short budget keeps CPU answers quick.
DEMO_MAX_NEW_TOKENS = 96


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the reranker as an HTTP service (Cohere, Jina and TEI rerank APIs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = parser.add_argument_group("service")
    group.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1; 0.0.0.0: all)")
    group.add_argument("--port", type=int, default=8080, help="default 8080")
    group.add_argument("--max-documents", type=int, default=1000, help="documents per request at most (default 1000)")
    group.add_argument(
        "--max-chars", type=int, default=2_000_000, help="characters of query + documents per request (default 2000000)"
    )
    group.add_argument(
        "--default-deadline",
        type=float,
        default=None,
        help="seconds per request when it gives no deadline (default none)",
    )
    group.add_argument(
        "--max-queue", type=int, default=256, help="requests waiting or running; beyond: 429 (default 256)"
    )
    group.add_argument("--max-batch", type=int, default=32, help="requests sharing one batch (default 32)")
    group.add_argument(
        "--batch-wait-ms", type=float, default=5.0, help="how long a request waits for company (default 5 ms)"
    )
    group.add_argument(
        "--max-running-batches",
        type=int,
        default=None,
        help="batches in flight at once (default 4 for --backend openai, 1 for a local model)",
    )
    group.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    add_reranker_options(parser)
    parser.set_defaults(func=run)


def use_demo_model(args: argparse.Namespace) -> bool:
    """No upstream and no model named: serve the embedded demo model offline (transformers, CPU)."""
    if getattr(args, "base_url", None) or getattr(args, "model", None) or os.environ.get("REASONRANK_BASE_URL"):
        return False
    return getattr(args, "backend", None) in (None, "openai")


def _demo_settings(args: argparse.Namespace) -> None:
    from reasonrank.core.models import DEFAULT_MODEL

    args.backend = "transformers"
    args.model = DEFAULT_MODEL
    if getattr(args, "max_new_tokens", None) is None:
        args.max_new_tokens = DEMO_MAX_NEW_TOKENS
    print(
        f"reasonrank serve: no --base-url or --model; serving the embedded demo model {DEFAULT_MODEL} on CPU "
        "(a plumbing check, not a ranker; see --help for a real model)",
        file=sys.stderr,
    )


def _access_logging(level: str) -> None:
    """JSON access lines on stderr, one per request (uvicorn's own access log is off)."""
    logger = logging.getLogger("reasonrank.serve.access")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if level in ("debug", "info") else logging.WARNING)
    logger.propagate = False


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from reasonrank.serve import ServeOptions, create_app
    except ImportError as err:
        raise ImportError(f'reasonrank serve needs the serve extra: pip install "reasonrank[serve]" ({err})') from None

    options = ServeOptions(
        max_documents=args.max_documents,
        max_chars=args.max_chars,
        default_deadline=args.default_deadline,
        max_queue=args.max_queue,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        max_running_batches=args.max_running_batches,
    )
    if use_demo_model(args):
        _demo_settings(args)
    elif args.backend == "openai" and not args.base_url:
        args.base_url = os.environ.get("REASONRANK_BASE_URL")  # the upstream may come from the environment
    reranker = build_reranker(args)
    if args.backend != "openai":
        _ = reranker.backend  # load the local model before accepting requests
    _access_logging(args.log_level)
    app = create_app(reranker, options, model_name=args.model, close_reranker=True)
    # uvicorn handles SIGTERM/SIGINT: stop accepting, finish the requests in flight, close the reranker
    # (the app's shutdown), then exit (after a signal, with the signal's status, as uvicorn does).
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0
