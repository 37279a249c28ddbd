"""Readers and writers for TREC runs and qrels, query files and corpora (plain or gzip).

Conventions:

- A run is ``{qid: {docid: score}}`` (the pytrec_eval / ir-measures shape), queries in file order.
  Its ranking is what trec_eval evaluates: score descending, ties broken by docid *descending*
  (:func:`ranking`); the rank column of a run file is ignored, as trec_eval ignores it.
- Qrels are ``{qid: {docid: grade}}``.
- Malformed input raises :class:`ValueError` naming the file and the line number; empty files too.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = [
    "Run",
    "Qrels",
    "open_text",
    "iter_lines",
    "read_run",
    "write_run",
    "write_ranking",
    "check_tag",
    "read_qrels",
    "write_qrels",
    "read_queries",
    "read_corpus",
    "ranking",
]

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

_GZIP_MAGIC = b"\x1f\x8b"
_ID_KEYS = ("id", "docid", "_id", "doc_id", "pid")
_QID_KEYS = ("qid", "query_id", "id", "_id")
_TEXT_KEYS = ("contents", "content", "text", "passage", "body")
_QUERY_KEYS = ("query", "text", "contents", "question")


def open_text(path: str | Path, mode: str = "r") -> IO[str]:
    """Open a text file, gzip-compressed or not (read: by magic bytes; write: by a ``.gz`` suffix)."""
    path = Path(path)
    if "w" in mode or "a" in mode:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".gz":
            return gzip.open(path, mode + "t", encoding="utf-8")
        return open(path, mode, encoding="utf-8")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with open(path, "rb") as raw:
        magic = raw.read(2)
    if magic == _GZIP_MAGIC:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` for the non-blank lines of a file; raises if there are none."""
    empty = True
    try:
        with open_text(path) as handle:
            for number, line in enumerate(handle, 1):
                line = line.rstrip("\r\n")
                if line.strip():
                    empty = False
                    yield number, line
    except (gzip.BadGzipFile, EOFError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read it as UTF-8 text (plain or gzip): {err}") from None
    if empty:
        raise ValueError(f"{path}: the file is empty")


def _fail(path: str | Path, number: int, message: str, line: str) -> ValueError:
    shown = line if len(line) <= 120 else line[:117] + "..."
    return ValueError(f"{path}:{number}: {message}: {shown!r}")


# ---------------------------------------------------------------------------------------------- runs
def read_run(path: str | Path) -> Run:
    """Read a TREC run (``qid Q0 docid rank score tag``, whitespace-separated).

    Every non-blank line must have exactly six fields, an integer rank and a finite score; a docid
    may appear once per query. (The ReasonRank scripts silently skip lines that are not six fields;
    we raise, naming the line, because a skipped line silently changes the scores.)
    """
    run: Run = {}
    for number, line in iter_lines(path):
        fields = line.split()
        if len(fields) != 6:
            raise _fail(path, number, f"expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}", line)
        qid, _, docid, rank, score, _ = fields
        try:
            int(rank)
        except ValueError:
            raise _fail(path, number, f"rank {rank!r} is not an integer", line) from None
        try:
            value = float(score)
        except ValueError:
            raise _fail(path, number, f"score {score!r} is not a number", line) from None
        if not math.isfinite(value):
            raise _fail(path, number, f"score {score!r} is not finite", line)
        docs = run.setdefault(qid, {})
        if docid in docs:
            raise _fail(path, number, f"docid {docid!r} appears twice for query {qid!r}", line)
        docs[docid] = value
    return run


def ranking(scores: Mapping[str, float]) -> list[str]:
    """Docids in the order trec_eval evaluates them: score descending, ties by docid descending."""
    return sorted(scores, key=lambda d: (scores[d], d), reverse=True)


RankedList = Sequence[tuple[str, float]]


def write_run(
    path: str | Path,
    run: Mapping[str, RankedList | Mapping[str, float]],
    tag: str = "reasonrank",
    *,
    rescore: bool = False,
) -> Path:
    """Write a TREC run; ``.gz`` paths are gzip-compressed.

    Each query maps to ``[(docid, score), ...]`` best first (or a ``{docid: score}`` dict, ranked
    with :func:`ranking`). Scores must be strictly decreasing so that trec_eval's tie-break by docid
    cannot reorder the list; ``rescore=True`` replaces them with ``1 / rank`` instead. Scores are
    written with ``repr`` precision (not ``%.6f``, whose rounding can create ties).
    """
    check_tag(tag)
    path = Path(path)
    with open_text(path, "w") as out:
        for qid, docs in run.items():
            write_ranking(out, qid, docs, tag, rescore=rescore)
    return path


def check_tag(tag: str) -> str:
    """``tag`` if it can be a TREC run tag (a non-empty word), else ``ValueError``."""
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"run tag must be a non-empty word without spaces, got {tag!r}")
    return tag


