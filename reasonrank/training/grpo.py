"""Stage 2: GRPO with the multi-view ranking reward on TRL's ``GRPOTrainer`` (recipe §5).

Single-turn per window, like the paper: each sample is one list, each rollout one permutation.
TRL does not truncate prompts, so passages are fitted to ``max_prompt_length`` when rows are built.
Optional vLLM generation (``use_vllm``, ``vllm_mode`` colocate/server) is also how training scales
past one GPU together with accelerate + DeepSpeed/FSDP (configs/accelerate/).
"""

from __future__ import annotations

import logging
from pathlib import Path

from reasonrank.training.config import GRPORunConfig, load_config
from reasonrank.training.data import grpo_rows, load_records, prepare_records
from reasonrank.training.models import load_model, load_tokenizer, lora_config, require_training_stack
from reasonrank.training.reports import TrainResult, finish_run
from reasonrank.training.rewards import make_reward_func
from reasonrank.training.trainer_args import trainer_common_kwargs
from reasonrank.training.workspace import ensure_toy_workspace

logger = logging.getLogger(__name__)

__all__ = ["run_grpo", "build_grpo_trainer", "reward_function"]


def reward_function(config: GRPORunConfig):
    """The TRL reward function of ``config`` (multi-view or nDCG-only, with its answer check)."""
    if config.reward == "ndcg":
        return make_reward_func(1.0, 0.0, 0.0, name="ndcg_reward", answer_check=config.answer_check)
    return make_reward_func(
        config.ndcg_weight,
        config.recall_weight,
        config.rbo_weight,
        name="multiview_reward",
        answer_check=config.answer_check,
    )


def _vllm_kwargs(config: GRPORunConfig) -> dict:
    if not config.use_vllm:
        return {"use_vllm": False}
    from trl.import_utils import is_vllm_available

    if not is_vllm_available():
        raise ImportError(
            "use_vllm=true needs vLLM (a CUDA GPU): pip install 'reasonrank[vllm]' "
            "(TRL 1.16 supports vllm>=0.22,<=0.31); or set use_vllm=false"
        )
    kwargs = {"use_vllm": True, "vllm_mode": config.vllm_mode}
    if config.vllm_mode == "colocate":
        kwargs.update(
            vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization,
            vllm_tensor_parallel_size=config.vllm_tensor_parallel_size,
            vllm_enable_sleep_mode=config.vllm_enable_sleep_mode,
            # prompts are fitted to max_prompt_length when rows are built
            vllm_max_model_length=config.max_prompt_length + config.max_completion_length,
        )
    elif config.vllm_server_base_url:
        kwargs["vllm_server_base_url"] = config.vllm_server_base_url
    return kwargs


def _rows(config: GRPORunConfig, records, tokenizer) -> list[dict]:
    return grpo_rows(
        records,
        tokenizer=tokenizer,
        mode=config.data.prompt_mode,
        max_passage_tokens=config.data.max_passage_tokens,
        max_prompt_length=config.max_prompt_length,
    )


def _split_validation(config: GRPORunConfig, records: list, reports: list) -> tuple[list, list]:
    """(training records, validation records) per ``validation_files`` / ``validation_size``."""
    if not config.validation_steps:
        return records, []
    if config.validation_files:
        data = config.data
        held = load_records(config.validation_files, format=data.format, id_query=data.id_query, id_doc=data.id_doc)
        where = ", ".join(config.validation_files)
    else:
        if config.validation_size >= len(records):
            raise ValueError(f"validation_size={config.validation_size} leaves no training records of {len(records)}")
        records, held = records[: -config.validation_size], records[-config.validation_size :]
        where = "the last training records (held out, not trained on)"
    reports.append(f"validation: {len(held)} records from {where}, every {config.validation_steps} steps")
    return records, held


def build_grpo_trainer(
    config: GRPORunConfig, rows: list[dict] | None = None, *, callbacks=None, validation_rows: list[dict] | None = None
):
    """A ``GRPOTrainer`` for ``config`` (rows built from ``config.data`` unless given); returns (trainer, reports).

    With ``validation_steps``, a :class:`~reasonrank.training.validation.RankingValidation` callback
    validates on ``validation_rows`` (else on the records ``validation_files``/``validation_size`` name).
    """
    require_training_stack()
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    vllm = _vllm_kwargs(config)  # fail fast, before loading anything
    ensure_toy_workspace(config)
    adapter_has_tokenizer = bool(config.init_adapter) and (Path(config.init_adapter) / "tokenizer_config.json").exists()
    tokenizer = load_tokenizer(config.init_adapter if adapter_has_tokenizer else config.model)
    reports: list = []
    if rows is None:
        records, reports = prepare_records(config.data)
        records, held = _split_validation(config, records, reports)
        rows = _rows(config, records, tokenizer)
        if held and validation_rows is None:
            validation_rows = _rows(config, held, tokenizer)
    elif config.validation_steps and validation_rows is None:
        if not config.validation_files:
            raise ValueError("validation with prebuilt rows needs validation_rows or validation_files")
        validation_rows = _rows(config, _split_validation(config, [], reports)[1], tokenizer)
    callbacks = list(callbacks or [])
    if config.validation_steps:
        from reasonrank.training.validation import validation_callback

        callbacks.append(validation_callback(config, validation_rows or [], tokenizer))
    stage = dict(
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        top_p=config.top_p,
        beta=config.beta,
        epsilon=config.epsilon,
        loss_type=config.loss_type,
        scale_rewards=config.scale_rewards,
        **vllm,
    )
    if config.steps_per_generation:
        stage["steps_per_generation"] = config.steps_per_generation
    args = GRPOConfig(**trainer_common_kwargs(config, GRPOConfig, stage))
    if config.init_adapter:
        model, peft_config = load_model(config, is_trainable_adapter=config.init_adapter), None
    else:
        model, peft_config = load_model(config), lora_config(config)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward_function(config)],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks or None,
    )
    return trainer, reports


def run_grpo(config: GRPORunConfig | str | Path | dict, overrides: list[str] | None = None) -> TrainResult:
    """Run GRPO; saves the policy (or adapter, plus a merged model) to ``config.output_dir``."""
    if not isinstance(config, GRPORunConfig):
        config = load_config(GRPORunConfig, config, overrides)
    config.validate()
    trainer, reports = build_grpo_trainer(config)
    output = trainer.train()
    return finish_run(
        trainer,
        config,
        stage="grpo",
        train_output=output,
        reports=reports,
        adapter=config.finetuning != "full" or bool(config.init_adapter),
        plot_name="reward_curve.png",
    )
