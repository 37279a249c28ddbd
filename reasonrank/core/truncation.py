"""Passage truncation by the model's own tokens, as the authors do (``truncate_by_word=False``)."""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from collections.abc import Sequence
from typing import Any

__all__ = ["load_tokenizer", "truncate_with_tokenizer"]

#: Texts longer than ``max_tokens * CHARS_PER_TOKEN`` characters are encoded from a head cut at a space
#: first; the whole text is encoded only when that head has too few tokens.
CHARS_PER_TOKEN = 6
# tokens the head must have beyond ``max_tokens`` (the token before the cut may join what follows it)
_TOKEN_MARGIN = 16


def load_tokenizer(name_or_path: Any) -> Any:
    """A tokenizer for truncation and counting: a ready tokenizer object, or a name / path to load.

    A directory holding ``tokenizer.json`` (or that file itself) loads through the ``tokenizers`` package
    (about 0.2 s and 60 MiB, against seconds and hundreds of MiB for ``AutoTokenizer``); anything else
    (a Hub id, a directory with only slow-tokenizer files) through ``transformers.AutoTokenizer``.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        return name_or_path
    path = os.fspath(name_or_path)
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if file.endswith(".json") and os.path.isfile(file):
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(file)
        tokenizer.no_padding()  # some tokenizer.json files set padding or truncation for training
        tokenizer.no_truncation()
        return tokenizer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _rust(tokenizer: Any) -> Any:
    """The ``tokenizers.Tokenizer`` behind ``tokenizer`` (itself, or a fast HF tokenizer's backend)."""
    from_hf = getattr(tokenizer, "backend_tokenizer", None)
    if from_hf is not None:
        return from_hf
    return tokenizer if hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "id_to_token") else None


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    rust = _rust(tokenizer)
    # a fast tokenizer whose backend pads or truncates (set in its tokenizer.json) goes through __call__,
    # which switches that off as transformers does
    if rust is not None and rust.padding is None and rust.truncation is None:
        # encode_batch_fast (tokenizers >= 0.20) skips the character offsets: ~35% faster, same ids
        encode = getattr(rust, "encode_batch_fast", rust.encode_batch)
        return [e.ids for e in encode(texts, add_special_tokens=False)]
    # a transformers tokenizer would warn that a text is longer than the model takes: it is being cut here
    quiet = {"verbose": False} if _is_transformers(tokenizer) else {}
    return tokenizer(texts, add_special_tokens=False, **quiet)["input_ids"]


def _is_transformers(tokenizer: Any) -> bool:
    transformers = sys.modules.get("transformers")  # (not imported: not one of its tokenizers)
    return transformers is not None and isinstance(tokenizer, transformers.PreTrainedTokenizerBase)


def _decoder(tokenizer: Any) -> Any:
    """``ids -> convert_tokens_to_string(convert_ids_to_tokens(ids))``, in Rust where that is the same."""
    rust = _rust(tokenizer)
    if rust is None:
        return lambda ids: tokenizer.convert_tokens_to_string(tokenizer.convert_ids_to_tokens(ids))
    # Rust's decode passes added tokens (e.g. a literal "<|im_start|>" in a passage) differently
    # from the Python path; those rare texts take the Python path
    added = set(rust.get_added_tokens_decoder())

    def python_path(ids: list[int]) -> str:
        tokens = [rust.id_to_token(i) for i in ids]
        return rust.decoder.decode(tokens) if rust.decoder is not None else " ".join(tokens)

    def decode(ids: list[int]) -> str:
        if rust.decoder is None or not added.isdisjoint(ids):
            return python_path(ids)
        return rust.decode(ids, skip_special_tokens=False)

    return decode


def _head(text: str, max_chars: int) -> str:
    """``text`` cut just before the first space at or after ``max_chars`` that follows a non-space."""
    at = text.find(" ", max_chars)
    while 0 < at and text[at - 1].isspace():
        at = text.find(" ", at + 1)
    return text if at <= 0 else text[:at]


