"""``reasonrank``: rerank, demo, eval, bench, train, synthesize.

Each subcommand lives in its own module with ``register(subparsers)``; heavy imports happen inside
the command, so ``reasonrank --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from reasonrank import __version__

# module name -> what it registers
COMMANDS = ("rerank", "demo", "eval", "bench", "train", "synthesize", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reasonrank",
        description="Reasoning-intensive listwise reranking (ReasonRank) and its training recipe.",
    )
    parser.add_argument("--version", action="version", version=f"reasonrank {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"reasonrank.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, TypeError, ImportError) as err:
        # A user's mistake (bad file, bad option, missing extra): say what, without a traceback.
        print(f"reasonrank {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
