"""Periodic validation during GRPO (verl validates every ``test_freq`` steps on a held-out parquet).

Every ``validation_steps`` optimizer steps, and once before training, the policy answers each
validation window greedily (verl's validation decoding); the mean reward (the training reward with its
answer check), the format-valid rate and nDCG@10 of the window as the reranker would order it
(:func:`reasonrank.core.parsing.parse_ranking`) are appended to the trainer's ``log_history`` as
``val/reward``, ``val/valid`` and ``val/ndcg@10``, and so reach ``log_history.json`` and the plot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from transformers import TrainerCallback

from reasonrank.core.parsing import parse_ranking
from reasonrank.training.ranking_metrics import ndcg_at_k
from reasonrank.training.rewards import score_completion

__all__ = ["RankingValidation", "generate_greedy", "score_rows", "validation_callback"]

logger = logging.getLogger(__name__)


def generate_greedy(
    model: Any, tokenizer: Any, prompts: Sequence[list[dict]], max_new_tokens: int, batch_size: int = 8
):
    """Greedy completions (text) of chat ``prompts`` with ``model``; restores the model's train/eval mode."""
    import torch

    was_training = model.training
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    texts: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = [
                tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                for p in prompts[start : start + batch_size]
            ]
            enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            texts += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return texts


def score_rows(texts: Sequence[str], rows: Sequence[dict], reward_kwargs: dict[str, Any] | None = None) -> dict:
    """Mean reward, format-valid rate and nDCG@10 (reranker's parse) of completions of GRPO ``rows``."""
    reward_kwargs = reward_kwargs or {}
    totals = {"reward": 0.0, "valid": 0.0, "ndcg@10": 0.0}
    for text, row in zip(texts, rows, strict=True):
        parts = score_completion(
            text,
            initial_list=row["initial_list"],
            final_list=row["final_list"],
            relevant_docids=row["relevant_docids"],
            **reward_kwargs,
        )
        order = parse_ranking(text, len(row["initial_list"]))
        totals["reward"] += parts.reward
        totals["valid"] += float(parts.answer_ok)
        totals["ndcg@10"] += ndcg_at_k([row["initial_list"][i] for i in order], row["relevant_docids"], 10)
    n = max(len(rows), 1)
    return {key: value / n for key, value in totals.items()}


class RankingValidation(TrainerCallback):
    """A ``TrainerCallback`` that validates the policy on GRPO rows every ``every`` steps (and at step 0)."""

    def __init__(
        self,
        rows: list[dict],
        tokenizer: Any,
        *,
        every: int,
        max_new_tokens: int,
        reward_kwargs: dict[str, Any] | None = None,
        batch_size: int = 8,
        log: Callable[[str], None] = logger.info,
    ) -> None:
        if every < 1:
            raise ValueError(f"validation every {every} steps: must be >= 1")
        self.rows = rows
        self.tokenizer = tokenizer
        self.every = every
        self.max_new_tokens = max_new_tokens
        self.reward_kwargs = reward_kwargs or {}
        self.batch_size = batch_size
        self.log = log
        self.history: list[dict[str, float]] = []

    def _validate(self, state, model) -> None:
        if model is None or not state.is_world_process_zero:
            return
        texts = generate_greedy(
            model, self.tokenizer, [r["prompt"] for r in self.rows], self.max_new_tokens, self.batch_size
        )
        metrics = {f"val/{k}": v for k, v in score_rows(texts, self.rows, self.reward_kwargs).items()}
        entry = {"step": state.global_step, **metrics}
        self.history.append(entry)
        state.log_history.append(entry)
        self.log("validation at step {step}: reward {val/reward:.3f}, nDCG@10 {val/ndcg@10:.3f}".format(**entry))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._validate(state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self._validate(state, model)


def validation_callback(config, rows: list[dict], tokenizer: Any) -> RankingValidation:
    """The validation callback of a :class:`~reasonrank.training.config.GRPORunConfig` on ``rows``."""
    reward_kwargs: dict[str, Any] = {"answer_check": config.answer_check}
    if config.reward == "ndcg":
        reward_kwargs.update(recall_weight=0.0, rbo_weight=0.0)
    else:
        reward_kwargs.update(
            ndcg_weight=config.ndcg_weight, recall_weight=config.recall_weight, rbo_weight=config.rbo_weight
        )
    return RankingValidation(
        rows,
        tokenizer,
        every=config.validation_steps,
        max_new_tokens=config.max_completion_length,
        reward_kwargs=reward_kwargs,
        batch_size=config.validation_batch_size,
    )
