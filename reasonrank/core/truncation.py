"""Passage truncation by the model's own tokens, as the authors do (``truncate_by_word=False``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["truncate_with_tokenizer"]


def truncate_with_tokenizer(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> list[str]:
    """Keep the first ``max_tokens`` tokens of each text and turn them back into text.

    Mirrors ``convert_tokens_to_string(tokenize(text)[:max_length])``. Texts within the budget are
    returned unchanged: for the byte-level BPE tokenizers of Qwen/Llama the round trip of an
    (ftfy-normalized) text is the identity, and skipping it keeps the overhead low.
    """
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    out = []
    for text, ids in zip(texts, encoded):
        if len(ids) <= max_tokens:
            out.append(text)
        else:
            out.append(tokenizer.convert_tokens_to_string(tokenizer.convert_ids_to_tokens(ids[:max_tokens])))
    return out
