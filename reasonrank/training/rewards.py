"""The multi-view ranking reward of ReasonRank (recipe §5.3) and TRL reward-function wrappers.

R = −1 when the completion does not match ``<think>.*?</think>\\s*<answer>(.*?)</answer>`` (case-sensitive,
as in training); R = 0 when the answer fails the answer check; otherwise
R = nDCG@10 + 0.2·Recall@10 + 0.1·AO, with binary relevance from ``relevant_docids`` and AO (average
overlap, what the authors' ``rbo`` call returns) against the teacher list ``final_list``.

Two answer checks (``answer_check``):

- ``"lenient"`` (default, the authors' ``verl/verl/utils/reward_score/ranking.py``): every non-digit
  character of the answer becomes a space and the digit runs are the ids; the answer passes when it
  has as many ids, and as many distinct ids, as the teacher list. ``[3], [1], [2].``, ``3 > 1 > 2`` and
  ``The order is [3] > [1] > [2] by relevance`` all pass.
- ``"strict"``: the answer must be exactly ``[a] > [b] > ...`` (whitespace free) over a permutation of 1..n;
  the forms above score 0.

Both keep one deliberate fix of the released code: an id outside 1..n fails the check (R = 0). The
authors' code reads ``[0]`` as index −1, i.e. the *last* passage, and silently drops ``[21]`` in a window
of 20 from nDCG/Recall, so such answers score up to ~1.27 for ranking a passage that was never shown.
An id written twice in two spellings (``[7]`` and ``[07]``) also fails here (the authors count them as
two distinct strings); AO compares passages, so ``[07]`` means passage 7 (the authors compare the strings).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reasonrank.core.format import OUTPUT_RE
from reasonrank.training.ranking_metrics import average_overlap, ndcg_at_k, recall_at_k

__all__ = [
    "ANSWER_CHECKS",
    "FORMAT_PATTERN",
    "RewardBreakdown",
    "score_completion",
    "multiview_reward",
    "ndcg_reward",
    "multiview_reward_func",
    "ndcg_reward_func",
    "make_reward_func",
    "completion_text",
    "answer_ids",
]

#: the format gate (case-sensitive): group 1 the reasoning, group 2 the answer
FORMAT_PATTERN = OUTPUT_RE
_NUMBER = re.compile(r"\d+")
#: the answer checks: the authors' digit-count check (default) and the exact ``[a] > [b]`` chain
ANSWER_CHECKS = ("lenient", "strict")
AnswerCheck = Literal["lenient", "strict"]
_ANSWER_SHAPE = re.compile(r"^\s*\[\s*\d+\s*\](?:\s*>\s*\[\s*\d+\s*\])*\s*$")


@dataclass(frozen=True)
class RewardBreakdown:
    """One completion's reward and its parts (parts are 0 unless the answer is a valid permutation)."""

    reward: float
    format_ok: bool
    answer_ok: bool
    ndcg: float = 0.0
    recall: float = 0.0
    overlap: float = 0.0


def _strict_ids(answer: str, n: int) -> list[int] | None:
    """The answer's 1-based ids if it is exactly a permutation of 1..n written as ``[a] > [b] > ...``."""
    if not _ANSWER_SHAPE.match(answer):
        return None
    ids = [int(x) for x in _NUMBER.findall(answer)]
    if len(ids) != n or sorted(ids) != list(range(1, n + 1)):
        return None
    return ids


def _digit_tokens(text: str) -> list[str]:
    """The authors' ``clean_response(text).split()``: every non-digit character is a separator."""
    return "".join(c if c.isdigit() else " " for c in text).split()


def _lenient_ids(answer: str, n: int, label_size: int, label_distinct: int) -> list[int] | None:
    """The authors' check (id count and distinct count equal the label's) plus ids within 1..n."""
    tokens = _digit_tokens(answer)
    if len(tokens) != label_size or len(set(tokens)) != label_distinct:
        return None
    try:
        ids = [int(x) for x in tokens]
    except ValueError:  # str.isdigit accepts superscripts that int() rejects; the authors return 0 too
        return None
    if any(not 1 <= i <= n for i in ids) or len(set(ids)) != len(ids):
        return None
    return ids


def answer_ids(
    answer: str, n: int, final_list: Sequence[str] | None = None, answer_check: AnswerCheck = "lenient"
) -> list[int] | None:
    """The 1-based ids of an ``<answer>`` body that passes ``answer_check``, else None.

    ``final_list`` (the teacher list) sets the lenient check's expected id count (default: ``n``).
    """
    if answer_check == "strict":
        return _strict_ids(answer, n)
    if answer_check != "lenient":
        raise ValueError(f"answer_check must be one of {ANSWER_CHECKS}, got {answer_check!r}")
    label = list(final_list) if final_list is not None else list(range(n))
    return _lenient_ids(answer, n, len(label), len(set(label)))


