"""The toy workspace of the tiny CPU configs: built on first use, so ``reasonrank train sft --config
tiny-cpu-sft`` runs on a fresh machine without a separate setup step."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

__all__ = ["ensure_toy_workspace"]

logger = logging.getLogger(__name__)


def ensure_toy_workspace(config, *, log: Callable[[str], None] = logger.warning) -> None:
    """Build the toy model (``<toy_workspace>/model``) and data (``<toy_workspace>/data``) when missing.

    Does nothing without ``config.toy_workspace``. A model inside the workspace that the toy builder
    does not make (GRPO's ``outputs/toy/sft``) must come from an earlier stage: that is an error.
    """
    if not config.toy_workspace:
        return
    root = Path(config.toy_workspace)
    model = Path(config.model)
    if model.is_relative_to(root) and model != root / "model" and not model.exists():
        raise FileNotFoundError(
            f"model {config.model} not found: an earlier stage writes it (reasonrank train sft --config tiny-cpu-sft)"
        )
    if (root / "model" / "config.json").is_file() and (root / "data" / "training_data_all.jsonl").is_file():
        return
    from reasonrank.testing.toy import build_toy_workspace

    log(f"building the toy model and data in {root} (once; python -m reasonrank.testing.toy does the same)")
    build_toy_workspace(root, only_missing=True)
