"""Models for the local-backend tests: the real SmolLM2-135M-Instruct and a tiny random Qwen3 (reasonrank.testing.tiny_model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reasonrank.testing.tiny_model import build_random_chat_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_random_chat_model(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir):
    from reasonrank.core.backends.transformers import TransformersBackend

    return TransformersBackend(str(tiny_model_dir), device="cpu", batch_size=4)


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA adapter with random (non-zero) weights, so it changes the tiny model's outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False,
                        task_type="CAUSAL_LM")  # fmt: skip
    torch.manual_seed(1)
    model = get_peft_model(base, config)
    out = tmp_path_factory.mktemp("tiny-lora")
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    """The real SmolLM2-135M-Instruct, converted once into the reasonrank cache."""
    from reasonrank.core.models import default_model_path

    try:
        return default_model_path()
    except ImportError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def smollm2_backend(smollm2_path):
    from reasonrank.core.backends.transformers import TransformersBackend

    return TransformersBackend(smollm2_path, device="cpu")
