"""TRL rows from records: prompts from :func:`reasonrank.core.prompts.build_messages` over
:func:`reasonrank.core.passages.prepare_passages`, so training and inference prompts are identical."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

from reasonrank.core.format import format_id_chain, format_output
from reasonrank.core.passages import clean_passage, prepare_passages
from reasonrank.core.prompts import PromptMode, build_messages
from reasonrank.core.truncation import truncate_with_tokenizer
from reasonrank.training.data.records import RankingRecord

__all__ = ["format_answer_ids", "format_target", "grpo_rows", "sft_rows"]

Tokenizer = Any


def format_answer_ids(ids: Sequence[int]) -> str:
    """``[a] > [b] > ...``: the answer of a non-reasoning prompt mode."""
    return format_id_chain(ids)


def format_target(reasoning: str, ids: Sequence[int]) -> str:
    """The SFT response, spaced as the system prompt and paper Fig. 12 show it:
    ``<think> {reasoning} </think> <answer> [a] > [b] > ... </answer>``."""
    return format_output(reasoning, ids, spaced=True)


def _prepared_passages(record: RankingRecord, tokenizer: Tokenizer | None, max_passage_tokens: int | None) -> list[str]:
    truncate = partial(truncate_with_tokenizer, tokenizer) if tokenizer is not None else None
    return prepare_passages(record.passages, truncate, max_passage_tokens)


def _count_tokens(tokenizer: Tokenizer, messages: list[dict[str, str]], *, generation_prompt: bool) -> int:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)


def _shorter_limit(record: RankingRecord, tokenizer: Tokenizer, limit: int | None, total: int, budget: int) -> int:
    """A per-passage token limit that removes ``total - budget`` tokens spread over the passages."""
    longest = max(len(tokenizer(clean_passage(p), add_special_tokens=False)["input_ids"]) for p in record.passages)
    current = min(limit, longest) if limit is not None else longest
    new_limit = current - math.ceil((total - budget) / max(1, len(record.passages))) - 1
    if new_limit < 1:
        raise ValueError(
            f"{record.source or record.qid}: does not fit in {budget} tokens even with empty passages "
            f"({total} tokens); raise the length budget (the answer is never truncated)"
        )
    return new_limit


def _fit_messages(
    record: RankingRecord,
    *,
    mode: PromptMode | str,
    tokenizer: Tokenizer | None,
    max_passage_tokens: int | None,
    budget: int | None,
    completion: list[dict[str, str]] | None,
) -> list[dict[str, str]]:
    """Prompt messages whose rendered length (plus ``completion``) fits ``budget``; shrinks passages, never the answer."""
    limit = max_passage_tokens
    while True:
        messages = build_messages(record.query, _prepared_passages(record, tokenizer, limit), mode)
        if tokenizer is None or budget is None:
            return messages
        total = _count_tokens(tokenizer, messages + (completion or []), generation_prompt=completion is None)
        if total <= budget:
            return messages
        limit = _shorter_limit(record, tokenizer, limit, total, budget)


def sft_rows(
    records: Iterable[RankingRecord],
    *,
    tokenizer: Tokenizer | None = None,
    mode: PromptMode | str = PromptMode.REASONING,
    max_passage_tokens: int | None = 512,
    max_length: int | None = None,
) -> list[dict[str, Any]]:
    """TRL prompt-completion conversational rows (``prompt``: system+user, ``completion``: assistant).

    The completion is :func:`format_target`; only it is trained on (TRL's completion-only loss).
    With a tokenizer, passages are cut to ``max_passage_tokens`` and, if the whole example still
    exceeds ``max_length``, shortened further; the answer is never truncated.
    """
    reasons = PromptMode.parse(mode).reasons
    rows = []
    for record in records:
        target = format_target(record.reasoning, record.answer_ids) if reasons else format_answer_ids(record.answer_ids)
        completion = [{"role": "assistant", "content": target}]
        prompt = _fit_messages(
            record,
            mode=mode,
            tokenizer=tokenizer,
            max_passage_tokens=max_passage_tokens,
            budget=max_length,
            completion=completion,
        )
        rows.append({"prompt": prompt, "completion": completion})
    return rows


def grpo_rows(
    records: Iterable[RankingRecord],
    *,
    tokenizer: Tokenizer | None = None,
    mode: PromptMode | str = PromptMode.REASONING,
    max_passage_tokens: int | None = 512,
    max_prompt_length: int | None = None,
) -> list[dict[str, Any]]:
    """TRL GRPO rows: ``prompt`` (system+user) and the reward's columns ``initial_list``, ``final_list``,
    ``relevant_docids`` (plus ``dataset``). TRL does not truncate prompts, so with a tokenizer the
    prompt is fitted to ``max_prompt_length`` here."""
    rows = []
    for record in records:
        if record.relevant_docids is None:
            raise ValueError(f"{record.source}: GRPO needs relevant_docids (pointwise labels) for the reward")
        prompt = _fit_messages(
            record,
            mode=mode,
            tokenizer=tokenizer,
            max_passage_tokens=max_passage_tokens,
            budget=max_prompt_length,
            completion=None,
        )
        rows.append(
            {
                "prompt": prompt,
                "initial_list": list(record.docids),
                "final_list": list(record.final_list),
                "relevant_docids": list(record.relevant_docids),
                "dataset": record.dataset,
            }
        )
    return rows