def score_completion(
    completion: str,
    *,
    initial_list: Sequence[str],
    final_list: Sequence[str],
    relevant_docids: Sequence[str],
    ndcg_weight: float = 1.0,
    recall_weight: float = 0.2,
    rbo_weight: float = 0.1,
    answer_check: AnswerCheck = "lenient",
) -> RewardBreakdown:
    """The multi-view reward of one completion with its components (``answer_check``: see the module docstring)."""
    match = FORMAT_PATTERN.search(completion)
    if not match:
        return RewardBreakdown(-1.0, format_ok=False, answer_ok=False)
    initial = [str(d) for d in initial_list]
    ids = answer_ids(match.group(2), len(initial), final_list, answer_check)
    if ids is None:
        return RewardBreakdown(0.0, format_ok=True, answer_ok=False)
    ranking = [initial[i - 1] for i in ids]
    relevant = {str(d) for d in relevant_docids}
    ndcg = ndcg_at_k(ranking, relevant, 10)
    recall = recall_at_k(ranking, relevant, 10)
    overlap = average_overlap(ranking, [str(d) for d in final_list])
    reward = ndcg_weight * ndcg + recall_weight * recall + rbo_weight * overlap
    return RewardBreakdown(reward, True, True, ndcg, recall, overlap)


def multiview_reward(
    completion: str,
    *,
    initial_list: Sequence[str],
    final_list: Sequence[str],
    relevant_docids: Sequence[str],
    ndcg_weight: float = 1.0,
    recall_weight: float = 0.2,
    rbo_weight: float = 0.1,
    answer_check: AnswerCheck = "lenient",
) -> float:
    """ReasonRank's reward R (paper Eq. 2-3): −1 / 0 / nDCG@10 + 0.2·Recall@10 + 0.1·AO."""
    return score_completion(
        completion,
        initial_list=initial_list,
        final_list=final_list,
        relevant_docids=relevant_docids,
        ndcg_weight=ndcg_weight,
        recall_weight=recall_weight,
        rbo_weight=rbo_weight,
        answer_check=answer_check,
    ).reward


def ndcg_reward(
    completion: str,
    *,
    initial_list: Sequence[str],
    final_list: Sequence[str] = (),
    relevant_docids: Sequence[str],
    answer_check: AnswerCheck = "lenient",
) -> float:
    """The ablation baseline ("w/o R_m"): the same format gates, then nDCG@10 alone."""
    return score_completion(
        completion,
        initial_list=initial_list,
        final_list=final_list or initial_list,
        relevant_docids=relevant_docids,
        recall_weight=0.0,
        rbo_weight=0.0,
        answer_check=answer_check,
    ).reward


def completion_text(completion: Any) -> str:
    """A TRL completion as text: a str, or a conversational ``[{"role": ..., "content": ...}]``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, (list, tuple)):
        return "".join(
            completion_text(part)
            for part in completion
            if not isinstance(part, dict) or part.get("role", "assistant") == "assistant"
        )
    raise TypeError(f"unsupported completion type {type(completion).__name__}")


def make_reward_func(
    ndcg_weight: float = 1.0,
    recall_weight: float = 0.2,
    rbo_weight: float = 0.1,
    name: str = "multiview_reward",
    answer_check: AnswerCheck = "lenient",
):
    """A TRL reward function ``(prompts, completions, **kwargs) -> list[float]`` with these weights.

    Reads the dataset columns ``initial_list``, ``final_list``, ``relevant_docids`` (lists aligned with
    the completions) and logs the means of the components and the format-failure rate through
    TRL's ``log_metric`` when given.
    """
    if answer_check not in ANSWER_CHECKS:
        raise ValueError(f"answer_check must be one of {ANSWER_CHECKS}, got {answer_check!r}")

    def reward_func(prompts, completions, initial_list=None, final_list=None, relevant_docids=None, **kwargs):
        missing = [
            n
            for n, v in (
                ("initial_list", initial_list),
                ("final_list", final_list),
                ("relevant_docids", relevant_docids),
            )
            if v is None
        ]
        if missing:
            raise ValueError(
                f"{name}: the dataset lacks column(s) {missing} (build it with reasonrank.training.data.grpo_rows)"
            )
        parts = [
            score_completion(
                completion_text(c),
                initial_list=il,
                final_list=fl,
                relevant_docids=rel,
                ndcg_weight=ndcg_weight,
                recall_weight=recall_weight,
                rbo_weight=rbo_weight,
                answer_check=answer_check,
            )
            for c, il, fl, rel in zip(completions, initial_list, final_list, relevant_docids, strict=True)
        ]
        log_metric = kwargs.get("log_metric")
        if log_metric is not None and parts:
            n = len(parts)
            log_metric("rank/format_failure_rate", sum(not p.format_ok for p in parts) / n)
            log_metric("rank/answer_failure_rate", sum(p.format_ok and not p.answer_ok for p in parts) / n)
            log_metric("rank/ndcg@10", sum(p.ndcg for p in parts) / n)
            log_metric("rank/recall@10", sum(p.recall for p in parts) / n)
            log_metric("rank/average_overlap", sum(p.overlap for p in parts) / n)
        return [p.reward for p in parts]

    reward_func.__name__ = name
    reward_func.__qualname__ = name
    return reward_func


multiview_reward_func = make_reward_func()
ndcg_reward_func = make_reward_func(1.0, 0.0, 0.0, name="ndcg_reward")