def write_ranking(
    out: IO[str], qid: str, docs: RankedList | Mapping[str, float], tag: str, *, rescore: bool = False
) -> None:
    """Write one query's lines of a TREC run to an open file (see :func:`write_run` for the rules)."""
    ranked = [(d, docs[d]) for d in ranking(docs)] if isinstance(docs, Mapping) else list(docs)
    seen: set[str] = set()
    previous = math.inf
    lines = []
    for rank, (docid, score) in enumerate(ranked, 1):
        docid = str(docid)
        if any(c.isspace() for c in str(qid) + docid) or not docid:
            raise ValueError(f"query {qid!r}: ids in a TREC run cannot be empty or contain spaces: {docid!r}")
        if docid in seen:
            raise ValueError(f"query {qid!r}: docid {docid!r} appears twice")
        seen.add(docid)
        value = 1.0 / rank if rescore else float(score)
        if not value < previous:
            raise ValueError(
                f"query {qid!r}: score {value!r} at rank {rank} is not below the previous one "
                "(trec_eval would re-sort the tie by docid); pass rescore=True to write 1/rank"
            )
        previous = value
        lines.append(f"{qid} Q0 {docid} {rank} {value!r} {tag}\n")
    out.write("".join(lines))  # a query's lines go out whole, or not at all


# --------------------------------------------------------------------------------------------- qrels
def read_qrels(path: str | Path) -> Qrels:
    """Read TREC qrels (``qid iteration docid grade``), or a JSON ``{qid: {docid: grade}}`` file."""
    path = Path(path)
    try:
        with open_text(path) as handle:
            head = handle.read(256).lstrip()[:1]
    except (gzip.BadGzipFile, EOFError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read it as UTF-8 text (plain or gzip): {err}") from None
    if head == "{":
        with open_text(path) as handle:
            try:
                data = json.load(handle)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{err.lineno}: invalid JSON qrels: {err.msg}") from None
        if not data:
            raise ValueError(f"{path}: the qrels are empty")
        try:
            return {str(q): {str(d): int(g) for d, g in docs.items()} for q, docs in data.items()}
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"{path}: JSON qrels must be {{qid: {{docid: integer grade}}}}") from None
    qrels: Qrels = {}
    for number, line in iter_lines(path):
        fields = line.split()
        if len(fields) != 4:
            raise _fail(path, number, f"expected 4 fields 'qid iteration docid grade', got {len(fields)}", line)
        qid, _, docid, grade = fields
        try:
            value = int(grade)
        except ValueError:
            raise _fail(path, number, f"grade {grade!r} is not an integer", line) from None
        qrels.setdefault(qid, {})[docid] = value
    return qrels


def write_qrels(path: str | Path, qrels: Mapping[str, Mapping[str, int]]) -> Path:
    """Write TREC qrels (``qid 0 docid grade``)."""
    with open_text(path, "w") as out:
        for qid, docs in qrels.items():
            for docid, grade in docs.items():
                out.write(f"{qid} 0 {docid} {int(grade)}\n")
    return Path(path)


# ------------------------------------------------------------------------------------ queries, corpus
def _first(record: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        if key in record and record[key] is not None:
            return record[key]
    return None


def _json_records(path: str | Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    for number, line in iter_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise _fail(path, number, f"invalid JSON ({err.msg})", line) from None
        if not isinstance(record, dict):
            raise _fail(path, number, "expected a JSON object", line)
        yield number, line, record


def _is_jsonl(path: str | Path) -> bool:
    for _, line in iter_lines(path):
        return line.lstrip().startswith("{")
    return False


def read_queries(path: str | Path) -> dict[str, str]:
    """Read queries from TSV (``qid<TAB>query``) or JSONL (``qid``/``query_id``/``id`` + ``query``/``text``)."""
    queries: dict[str, str] = {}
    if _is_jsonl(path):
        for number, line, record in _json_records(path):
            qid, text = _first(record, _QID_KEYS), _first(record, _QUERY_KEYS)
            if qid is None or not isinstance(text, str):
                raise _fail(
                    path, number, "a query record needs an id ('qid' or 'id') and a text ('query' or 'text')", line
                )
            queries[str(qid)] = text
        return queries
    for number, line in iter_lines(path):
        qid, tab, text = line.partition("\t")
        if not tab or not qid.strip() or not text.strip():
            raise _fail(path, number, "expected 'qid<TAB>query'", line)
        queries[qid.strip()] = text.strip()
    return queries


def read_corpus(path: str | Path, ids: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
    """Read documents as ``{docid: {"text": ..., "title": ...}}`` from JSONL or TSV.

    JSONL records carry an id (``id``/``docid``/``_id``), a text (``contents``/``content``/``text``)
    and optionally a ``title``; TSV lines are ``docid<TAB>text`` or ``docid<TAB>title<TAB>text``.
    With ``ids``, only those documents are kept (large corpora stay out of memory).
    """
    wanted = set(ids) if ids is not None else None
    corpus: dict[str, dict[str, str]] = {}
    if _is_jsonl(path):
        for number, line, record in _json_records(path):
            docid, text = _first(record, _ID_KEYS), _first(record, _TEXT_KEYS)
            if docid is None or not isinstance(text, str):
                raise _fail(
                    path,
                    number,
                    "a document needs an id ('id', 'docid' or '_id') and a text ('contents' or 'text')",
                    line,
                )
            docid = str(docid)
            if wanted is None or docid in wanted:
                title = record.get("title")
                corpus[docid] = {"text": text, **({"title": title} if isinstance(title, str) and title else {})}
        return corpus
    for number, line in iter_lines(path):
        fields = line.split("\t")
        if len(fields) not in (2, 3) or not fields[0].strip():
            raise _fail(path, number, "expected 'docid<TAB>text' or 'docid<TAB>title<TAB>text'", line)
        docid = fields[0].strip()
        if wanted is None or docid in wanted:
            doc = {"text": fields[-1]}
            if len(fields) == 3 and fields[1]:
                doc["title"] = fields[1]
            corpus[docid] = doc
    return corpus
