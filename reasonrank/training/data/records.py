"""Record types of the training data: one listwise sample, and the reports of loading and filtering."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from reasonrank.training.ranking_metrics import ndcg_at_k

__all__ = ["DataFormatError", "FilterReport", "LoadReport", "OnError", "RankingRecord"]

OnError = Literal["raise", "skip"]


class DataFormatError(ValueError):
    """A malformed training record; the message names the file and line/row."""


@dataclass
class RankingRecord:
    """One listwise training sample: a query, its window of passages and the teacher's labels.

    ``docids`` is the presentation order (``initial_list``); identifier ``[k]`` in prompts and answers
    means ``docids[k-1]``. ``relevant_docids`` is None when the source carries no pointwise labels
    (the alpaca SFT file).
    """

    qid: str
    query: str
    docids: list[str]
    passages: list[str]
    final_list: list[str]
    relevant_docids: list[str] | None = None
    reasoning: str = ""
    dataset: str = ""
    source: str = ""  # "file:line" or "file:row N", for reports

    def __post_init__(self) -> None:
        where = self.source or self.qid
        if len(self.docids) != len(self.passages):
            raise ValueError(f"{where}: {len(self.docids)} docids but {len(self.passages)} passages")
        if len(set(self.docids)) != len(self.docids):
            raise ValueError(f"{where}: initial_list has repeated docids")
        if sorted(self.final_list) != sorted(self.docids):
            raise ValueError(f"{where}: final_list is not a permutation of initial_list")
        if self.relevant_docids is not None:
            extra = set(self.relevant_docids) - set(self.docids)
            if extra:
                raise ValueError(f"{where}: relevant_docids not in initial_list: {sorted(extra)[:5]}")

    @property
    def answer_ids(self) -> list[int]:
        """The teacher ranking as 1-based window identifiers."""
        position = {doc: i for i, doc in enumerate(self.docids, 1)}
        return [position[doc] for doc in self.final_list]

    @property
    def teacher_ndcg(self) -> float | None:
        """nDCG@10 of the teacher list against its own positives (None without labels)."""
        if self.relevant_docids is None:
            return None
        return ndcg_at_k(self.final_list, self.relevant_docids, 10)


@dataclass
class LoadReport:
    """What a loader read: kept records and skipped malformed ones (with reasons)."""

    loaded: int = 0
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        # Every skipped record is listed: skipping is opt-in and must never hide what was lost.
        text = f"loaded {self.loaded} records, skipped {len(self.skipped)} malformed"
        return text + "".join(f"\n  {reason}" for reason in self.skipped)


@dataclass
class FilterReport:
    """What a filter removed, per domain (``dataset``), with examples."""

    name: str
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    unlabelled: int = 0  # records the filter could not judge (kept)
    examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the filter checked against, and what it could not
    max_examples: int | None = 10  # how many removals str() lists (None: all, as decontamination does)

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def __str__(self) -> str:
        lines = [f"{self.name}: kept {self.kept}, dropped {self.total_dropped}"]
        lines.extend(f"  {note}" for note in self.notes)
        if self.unlabelled:
            lines.append(f"  {self.unlabelled} records without labels were kept unjudged")
        for domain, count in sorted(self.dropped.items()):
            lines.append(f"  {domain or '(no dataset)'}: dropped {count}")
        shown = self.examples if self.max_examples is None else self.examples[: self.max_examples]
        lines.extend(f"  - {example}" for example in shown)
        if len(shown) < len(self.examples):
            lines.append(f"  ... and {len(self.examples) - len(shown)} more")
        return "\n".join(lines)
