"""The output directory, in the released ``reasonrank_data_13k`` layout, written append-only.

::

    OUT/
      training_data_all.jsonl   kept samples: dataset, qid, initial_list, final_list, reasoning, relevant_docids
      id_query/queries.jsonl    {"id", "text"} per query (texts of the qids above)
      id_doc/docs.jsonl         {"id", "text"[, "title"]} per passage (texts of the doc ids above)
      dropped.jsonl             samples the filter rejected (same fields + "reason", "ndcg@10"), for re-filtering
      synthesis_log.jsonl       one line per query and attempt: status, reason, tokens, mining/ranking details
      summary.json              totals of the last run

Every line is written whole and flushed as soon as its query finishes, texts before the record that
refers to them, so a crash loses at most the queries in flight. A query is *finished* when its
``(dataset, qid)`` is in ``training_data_all.jsonl`` or ``dropped.jsonl``; a re-run skips it. A line cut
short by a crash is removed when the store is opened. One writer per directory (an OS lock enforces it).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["SyntheticSample", "SynthesisStore", "DATA_FILE", "DROPPED_FILE", "LOG_FILE", "QUERY_FILE", "DOC_FILE"]

DATA_FILE = "training_data_all.jsonl"
DROPPED_FILE = "dropped.jsonl"
LOG_FILE = "synthesis_log.jsonl"
SUMMARY_FILE = "summary.json"
QUERY_FILE = "id_query/queries.jsonl"
DOC_FILE = "id_doc/docs.jsonl"


@dataclass
class SyntheticSample:
    """One record of ``training_data_all.jsonl`` (the released format, field for field)."""

    dataset: str
    qid: str
    initial_list: list[str]  # doc ids in presentation order
    final_list: list[str]  # the teacher's ranking of initial_list
    reasoning: str  # the teacher's chain
    relevant_docids: list[str]  # teacher-mined (or qrels) positives, subset of initial_list

    def __post_init__(self) -> None:
        if sorted(self.final_list) != sorted(self.initial_list) or len(set(self.initial_list)) != len(
            self.initial_list
        ):
            raise ValueError(f"{self.qid}: final_list must be a permutation of initial_list (distinct ids)")
        if not set(self.relevant_docids) <= set(self.initial_list):
            raise ValueError(f"{self.qid}: relevant_docids must be a subset of initial_list")

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


def _text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def _repair_tail(path: Path) -> None:
    """Drop a last line that a crash cut short (no trailing newline)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        data = handle.read()
        handle.truncate(data.rfind(b"\n") + 1)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: invalid JSON ({err.msg}); fix or remove the line") from None


class SynthesisStore:
    """Append-only writer of one output directory, aware of what earlier runs finished."""

    def __init__(self, out_dir: str | Path) -> None:
        self.root = Path(out_dir)
        for sub in (QUERY_FILE, DOC_FILE):
            (self.root / sub).parent.mkdir(parents=True, exist_ok=True)
        self._lock = self._acquire_lock()
        for name in (DATA_FILE, DROPPED_FILE, LOG_FILE, QUERY_FILE, DOC_FILE):
            _repair_tail(self.root / name)
        self.kept: dict[tuple[str, str], dict[str, Any]] = {}
        self.dropped: dict[tuple[str, str], dict[str, Any]] = {}
        for target, name in ((self.kept, DATA_FILE), (self.dropped, DROPPED_FILE)):
            for record in _read_jsonl(self.root / name):
                target[(str(record["dataset"]), str(record["qid"]))] = record
        self.query_hashes = {str(r["id"]): _text_hash(r["text"]) for r in _read_jsonl(self.root / QUERY_FILE)}
        self.doc_hashes = {str(r["id"]): _text_hash(r["text"]) for r in _read_jsonl(self.root / DOC_FILE)}
        self._files: dict[str, IO[str]] = {}

    # ------------------------------------------------------------------ state
    def finished(self, dataset: str, qid: str) -> bool:
        key = (dataset, qid)
        return key in self.kept or key in self.dropped

    def check_query(self, qid: str, text: str) -> None:
        """Raise if ``qid`` is already stored with another text (qids must be unique in one directory)."""
        known = self.query_hashes.get(qid)
        if known is not None and known != _text_hash(text):
            raise ValueError(
                f"query id {qid!r} is already in {self.root / QUERY_FILE} with a different text; "
                "use distinct query ids per output directory (e.g. prefix them with the domain)"
            )

    def check_doc(self, docid: str, text: str) -> None:
        known = self.doc_hashes.get(docid)
        if known is not None and known != _text_hash(text):
            raise ValueError(
                f"doc id {docid!r} is already in {self.root / DOC_FILE} with a different text; "
                "use distinct doc ids per output directory"
            )

    # ------------------------------------------------------------------ writing
    def _append(self, name: str, record: Mapping[str, Any]) -> None:
        handle = self._files.get(name)
        if handle is None:
            handle = self._files[name] = open(self.root / name, "a", encoding="utf-8")
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()

    def write_texts(self, qid: str, query: str, docs: Mapping[str, Mapping[str, str]]) -> None:
        """Store the query and passage texts not stored yet (before the record that refers to them)."""
        for docid, doc in docs.items():
            if docid not in self.doc_hashes:
                entry = {"id": docid, "text": doc["text"]}
                if doc.get("title"):
                    entry["title"] = doc["title"]
                self._append(DOC_FILE, entry)
                self.doc_hashes[docid] = _text_hash(doc["text"])
        if qid not in self.query_hashes:
            self._append(QUERY_FILE, {"id": qid, "text": query})
            self.query_hashes[qid] = _text_hash(query)

    def write_kept(self, sample: SyntheticSample) -> None:
        record = sample.to_record()
        self._append(DATA_FILE, record)
        self.kept[(sample.dataset, sample.qid)] = record

    def write_dropped(self, sample: SyntheticSample, reason: str, ndcg: float | None) -> None:
        record = {**sample.to_record(), "reason": reason, "ndcg@10": ndcg}
        self._append(DROPPED_FILE, record)
        self.dropped[(sample.dataset, sample.qid)] = record

    def log(self, entry: Mapping[str, Any]) -> None:
        self._append(LOG_FILE, entry)

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        path = self.root / SUMMARY_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    # ------------------------------------------------------------------ lifecycle
    def _acquire_lock(self) -> IO[str] | None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return None
        handle = open(self.root / ".lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise RuntimeError(f"{self.root} is being written by another synthesis run") from None
        return handle

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> SynthesisStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
