"""Shared pieces of the SFT and GRPO runners: model/tokenizer loading, LoRA, TRL config kwargs, plots."""

from __future__ import annotations

import importlib.util
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["TrainResult", "require_training_stack", "load_tokenizer", "load_model", "lora_config", "trainer_common_kwargs",
           "merge_adapter", "plot_log_history", "write_reports", "finish_run"]


@dataclass
class TrainResult:
    """Where a stage wrote its outputs, and what it trained on."""

    stage: str
    output_dir: str
    num_examples: int
    adapter_dir: str | None = None
    merged_dir: str | None = None
    plot: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    log_history: list[dict[str, Any]] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)

    @property
    def model_dir(self) -> str:
        """The directory to load a full model from (merged when LoRA was merged)."""
        return self.merged_dir or self.output_dir

    def summary(self) -> str:
        lines = [f"{self.stage}: trained on {self.num_examples} examples -> {self.output_dir}"]
        if self.merged_dir:
            lines.append(f"merged model: {self.merged_dir}")
        if self.plot:
            lines.append(f"plot: {self.plot}")
        lines += [f"  {k}: {v}" for k, v in self.metrics.items() if isinstance(v, (int, float))]
        lines += self.reports
        return "\n".join(lines)


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _dtype(name: str):
    import torch

    if name == "auto":
        return "auto"
    try:
        return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
                "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}[name]
    except KeyError:
        raise ValueError(f"dtype must be auto, bfloat16, float16 or float32, got {name!r}") from None


def require_training_stack() -> None:
    """Fail with an install hint when the optional training dependencies are missing."""
    missing = [name for name in ("torch", "transformers", "trl", "peft", "datasets")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"training needs {', '.join(missing)}: pip install 'reasonrank[train]'")
    # PEFT/TRL still call the gradient_checkpointing* model API that transformers >= 5.23 renamed
    # (activation_checkpointing*); harmless, and once per step otherwise.
    warnings.filterwarnings("ignore", message=r".*(is_gradient_checkpointing|gradient_checkpointing_(en|dis)able).* "
                            r"is deprecated", category=FutureWarning)


def require_bitsandbytes() -> None:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ImportError("finetuning=qlora needs bitsandbytes (and a CUDA GPU): pip install bitsandbytes; "
                          "or use finetuning=lora")


def load_model(config, *, is_trainable_adapter: str | None = None):
    """The causal LM of ``config.model`` (4-bit for QLoRA); with an adapter dir, a trainable PeftModel on it."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": _dtype(config.dtype)}
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    if config.finetuning == "qlora":
        require_bitsandbytes()
        import torch
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        # 4-bit weights cannot move after loading: put each process's copy on its own GPU.
        from accelerate import PartialState

        kwargs["device_map"] = {"": PartialState().local_process_index}
    model = AutoModelForCausalLM.from_pretrained(config.model, **kwargs)
    if config.finetuning == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    if is_trainable_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, is_trainable_adapter, is_trainable=True)
    return model


def lora_config(config):
    """A PEFT ``LoraConfig`` for ``lora``/``qlora`` runs, else None."""
    if config.finetuning == "full":
        return None
    from peft import LoraConfig

    lora = config.lora
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")


def trainer_common_kwargs(config, trl_config_cls, stage_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``trl_config_cls``: the fields shared by both stages (portable across
    transformers 5.17-5.24 and CPU/GPU), then ``stage_kwargs``, then ``config.trainer_kwargs`` (which win)."""
    import torch

    fields = trl_config_cls.__dataclass_fields__
    bf16 = config.bf16
    if bf16 is None:
        bf16 = bool(not config.use_cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported())
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
        "bf16": bf16,
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

    wanted = [report_to] if isinstance(report_to, str) else list(report_to or [])
    missing = [name for name in wanted
               if name not in ("none", "all") and name not in get_available_reporting_integrations()]
    if missing:
        raise ValueError(f"report_to {missing}: not installed (e.g. pip install {' '.join(missing)}); "
                         "installed: " + (", ".join(get_available_reporting_integrations()) or "none"))


def merge_adapter(base_model: str, adapter_dir: str | Path, out_dir: str | Path, dtype: str = "auto") -> str:
    """Load ``base_model`` unquantized, apply the adapter, merge and save a plain model (+ tokenizer)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=_dtype(dtype))
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out_dir))
    load_tokenizer(str(adapter_dir) if (Path(adapter_dir) / "tokenizer_config.json").exists() else base_model) \
        .save_pretrained(str(out_dir))
    return str(out_dir)


def plot_log_history(log_history: list[dict[str, Any]], path: str | Path, title: str = "") -> str | None:
    """PNG of reward (GRPO) and/or loss over steps from a Trainer's ``state.log_history``."""
    series = {key: [(e["step"], e[key]) for e in log_history if key in e and "step" in e]
              for key in ("reward", "loss", "rank/ndcg@10", "rank/format_failure_rate")}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(series), 1, figsize=(6, 2.2 * len(series)), sharex=True, squeeze=False)
    for ax, (key, points) in zip(axes[:, 0], series.items()):
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def write_reports(output_dir: str | Path, config, reports: list[Any], log_history: list[dict[str, Any]]) -> None:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    (out / "data_report.txt").write_text("\n".join(str(r) for r in reports) + "\n", encoding="utf-8")
    (out / "log_history.json").write_text(json.dumps(log_history, indent=1), encoding="utf-8")


def finish_run(trainer, config, *, stage: str, train_output, reports: list[Any], adapter: bool,
               plot_name: str) -> TrainResult:
    """Save the model/adapter, then (main process only) merge the adapter, write reports and the plot."""
    trainer.save_model(config.output_dir)
    out = Path(config.output_dir)
    result = TrainResult(stage=stage, output_dir=config.output_dir, num_examples=len(trainer.train_dataset),
                         metrics=dict(train_output.metrics), log_history=list(trainer.state.log_history),
                         reports=[str(r) for r in reports])
    if adapter:
        result.adapter_dir = config.output_dir
        if config.lora.merge_and_save:
            result.merged_dir = str(out / "merged")
    if trainer.is_world_process_zero():  # under accelerate, one process writes the extras
        if result.merged_dir:
            merge_adapter(config.model, out, result.merged_dir, config.dtype)
        write_reports(out, config, reports, result.log_history)
        if config.plot:
            result.plot = plot_log_history(result.log_history, out / plot_name, stage.upper())
    trainer.accelerator.wait_for_everyone()
    return result
