"""Tiny random Qwen3 chat models with locally trained byte-level BPE tokenizers (offline, seconds on CPU).

:func:`train_tokenizer` and :func:`save_qwen3` are the two halves;
:func:`build_random_chat_model` is the model of the local-backend tests and
:func:`reasonrank.testing.toy.build_tiny_model` the one the training recipe learns the toy task with.
They are not language models: they exercise tokenization, chat templates, generation and training.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from reasonrank.core.format import format_output

__all__ = ["CHATML", "THINK_TAGS", "build_random_chat_model", "save_qwen3", "train_tokenizer"]

#: a plain ChatML template (no ``{% generation %}`` markers)
CHATML = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
#: added as non-special tokens (GRPO decodes with ``skip_special_tokens``)
THINK_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


def train_tokenizer(
    lines: Iterable[str],
    *,
    vocab_size: int,
    chat_template: str,
    padding_side: str,
    model_max_length: int,
    added_tokens: Sequence[Sequence[str]] = (THINK_TAGS,),
):
    """A ``PreTrainedTokenizerFast`` (eos ``<|im_end|>``, pad ``<|pad|>``) trained on ``lines``.

    Each group of ``added_tokens`` is added, in order, as single non-special tokens.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(lines, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        bos_token=None,
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
        padding_side=padding_side,
        model_max_length=model_max_length,
    )
    for group in added_tokens:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in group])
    tokenizer.chat_template = chat_template
    return tokenizer


def save_qwen3(
    tokenizer: Any,
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
    max_position_embeddings: int = 4096,
    **config: Any,
) -> Path:
    """A random float32 Qwen3 sized for ``tokenizer``, saved with it to ``out_dir``; ``config`` adds ``Qwen3Config`` fields."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    torch.manual_seed(seed)
    model_config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        tie_word_embeddings=True,
        max_position_embeddings=max_position_embeddings,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        **config,
    )
    model = AutoModelForCausalLM.from_config(model_config, dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


_WORDS = (
    "passage query rank relevant water ice float glacier season earth tilt sun commit git reset branch "
    "model answer think reasoning list search identifier because therefore first second most least"
).split()


def _prompt_like_lines(n: int = 600) -> list[str]:
    rng = random.Random(0)
    lines = []
    for _ in range(n):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14)))
        k = rng.randint(1, 20)
        lines += [f"[{k}] {words}", f"Search Query: {words}.", format_output(words, [k, 1], spaced=False)]
    return lines


def build_random_chat_model(directory: str | Path, *, max_position_embeddings: int = 1024) -> Path:
    """A 2-layer random Qwen3 (about 100k weights) with a 512-token BPE trained on prompt-like lines.

    Its tokenizer pads on the right (a backend must switch it to left itself) and its large random
    weights (``initializer_range=0.5``) make outputs depend on the prompt, not one repeated token.
    """
    tokenizer = train_tokenizer(
        _prompt_like_lines(),
        vocab_size=512,
        chat_template=CHATML,
        padding_side="right",
        model_max_length=max_position_embeddings,
    )
    return save_qwen3(tokenizer, directory, max_position_embeddings=max_position_embeddings, initializer_range=0.5)
