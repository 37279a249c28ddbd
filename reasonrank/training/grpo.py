"""Stage 2: GRPO with the multi-view ranking reward on TRL's ``GRPOTrainer`` (recipe §5).

Single-turn per window, like the paper: each sample is one list, each rollout one permutation.
TRL does not truncate prompts, so passages are fitted to ``max_prompt_length`` when rows are built.
Optional vLLM generation (``use_vllm``, ``vllm_mode`` colocate/server) is also how training scales
past one GPU together with accelerate + DeepSpeed/FSDP (configs/accelerate/).
"""

from __future__ import annotations

import logging
from pathlib import Path

from reasonrank.training.common import (
    TrainResult, finish_run, load_model, load_tokenizer, lora_config, require_training_stack, trainer_common_kwargs,
)
from reasonrank.training.config import GRPORunConfig, load_config
from reasonrank.training.data import grpo_rows, prepare_records
from reasonrank.training.rewards import make_reward_func

logger = logging.getLogger(__name__)

__all__ = ["run_grpo", "build_grpo_trainer", "reward_function"]


def reward_function(config: GRPORunConfig):
    if config.reward == "ndcg":
        return make_reward_func(1.0, 0.0, 0.0, name="ndcg_reward")
    return make_reward_func(config.ndcg_weight, config.recall_weight, config.rbo_weight, name="multiview_reward")


def _vllm_kwargs(config: GRPORunConfig) -> dict:
    if not config.use_vllm:
        return {"use_vllm": False}
    from trl.import_utils import is_vllm_available

    if not is_vllm_available():
        raise ImportError("use_vllm=true needs vLLM (a CUDA GPU): pip install 'reasonrank[vllm]' "
                          "(TRL 1.16 supports vllm>=0.22,<=0.31); or set use_vllm=false")
    kwargs = {"use_vllm": True, "vllm_mode": config.vllm_mode}
    if config.vllm_mode == "colocate":
        kwargs.update(vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization,
                      vllm_tensor_parallel_size=config.vllm_tensor_parallel_size,
                      vllm_enable_sleep_mode=config.vllm_enable_sleep_mode,
                      # prompts are fitted to max_prompt_length when rows are built
                      vllm_max_model_length=config.max_prompt_length + config.max_completion_length)
    elif config.vllm_server_base_url:
        kwargs["vllm_server_base_url"] = config.vllm_server_base_url
    return kwargs


def build_grpo_trainer(config: GRPORunConfig, rows: list[dict] | None = None, *, callbacks=None):
    """A ``GRPOTrainer`` for ``config`` (rows built from ``config.data`` unless given); returns (trainer, reports)."""
    require_training_stack()
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    vllm = _vllm_kwargs(config)  # fail fast, before loading anything
    adapter_has_tokenizer = bool(config.init_adapter) and (Path(config.init_adapter) / "tokenizer_config.json").exists()
    tokenizer = load_tokenizer(config.init_adapter if adapter_has_tokenizer else config.model)
    reports: list = []
    if rows is None:
        records, reports = prepare_records(config.data)
        rows = grpo_rows(records, tokenizer=tokenizer, mode=config.data.prompt_mode,
                         max_passage_tokens=config.data.max_passage_tokens,
                         max_prompt_length=config.max_prompt_length)
    stage = dict(
        num_generations=config.num_generations, max_completion_length=config.max_completion_length,
        temperature=config.temperature, top_p=config.top_p, beta=config.beta, epsilon=config.epsilon,
        loss_type=config.loss_type, scale_rewards=config.scale_rewards, **vllm,
    )
    if config.steps_per_generation:
        stage["steps_per_generation"] = config.steps_per_generation
    args = GRPOConfig(**trainer_common_kwargs(config, GRPOConfig, stage))
    if config.init_adapter:
        model, peft_config = load_model(config, is_trainable_adapter=config.init_adapter), None
    else:
        model, peft_config = load_model(config), lora_config(config)
    trainer = GRPOTrainer(model=model, reward_funcs=[reward_function(config)], args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          peft_config=peft_config, callbacks=callbacks)
    return trainer, reports


def run_grpo(config: GRPORunConfig | str | Path | dict, overrides: list[str] | None = None) -> TrainResult:
    """Run GRPO; saves the policy (or adapter, plus a merged model) to ``config.output_dir``."""
    if not isinstance(config, GRPORunConfig):
        config = load_config(GRPORunConfig, config, overrides)
    config.validate()
    trainer, reports = build_grpo_trainer(config)
    output = trainer.train()
    return finish_run(trainer, config, stage="grpo", train_output=output, reports=reports,
                      adapter=config.finetuning != "full" or bool(config.init_adapter), plot_name="reward_curve.png")
