"""Which records to train on: the self-consistency filter and decontamination against evaluation queries."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from reasonrank.evaluation.io import open_text
from reasonrank.training.data.records import DataFormatError, FilterReport, RankingRecord

__all__ = [
    "BUILTIN_EVAL_SETS",
    "decontaminate",
    "load_eval_queries",
    "normalize_for_dedup",
    "resolve_eval_sets",
    "self_consistency_filter",
]

#: ``decontaminate: [builtin]`` means these evaluation sets of the package (``reasonrank eval`` names)
BUILTIN_EVAL_SETS = ("dl19", "dl20", "noveleval", "bright")


def self_consistency_filter(
    records: Iterable[RankingRecord], threshold: float = 0.4
) -> tuple[list[RankingRecord], FilterReport]:
    """Keep records whose teacher list scores nDCG@10 >= ``threshold`` against the teacher's own positives.

    Records without pointwise labels (alpaca) cannot be judged; they are kept and counted as unlabelled.
    """
    report = FilterReport(name=f"self-consistency (nDCG@10 >= {threshold})")
    kept = []
    for record in records:
        score = record.teacher_ndcg
        if score is None:
            report.unlabelled += 1
        elif score < threshold:
            report.dropped[record.dataset] += 1
            report.examples.append(f"{record.source}: nDCG@10={score:.3f}")
            continue
        kept.append(record)
    report.kept = len(kept)
    return kept, report


_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize_for_dedup(text: str) -> str:
    """Lowercase, and collapse every run of whitespace/punctuation into one space."""
    return _NON_WORD.sub(" ", text.lower()).strip()


def load_eval_queries(path: str | Path) -> dict[str, str]:
    """Normalized query -> ``"task/qid"`` from a JSONL(.gz) of evaluation queries (``query``, ``qid``, ``task``)."""
    path = Path(path)
    out: dict[str, str] = {}
    with open_text(path) as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                query = obj["query"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataFormatError(f"{path}:{lineno}: expected a JSON object with a 'query' field") from None
            label = "/".join(str(obj[k]) for k in ("task", "qid") if k in obj) or f"line {lineno}"
            out.setdefault(normalize_for_dedup(query), label)
    return out


def _shingles(normalized: str, n: int = 3) -> frozenset[str]:
    words = normalized.split()
    if len(words) < n:
        return frozenset([" ".join(words)]) if words else frozenset()
    return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


class _NearDuplicateIndex:
    """Word-trigram Jaccard similarity to the closest evaluation query, via an inverted index."""

    def __init__(self, eval_queries: dict[str, str]):
        self.items = [(label, _shingles(query)) for query, label in eval_queries.items()]
        self.postings: dict[str, list[int]] = {}
        for index, (_, shingles) in enumerate(self.items):
            for shingle in shingles:
                self.postings.setdefault(shingle, []).append(index)

    def closest(self, normalized: str) -> tuple[float, str]:
        shingles = _shingles(normalized)
        shared: Counter = Counter()
        for shingle in shingles:
            shared.update(self.postings.get(shingle, ()))
        best = (0.0, "")
        for index, inter in shared.items():
            other = self.items[index][1]
            similarity = inter / (len(shingles) + len(other) - inter)
            if similarity > best[0]:
                best = (similarity, self.items[index][0])
        return best


def resolve_eval_sets(specs: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """Files of evaluation queries for ``specs``; returns (files, notes on shipped sets that are missing).

    A spec is ``builtin`` (every set of :data:`BUILTIN_EVAL_SETS`), one of those names, or a path to a
    JSONL(.gz) with a ``query`` field per line. Shipped sets are read from the shared data folder
    (``$REASONRANK_DATA``, else ``../shared/data``, as ``reasonrank eval`` finds them); when one is not
    there, a note says so. A path that does not exist is an error.
    """
    from reasonrank.evaluation.datasets import SHIPPED, data_dir

    names: list[str | Path] = []
    for spec in specs:
        names.extend(BUILTIN_EVAL_SETS if str(spec) == "builtin" else [spec])
    files: list[Path] = []
    notes: list[str] = []
    for spec in dict.fromkeys(names):  # keep order, drop repeats
        if str(spec) in SHIPPED:
            path = data_dir() / SHIPPED[str(spec)]
            if path.is_file():
                files.append(path)
            else:
                notes.append(f"NOT CHECKED: {spec} ({path} is missing; set REASONRANK_DATA to the data folder)")
            continue
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"decontamination: evaluation query file not found: {path}")
        files.append(path)
    return files, notes


def _merge_eval_files(paths: Sequence[str | Path]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in paths:
        for key, label in load_eval_queries(path).items():
            merged.setdefault(key, f"{Path(path).name}:{label}")
    return merged


def decontaminate(
    records: Iterable[RankingRecord],
    eval_queries: dict[str, str] | Sequence[str | Path],
    *,
    near_threshold: float | None = None,
) -> tuple[list[RankingRecord], FilterReport]:
    """Drop records whose query duplicates an evaluation query; report each removal.

    A duplicate is an exact match after :func:`normalize_for_dedup` (lowercase, punctuation and
    whitespace collapsed) or, with ``near_threshold``, a word-trigram Jaccard similarity >= it
    (0.8 catches light edits such as a changed sentence; 1.0 is exact up to word order of trigrams).
    ``eval_queries``: specs for :func:`resolve_eval_sets` (``builtin``, ``dl19``, ``bright``, or files read
    by :func:`load_eval_queries`) or a prepared ``{normalized query: label}`` map.
    """
    notes: list[str] = []
    if not isinstance(eval_queries, dict):
        files, notes = resolve_eval_sets(eval_queries)
        eval_queries = _merge_eval_files(files)
        notes.insert(
            0,
            f"checked against {len(eval_queries)} evaluation queries from "
            + (", ".join(p.name for p in files) or "no file"),
        )
    if near_threshold is not None and not 0.0 < near_threshold <= 1.0:
        raise ValueError(f"near_threshold must be in (0, 1], got {near_threshold}")
    index = _NearDuplicateIndex(eval_queries) if near_threshold is not None else None
    name = "decontamination (normalized exact query match"
    name += f", or word-trigram Jaccard >= {near_threshold})" if index else ")"
    report = FilterReport(name=name, max_examples=None, notes=notes)
    kept = []
    for record in records:
        normalized = normalize_for_dedup(record.query)
        hit = eval_queries.get(normalized)
        why = "duplicates"
        if hit is None and index is not None:
            similarity, label = index.closest(normalized)
            if similarity >= near_threshold:
                hit, why = label, f"near-duplicates (Jaccard {similarity:.2f})"
        if hit is not None:
            report.dropped[record.dataset] += 1
            report.examples.append(f"{record.source} (qid {record.qid}) {why} eval query {hit}")
            continue
        kept.append(record)
    report.kept = len(kept)
    return kept, report
