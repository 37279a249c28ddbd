"""Models for the local-backend tests: the real SmolLM2-135M-Instruct and a tiny random Qwen3 built here."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

CHATML = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
WORDS = (
    "passage query rank relevant water ice float glacier season earth tilt sun commit git reset branch "
    "model answer think reasoning list search identifier because therefore first second most least"
).split()


def _corpus(n: int = 600) -> list[str]:
    rng = random.Random(0)
    lines = []
    for _ in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        k = rng.randint(1, 20)
        lines += [f"[{k}] {words}", f"Search Query: {words}.", f"<think>{words}</think> <answer>[{k}] > [1]</answer>"]
    return lines


def build_tiny_model(directory: Path, *, max_position_embeddings: int = 1024) -> Path:
    """A byte-level BPE tokenizer trained on synthetic lines and a 2-layer random Qwen3 (about 100k weights)."""
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen3Config

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        bos_token=None,
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
        padding_side="right",  # the backend must switch it to left itself
        model_max_length=max_position_embeddings,
    )
    tags = ("<think>", "</think>", "<answer>", "</answer>")  # non-special, as in trl-on-cpu.md
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in tags])
    tokenizer.chat_template = CHATML
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        initializer_range=0.5,  # large random weights: outputs depend on the prompt, not one repeated token
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen3"))


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
