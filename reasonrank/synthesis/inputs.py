"""Inputs of the synthesis pipeline: queries (with optional gold answers and qrels), a corpus, and a
first stage that gives each query a ranked pool of candidate ids (BM25 via ``bm25s``, or a TREC run).

Two input shapes are accepted:

- a queries JSONL (``id``/``qid``, ``query``/``text``, optional ``answer``/``gold_answer``, optional
  ``qrels`` ``{docid: grade}`` or ``positives`` ``[docid, ...]``, optional ``dataset``/``domain``) plus a
  corpus JSONL (``id``/``docid``, ``contents``/``text``, optional ``title``);
- a dataset JSONL in the evaluation shape ``{"qid", "query", "candidates": [{"docid", "score", "text"}],
  "qrels": {docid: grade}}`` (e.g. ``../shared/data/dl19_bm25_top100.jsonl``): candidates are the pool.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonrank.evaluation.io import iter_lines, ranking, read_corpus, read_qrels, read_run

__all__ = [
    "SynthesisQuery",
    "Corpus",
    "load_queries",
    "load_corpus",
    "load_dataset_jsonl",
    "attach_qrels",
    "pools_from_run",
    "BM25Retriever",
]

Corpus = dict[str, dict[str, str]]  # docid -> {"text": ..., "title"?: ...}

_QID_KEYS = ("qid", "id", "query_id", "_id")
_QUERY_KEYS = ("query", "text", "question")
_ANSWER_KEYS = ("answer", "gold_answer", "gold", "solution")
_DOMAIN_KEYS = ("dataset", "domain", "task")


@dataclass
class SynthesisQuery:
    """One query to label: its text, optional gold answer and qrels, and its first-stage pool."""

    qid: str
    query: str
    dataset: str
    answer: str | None = None
    qrels: dict[str, int] = field(default_factory=dict)
    pool: list[str] = field(default_factory=list)  # candidate doc ids, first-stage order

    def known_positives(self, min_grade: int = 1) -> list[str]:
        return [d for d, g in self.qrels.items() if g >= min_grade]


def _json_records(path: str | Path):
    """``(line_number, line, record)`` for each JSON object line; a bad line raises naming it."""
    for number, line in iter_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: invalid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object")
        yield number, line, record


def _first(record: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = record.get(key)
        if value is not None:
            return value
    return None


def _qrels_of(record: Mapping[str, Any], where: str) -> dict[str, int]:
    qrels = record.get("qrels")
    positives = record.get("positives")
    out: dict[str, int] = {}
    if qrels is not None:
        if not isinstance(qrels, Mapping):
            raise ValueError(f"{where}: 'qrels' must be an object {{docid: grade}}")
        try:
            out.update({str(d): int(g) for d, g in qrels.items()})
        except (TypeError, ValueError):
            raise ValueError(f"{where}: 'qrels' grades must be integers") from None
    if positives is not None:
        if not isinstance(positives, list):
            raise ValueError(f"{where}: 'positives' must be a list of doc ids")
        out.update({str(d): max(out.get(str(d), 1), 1) for d in positives})
    return out


def _domain(record: Mapping[str, Any], default: str) -> str:
    value = _first(record, _DOMAIN_KEYS)
    return str(value) if value else default


def load_queries(path: str | Path, *, domain: str | None = None) -> list[SynthesisQuery]:
    """Read a queries JSONL (see the module docstring). ``domain`` defaults to the file's stem."""
    default = domain or Path(path).name.split(".")[0]
    queries: list[SynthesisQuery] = []
    seen: set[tuple[str, str]] = set()
    for number, _, record in _json_records(path):
        where = f"{path}:{number}"
        qid, text = _first(record, _QID_KEYS), _first(record, _QUERY_KEYS)
        if qid is None or not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}: a query needs an id ('id' or 'qid') and a text ('query' or 'text')")
        answer = _first(record, _ANSWER_KEYS)
        if answer is not None and not isinstance(answer, str):
            raise ValueError(f"{where}: 'answer' must be a string")
        q = SynthesisQuery(str(qid), text, domain or _domain(record, default), answer, _qrels_of(record, where))
        if (q.dataset, q.qid) in seen:
            raise ValueError(f"{where}: query id {q.qid!r} appears twice")
        seen.add((q.dataset, q.qid))
        queries.append(q)
    return queries


