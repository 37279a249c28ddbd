"""Keyword arguments for TRL's ``SFTConfig`` / ``GRPOConfig`` from a run config (shared by both stages)."""

from __future__ import annotations

from typing import Any

__all__ = ["trainer_common_kwargs"]


def _bf16(config) -> bool:
    if config.bf16 is not None:
        return config.bf16
    import torch

    return bool(not config.use_cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def trainer_common_kwargs(config, trl_config_cls, stage_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``trl_config_cls``: the fields shared by both stages (portable across
    transformers 5.17-5.24 and CPU/GPU), then ``stage_kwargs``, then ``config.trainer_kwargs`` (which win)."""
    fields = trl_config_cls.__dataclass_fields__
    checkpoint_key = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    kwargs = {
        "output_dir": config.output_dir,
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "lr_scheduler_type": config.lr_scheduler_type,
        # transformers 5.23 folds the ratio into warmup_steps (a float in [0, 1) is a ratio)
        ("warmup_ratio" if "warmup_ratio" in fields else "warmup_steps"): float(config.warmup_ratio),
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "bf16": _bf16(config),
        "fp16": False,
        "use_cpu": config.use_cpu,
        checkpoint_key: config.gradient_checkpointing,
        "logging_steps": config.logging_steps,
        "save_strategy": config.save_strategy,
        "save_only_model": config.save_only_model,
        "report_to": config.report_to,
        "run_name": config.run_name,
        "seed": config.seed,
        "dataloader_num_workers": 0,
    }
    kwargs.update(stage_kwargs or {})
    kwargs.update(config.trainer_kwargs)
    unknown = sorted(k for k in kwargs if k not in fields)
    if unknown:
        raise ValueError(f"{trl_config_cls.__name__} has no field(s) {unknown} (check trainer_kwargs)")
    _check_report_to(kwargs["report_to"])
    return kwargs


def _check_report_to(report_to: Any) -> None:
    """Fail before loading the model when a requested logger (tensorboard, wandb, ...) is not installed."""
    from transformers.integrations import get_available_reporting_integrations

    available = get_available_reporting_integrations()
    wanted = [report_to] if isinstance(report_to, str) else list(report_to or [])
    missing = [name for name in wanted if name not in ("none", "all") and name not in available]
    if missing:
        raise ValueError(
            f"report_to {missing}: not installed (e.g. pip install {' '.join(missing)}); "
            "installed: " + (", ".join(available) or "none")
        )
