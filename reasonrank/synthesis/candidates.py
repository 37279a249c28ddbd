"""Candidate lists of up to ``list_size`` passages: positives, hard negatives and sampled negatives.

As in the paper (section 3 of the recipe), a list is ``P+ ∪ P_hard- ∪ P-`` capped at the ranking
window (20): the positives, the highest first-stage ranks that are not positives (hard negatives),
and negatives sampled at random from the rest of the pool. Everything is seeded per query
(``seed``, ``dataset``, ``qid``), so a list does not depend on which other queries run or in what order.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

__all__ = ["ListConfig", "CandidateList", "build_candidate_list", "query_rng"]


@dataclass(frozen=True)
class ListConfig:
    """How a candidate list is composed.

    ``max_positives`` caps the positives in one list (the released data averages about 2.8 per list)
    as long as there are negatives to fill it;
    ``hard_negatives`` is the number of top-ranked non-positives (``None``: half of the free slots);
    the remaining slots are random negatives from the rest of the pool. ``shuffle`` presents the list
    in a seeded random order (otherwise in first-stage order), so the teacher cannot read relevance
    off the position.
    """

    list_size: int = 20
    max_positives: int = 5
    hard_negatives: int | None = None
    shuffle: bool = True

    def __post_init__(self) -> None:
        if self.list_size < 1:
            raise ValueError(f"list_size must be >= 1, got {self.list_size}")
        if self.max_positives < 1:
            raise ValueError(f"max_positives must be >= 1, got {self.max_positives}")
        if self.max_positives > self.list_size:
            raise ValueError(f"max_positives ({self.max_positives}) exceeds list_size ({self.list_size})")
        if self.hard_negatives is not None and self.hard_negatives < 0:
            raise ValueError(f"hard_negatives must be >= 0, got {self.hard_negatives}")


@dataclass(frozen=True)
class CandidateList:
    """One query's list: doc ids in presentation order and which of them are positives."""

    docids: list[str]
    positives: list[str]  # subset of docids, in pool order
    hard_negatives: list[str]
    sampled_negatives: list[str]


def query_rng(seed: int, dataset: str, qid: str, purpose: str = "list") -> random.Random:
    """A random generator that depends only on the seed and the query (string seeds are stable)."""
    return random.Random(f"{seed}:{purpose}:{dataset}:{qid}")


def build_candidate_list(
    pool: Sequence[str],
    positives: Collection[str],
    config: ListConfig,
    rng: random.Random,
    *,
    exclude: Collection[str] = (),
) -> CandidateList:
    """Compose one list from a ranked ``pool`` (first-stage order) and the positive ids.

    ``exclude`` holds ids that must not serve as negatives (judged relevant in the qrels but not
    mined as positive: ambiguous, so left out rather than taught as irrelevant).
    """
    seen: set[str] = set()
    ranked = [d for d in pool if not (d in seen or seen.add(d))]
    positive_set = set(positives)
    chosen_pos = [d for d in ranked if d in positive_set][: config.max_positives]
    blocked = positive_set | set(exclude)
    negatives = [d for d in ranked if d not in blocked]
    free = config.list_size - len(chosen_pos)
    n_hard = config.hard_negatives if config.hard_negatives is not None else free // 2
    n_hard = min(n_hard, free, len(negatives))
    hard = negatives[:n_hard]
    rest = negatives[n_hard:]
    sampled = rng.sample(rest, min(free - n_hard, len(rest)))
    room = config.list_size - len(chosen_pos) - len(hard) - len(sampled)
    if room > 0:  # too few negatives to fill the list: take more positives rather than a short list
        chosen_pos += [d for d in ranked if d in positive_set and d not in chosen_pos][:room]
    chosen = set(chosen_pos) | set(hard) | set(sampled)
    docids = [d for d in ranked if d in chosen]  # first-stage order
    if config.shuffle:
        rng.shuffle(docids)
    positives_in_order = [d for d in ranked if d in set(chosen_pos)]
    return CandidateList(docids, positives_in_order, hard, [d for d in ranked if d in set(sampled)])