def load_corpus(path: str | Path, ids: Iterable[str] | None = None) -> Corpus:
    """Read a corpus JSONL/TSV as ``{docid: {"text", "title"?}}`` (``ids``: keep only those)."""
    return read_corpus(path, ids)


def load_dataset_jsonl(path: str | Path, *, domain: str | None = None) -> tuple[list[SynthesisQuery], Corpus]:
    """Read the evaluation shape ``{"qid", "query", "candidates": [...], "qrels"}``: queries with their
    pools (the candidates, in file order) and the passage texts."""
    default = domain or Path(path).name.split(".")[0]
    queries: list[SynthesisQuery] = []
    corpus: Corpus = {}
    for number, _, record in _json_records(path):
        where = f"{path}:{number}"
        qid, text = _first(record, _QID_KEYS), _first(record, _QUERY_KEYS)
        candidates = record.get("candidates")
        if qid is None or not isinstance(text, str) or not isinstance(candidates, list):
            raise ValueError(f"{where}: expected {{'qid', 'query', 'candidates': [{{'docid', 'text'}}], 'qrels'}}")
        pool = []
        for cand in candidates:
            docid = _first(cand, ("docid", "id", "_id")) if isinstance(cand, Mapping) else None
            body = _first(cand, ("text", "contents", "content")) if isinstance(cand, Mapping) else None
            if docid is None or not isinstance(body, str):
                raise ValueError(f"{where}: every candidate needs a 'docid' and a 'text'")
            docid = str(docid)
            pool.append(docid)
            doc = {"text": body}
            if isinstance(cand.get("title"), str) and cand["title"]:
                doc["title"] = cand["title"]
            corpus.setdefault(docid, doc)
        answer = _first(record, _ANSWER_KEYS)
        queries.append(
            SynthesisQuery(str(qid), text, domain or _domain(record, default), answer, _qrels_of(record, where), pool)
        )
    return queries, corpus


def attach_qrels(queries: Sequence[SynthesisQuery], path: str | Path) -> None:
    """Merge a TREC qrels file into the queries (file grades win)."""
    qrels = read_qrels(path)
    for q in queries:
        q.qrels.update(qrels.get(q.qid, {}))


def pools_from_run(queries: Sequence[SynthesisQuery], path: str | Path, depth: int) -> None:
    """Set each query's pool to its top ``depth`` documents of a TREC run (trec_eval order)."""
    run = read_run(path)
    missing = [q.qid for q in queries if q.qid not in run]
    if missing:
        raise ValueError(f"{path}: no results for {len(missing)} queries (e.g. {missing[:3]})")
    for q in queries:
        q.pool = ranking(run[q.qid])[:depth]


class BM25Retriever:
    """BM25 over a corpus with ``bm25s`` (Anserini's defaults k1=0.9, b=0.4; English stopwords)."""

    def __init__(self, corpus: Corpus, *, k1: float = 0.9, b: float = 0.4) -> None:
        import bm25s

        if not corpus:
            raise ValueError("the corpus is empty")
        self._bm25s = bm25s
        self.docids = list(corpus)
        texts = [" ".join(filter(None, (d.get("title"), d["text"]))) for d in corpus.values()]
        self.index = bm25s.BM25(k1=k1, b=b)
        self.index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)

    def search(self, queries: Sequence[str], depth: int) -> list[list[str]]:
        """Top ``depth`` doc ids per query, best first (documents with a zero score are left out)."""
        k = min(depth, len(self.docids))
        tokens = self._bm25s.tokenize(list(queries), stopwords="en", show_progress=False)
        ids, scores = self.index.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [
            [self.docids[int(i)] for i, s in zip(row_ids, row_scores) if s > 0]
            for row_ids, row_scores in zip(ids, scores)
        ]

    def fill_pools(self, queries: Sequence[SynthesisQuery], depth: int) -> None:
        for q, pool in zip(queries, self.search([q.query for q in queries], depth)):
            q.pool = pool
