"""Stage 1: cold-start SFT on teacher reasoning chains with TRL's ``SFTTrainer`` (recipe §4).

Rows are prompt-completion conversations (system+user prompt, assistant ``<think>..</think> <answer>..</answer>``)
trained with completion-only loss, which is the assistant-only loss of LLaMA-Factory
(``train_on_prompt=false``) and needs no ``{% generation %}`` markers in the chat template.
"""

from __future__ import annotations

import logging
from pathlib import Path

from reasonrank.training.config import SFTRunConfig, load_config
from reasonrank.training.data import prepare_records, sft_rows
from reasonrank.training.models import load_model, load_tokenizer, lora_config, require_training_stack
from reasonrank.training.reports import TrainResult, finish_run
from reasonrank.training.trainer_args import trainer_common_kwargs
from reasonrank.training.workspace import ensure_toy_workspace

logger = logging.getLogger(__name__)

__all__ = ["run_sft", "build_sft_trainer"]

# TRL may add an EOS after the completion and tokenizes prompt and completion separately.
_LENGTH_MARGIN = 4


def build_sft_trainer(config: SFTRunConfig, rows: list[dict] | None = None, *, callbacks=None):
    """An ``SFTTrainer`` for ``config`` (rows built from ``config.data`` unless given); returns (trainer, reports)."""
    require_training_stack()
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    ensure_toy_workspace(config)
    tokenizer = load_tokenizer(config.model)
    reports: list = []
    if rows is None:
        records, reports = prepare_records(config.data)
        rows = sft_rows(
            records,
            tokenizer=tokenizer,
            mode=config.data.prompt_mode,
            max_passage_tokens=config.data.max_passage_tokens,
            max_length=config.max_length - _LENGTH_MARGIN,
        )
    args = SFTConfig(
        **trainer_common_kwargs(config, SFTConfig, {"max_length": config.max_length, "completion_only_loss": True})
    )
    trainer = SFTTrainer(
        model=load_model(config),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(config),
        callbacks=callbacks,
    )
    # TRL silently drops rows whose labels are all masked (e.g. a completion cut off by max_length).
    kept = len(trainer.train_dataset)
    if kept != len(rows):
        raise RuntimeError(
            f"SFTTrainer kept {kept} of {len(rows)} examples; some exceed max_length="
            f"{config.max_length} in ways passage truncation could not fix"
        )
    return trainer, reports


def run_sft(config: SFTRunConfig | str | Path | dict, overrides: list[str] | None = None) -> TrainResult:
    """Run cold-start SFT; saves the model (or adapter, plus a merged model) to ``config.output_dir``."""
    if not isinstance(config, SFTRunConfig):
        config = load_config(SFTRunConfig, config, overrides)
    config.validate()
    trainer, reports = build_sft_trainer(config)
    output = trainer.train()
    return finish_run(
        trainer,
        config,
        stage="sft",
        train_output=output,
        reports=reports,
        adapter=config.finetuning != "full",
        plot_name="training_curves.png",
    )
