"""Per-list ranking metrics with binary relevance, consistent with trec_eval / pytrec_eval.

These score one ranked list (a window of at most ~20 passages) and are used by the reward and the
data filters, where calling pytrec_eval per completion would be needlessly heavy. They follow
trec_eval's definitions (``ndcg_cut.k``, ``recall.k``) for a run whose scores are ``-position``:

- ``ndcg_at_k``: DCG@k = sum over relevant docs at rank r <= k of 1/log2(r+1); the ideal DCG places
  min(|relevant|, k) relevant docs at the top. 0.0 when nothing is relevant.
- ``recall_at_k``: |relevant ∩ top-k| / |relevant|; 0.0 when nothing is relevant.
- A docid repeated in ``ranking`` counts once, at its first position (a trec run is a mapping).
- ``average_overlap``: what ``rbo==0.1.3`` ``RankingSimilarity(pred, ref).rbo()`` returns with its
  defaults (p=1.0, k=min length), i.e. average overlap AO = (1/k) Σ_{d≤k} |pred[:d] ∩ ref[:d]| / d.
  This is the "RBO" term the ReasonRank reward actually computes (recipe §5.3).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Sequence

__all__ = ["ndcg_at_k", "recall_at_k", "average_overlap", "dedupe"]


def dedupe(ranking: Sequence[Hashable]) -> list:
    """``ranking`` with repeats removed, keeping each item's first position."""
    seen: set = set()
    out = []
    for item in ranking:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def ndcg_at_k(ranking: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """nDCG@k of ``ranking`` with binary relevance ``relevant`` (trec_eval ``ndcg_cut.k``)."""
    _check_k(k)
    relevant = set(relevant)
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 1) for rank, doc in enumerate(dedupe(ranking)[:k], 1) if doc in relevant)
    idcg = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / idcg


def recall_at_k(ranking: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """Recall@k of ``ranking`` with binary relevance ``relevant`` (trec_eval ``recall.k``)."""
    _check_k(k)
    relevant = set(relevant)
    if not relevant:
        return 0.0
    return len(relevant.intersection(dedupe(ranking)[:k])) / len(relevant)


def average_overlap(pred: Sequence[Hashable], ref: Sequence[Hashable]) -> float:
    """Average overlap of two rankings over their common depth (``rbo==0.1.3`` ``rbo()`` defaults).

    AO = (1/k) Σ_{d=1..k} |pred[:d] ∩ ref[:d]| / d with k = min(len(pred), len(ref)).
    Two empty lists give 1.0; one empty list gives 0.0. Lists must not contain repeats.
    """
    for name, items in (("pred", pred), ("ref", ref)):
        if len(set(items)) != len(items):
            raise ValueError(f"average_overlap: {name} contains repeated items")
    if not pred and not ref:
        return 1.0
    k = min(len(pred), len(ref))
    if k == 0:
        return 0.0
    seen_pred: set = set()
    seen_ref: set = set()
    overlap = 0
    total = 0.0
    for depth in range(1, k + 1):
        a, b = pred[depth - 1], ref[depth - 1]
        if a == b:
            overlap += 1
        else:
            overlap += (a in seen_ref) + (b in seen_pred)
        seen_pred.add(a)
        seen_ref.add(b)
        total += overlap / depth
    return total / k