def _fits(text: str, max_tokens: int, by_bytes: bool) -> bool:
    """Whether ``text`` has fewer than ``max_tokens`` tokens, known without encoding it."""
    if len(text) >= max_tokens:
        return False
    if text.isascii():
        return True
    return by_bytes and len(text.encode("utf-8")) < max_tokens and unicodedata.is_normalized("NFC", text)


# pre-tokenizers that only split the text (or map each byte to one symbol, ByteLevel)
_SPLITTING = {"ByteLevel", "Split", "Digits", "Punctuation", "Whitespace", "WhitespaceSplit"}


def _at_most_one_token_per_byte(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` encodes an NFC text into at most one token per UTF-8 byte, plus one.

    True for a byte-level BPE (Qwen's, Llama 3's, SmolLM's): its pre-tokenizer maps every byte to one
    symbol (a prefix space adds one, when ByteLevel is the only step) and only splits otherwise, BPE
    merges only join symbols, and added
    tokens each cover at least a character; its normalizer must be none or NFC (which leaves an NFC
    text as it is). Anything else (WordPiece, SentencePiece with byte fallback, other normalizers) is
    False, and such texts are encoded.
    """
    rust = _rust(tokenizer)
    if rust is None or type(rust.model).__name__ != "BPE" or rust.pre_tokenizer is None:
        return False
    try:
        pre = json.loads(rust.pre_tokenizer.__getstate__())
        normalizer = json.loads(rust.normalizer.__getstate__()) if rust.normalizer is not None else None
    except (AttributeError, TypeError, ValueError):
        return False
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = {step.get("type") for step in steps}
    if "ByteLevel" not in kinds or not kinds <= _SPLITTING:
        return False
    # a prefix space is added to each piece the steps before it split off: one in all only when alone
    if len(steps) > 1 and any(step.get("type") == "ByteLevel" and step.get("add_prefix_space") for step in steps):
        return False
    if normalizer is None:
        return True
    normalizers = normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence" else [normalizer]
    return all(step.get("type") == "NFC" for step in normalizers)


def truncate_with_tokenizer(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> list[str]:
    """Keep the first ``max_tokens`` tokens of each text and turn them back into text.

    Mirrors ``convert_tokens_to_string(tokenize(text)[:max_length])``. Texts within the budget are
    returned unchanged: for the byte-level BPE tokenizers of Qwen/Llama the round trip of an
    (ftfy-normalized) text is the identity, and skipping it keeps the overhead low. ``tokenizer`` is a
    Hugging Face tokenizer or a ``tokenizers.Tokenizer`` (see :func:`load_tokenizer`); all texts are
    encoded in one batch by the Rust tokenizer. A long text is encoded from a head cut at a space:
    pre-tokenizers split at white space, so the head's first tokens are the whole text's when the head
    has ``max_tokens`` and a margin more; otherwise the whole text is encoded.
    """
    texts = list(texts)
    # An ASCII text has at most one token per character, plus one for a prefix space (byte-level BPE,
    # SentencePiece BPE/Unigram and WordPiece alike: no normalizer they use lengthens ASCII), so a
    # short ASCII text is within the budget without encoding it (most of MS MARCO's passages). A
    # byte-level BPE makes at most one token per UTF-8 byte, so the same holds for other short texts.
    by_bytes = _at_most_one_token_per_byte(tokenizer)
    todo = [i for i, t in enumerate(texts) if not _fits(t, max_tokens, by_bytes)]
    if not todo:
        return texts
    limit = max_tokens * CHARS_PER_TOKEN
    heads = [_head(texts[i], limit) if len(texts[i]) > limit else texts[i] for i in todo]
    encoded = _encode(tokenizer, heads)
    short = [k for k, (head, i, ids) in enumerate(zip(heads, todo, encoded))
             if head is not texts[i] and len(ids) <= max_tokens + _TOKEN_MARGIN]  # fmt: skip
    for k, ids in zip(short, _encode(tokenizer, [texts[todo[k]] for k in short]) if short else []):
        encoded[k] = ids
    decode = _decoder(tokenizer)
    for i, ids in zip(todo, encoded):
        if len(ids) > max_tokens:
            texts[i] = decode(ids[:max_tokens])
    return texts
