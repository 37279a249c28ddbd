"""``reasonrank train sft|grpo --config FILE.yaml [--set key=value ...]``."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="post-train a reasoning reranker (cold-start SFT, then GRPO with the multi-view reward)",
        description="Run one training stage from a YAML config; shipped configs: reasonrank/training/configs/.",
    )
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for stage, text in (
        ("sft", "cold-start supervised fine-tuning (TRL SFTTrainer)"),
        ("grpo", "GRPO with the multi-view ranking reward (TRL GRPOTrainer)"),
    ):
        sub = stages.add_parser(stage, help=text, description=text)
        sub.add_argument(
            "--config", required=True, help="YAML file, or the name of a shipped config (e.g. tiny-cpu-sft)"
        )
        sub.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config field (dotted for nested: lora.r=8); repeatable",
        )
        sub.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
        sub.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reasonrank.training.config import GRPORunConfig, SFTRunConfig, load_config

    cls = SFTRunConfig if args.stage == "sft" else GRPORunConfig
    config = load_config(cls, args.config, args.overrides)
    if args.dry_run:
        print(config.to_yaml())
        return 0
    try:
        if args.stage == "sft":
            from reasonrank.training.sft import run_sft

            result = run_sft(config)
        else:
            from reasonrank.training.grpo import run_grpo

            result = run_grpo(config)
    except ImportError as err:  # a missing optional dependency (trl, bitsandbytes, vllm): say which
        print(f"reasonrank train {args.stage}: error: {err}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0
