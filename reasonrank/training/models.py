"""Model side of the training stages: the dependency check, tokenizer/model loading, LoRA, merging."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

__all__ = [
    "load_model",
    "load_tokenizer",
    "lora_config",
    "merge_adapter",
    "require_bitsandbytes",
    "require_training_stack",
    "torch_dtype",
]


def require_training_stack() -> None:
    """Fail with an install hint when the optional training dependencies are missing."""
    missing = [
        name for name in ("torch", "transformers", "trl", "peft", "datasets") if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise ImportError(f"training needs {', '.join(missing)}: pip install 'reasonrank[train]'")
    # PEFT/TRL still call the gradient_checkpointing* model API that transformers >= 5.23 renamed
    # (activation_checkpointing*); harmless, and once per step otherwise.
    warnings.filterwarnings(
        "ignore",
        message=r".*(is_gradient_checkpointing|gradient_checkpointing_(en|dis)able).* is deprecated",
        category=FutureWarning,
    )


def require_bitsandbytes() -> None:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ImportError(
            "finetuning=qlora needs bitsandbytes (and a CUDA GPU): pip install bitsandbytes; or use finetuning=lora"
        )


def torch_dtype(name: str):
    """The dtype to load weights in: ``"auto"`` stays ``"auto"`` (the checkpoint's own), others as the backend reads them."""
    if name == "auto":
        return "auto"
    from reasonrank.core.backends.transformers import resolve_dtype

    return resolve_dtype(name, "cpu")  # the device only matters for "auto"


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _quantization_kwargs() -> dict[str, Any]:
    """4-bit NF4 loading for QLoRA, each process's copy on its own GPU (4-bit weights cannot move)."""
    require_bitsandbytes()
    import torch
    from accelerate import PartialState
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return {"quantization_config": config, "device_map": {"": PartialState().local_process_index}}


def load_model(config, *, is_trainable_adapter: str | None = None):
    """The causal LM of ``config.model`` (4-bit for QLoRA); with an adapter dir, a trainable PeftModel on it."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch_dtype(config.dtype)}
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    if config.finetuning == "qlora":
        kwargs.update(_quantization_kwargs())
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
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def merge_adapter(base_model: str, adapter_dir: str | Path, out_dir: str | Path, dtype: str = "auto") -> str:
    """Load ``base_model`` unquantized, apply the adapter, merge and save a plain model (+ tokenizer)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch_dtype(dtype))
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out_dir))
    has_tokenizer = (Path(adapter_dir) / "tokenizer_config.json").exists()
    load_tokenizer(str(adapter_dir) if has_tokenizer else base_model).save_pretrained(str(out_dir))
    return str(out_dir)
