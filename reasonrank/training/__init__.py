"""Post-training for reasoning rerankers: the ReasonRank recipe on TRL + PEFT.

Two stages (recipe sections 4-5): cold-start SFT on teacher reasoning chains
(:func:`reasonrank.training.sft.run_sft`) and GRPO with the multi-view ranking reward
(:func:`reasonrank.training.grpo.run_grpo`, :mod:`reasonrank.training.rewards`).
Data loaders for the released formats live in :mod:`reasonrank.training.data`.

Importing this package is light: torch, transformers, TRL and PEFT are imported only by the
stage runners when they run.
"""

from __future__ import annotations

__all__ = ["run_sft", "run_grpo"]


def run_sft(config, overrides=None):
    """Run cold-start SFT from an ``SFTRunConfig``, a YAML path/shipped name or a dict (lazy import)."""
    from reasonrank.training.sft import run_sft as _run

    return _run(config, overrides)


def run_grpo(config, overrides=None):
    """Run GRPO from a ``GRPORunConfig``, a YAML path/shipped name or a dict (lazy import)."""
    from reasonrank.training.grpo import run_grpo as _run

    return _run(config, overrides)
