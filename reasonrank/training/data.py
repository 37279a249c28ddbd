"""Training data: the released ReasonRank formats, filters, and TRL datasets.

Formats (recipe §3):

- ``training_data_all.jsonl`` (+ ``id_query/`` and ``id_doc/``): one record per line with ``dataset``,
  ``qid``, ``initial_list``, ``final_list``, ``reasoning``, ``relevant_docids``; query and passage texts
  are looked up by id. The release's exact layout of the two directories is not documented, so the
  loader accepts a directory holding any number of mapping files (or a single file):
  ``*.jsonl`` (``{"id": .., "text": ..}`` with ``qid``/``docid``/``_id`` and ``query``/``contents``/... also
  accepted, or one-key ``{id: text}`` lines), ``*.json`` (``{id: text}`` or a list of such objects) and
  ``*.tsv`` (``id<TAB>text``), optionally gzipped. When ids repeat across files with different texts,
  a file named after the record's ``dataset`` (e.g. ``id_doc/math-qa.jsonl``) wins.
- LLaMA-Factory alpaca SFT JSON (``instruction``, ``input``, ``output``, ``system``): the user message
  is parsed back into query and passages, so prompts are rebuilt exactly like inference prompts.
- verl RL parquet (``prompt``, ``dataset``, ``initial_list``, ``final_list``, ``relevant_docids``,
  ``label``, ``reward_model``, ``extra_info``).

Every record becomes a :class:`RankingRecord`. :func:`sft_rows` / :func:`grpo_rows` turn records into
TRL conversational rows whose prompts come from :func:`reasonrank.core.prompts.build_messages` over
:func:`~reasonrank.core.prompts.prepare_passage`'d texts: training and inference prompts are identical.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reasonrank.core.prompts import PromptMode, build_messages, clean_passage, finish_passage
from reasonrank.training.metrics import ndcg_at_k

__all__ = [
    "RankingRecord",
    "DataFormatError",
    "LoadReport",
    "FilterReport",
    "load_records",
    "load_training_jsonl",
    "load_alpaca",
    "load_verl_parquet",
    "load_id_texts",
    "parse_user_message",
    "format_target",
    "self_consistency_filter",
    "decontaminate",
    "load_eval_queries",
    "normalize_for_dedup",
    "sft_rows",
    "grpo_rows",
]

logger = logging.getLogger(__name__)

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
        if len(self.docids) != len(self.passages):
            raise ValueError(f"{self.source or self.qid}: {len(self.docids)} docids but {len(self.passages)} passages")
        if len(set(self.docids)) != len(self.docids):
            raise ValueError(f"{self.source or self.qid}: initial_list has repeated docids")
        if sorted(self.final_list) != sorted(self.docids):
            raise ValueError(f"{self.source or self.qid}: final_list is not a permutation of initial_list")
        if self.relevant_docids is not None:
            extra = set(self.relevant_docids) - set(self.docids)
            if extra:
                raise ValueError(f"{self.source or self.qid}: relevant_docids not in initial_list: {sorted(extra)[:5]}")

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
    max_examples: int | None = 10  # how many removals str() lists (None: all, as decontamination does)

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def __str__(self) -> str:
        lines = [f"{self.name}: kept {self.kept}, dropped {self.total_dropped}"]
        if self.unlabelled:
            lines.append(f"  {self.unlabelled} records without labels were kept unjudged")
        for domain, count in sorted(self.dropped.items()):
            lines.append(f"  {domain or '(no dataset)'}: dropped {count}")
        shown = self.examples if self.max_examples is None else self.examples[: self.max_examples]
        lines.extend(f"  - {example}" for example in shown)
        if len(shown) < len(self.examples):
            lines.append(f"  ... and {len(self.examples) - len(shown)} more")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- id maps

_ID_KEYS = ("id", "_id", "qid", "docid", "doc_id", "query_id", "pid")
_TEXT_KEYS = ("text", "query", "contents", "content", "passage", "doc", "segment", "body")


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _base_suffix(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    return suffixes[-1].lower() if suffixes else ""


def _entry(obj: Any, where: str) -> tuple[str, str]:
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: expected an object, got {type(obj).__name__}")
    id_key = next((k for k in _ID_KEYS if k in obj), None)
    if id_key is None:
        if len(obj) == 1:
            ((key, value),) = obj.items()
            if isinstance(value, str):
                return str(key), value
        raise DataFormatError(f"{where}: no id field (one of {', '.join(_ID_KEYS)}); keys: {sorted(obj)[:8]}")
    text_key = next((k for k in _TEXT_KEYS if k in obj), None)
    if text_key is None:
        raise DataFormatError(f"{where}: no text field (one of {', '.join(_TEXT_KEYS)}); keys: {sorted(obj)[:8]}")
    text = obj[text_key]
    if isinstance(obj.get("title"), str) and obj["title"] and text_key != "query":
        text = {"title": obj["title"], "text": text}
    return str(obj[id_key]), text


def _read_mapping_file(path: Path) -> Iterator[tuple[str, Any]]:
    kind = _base_suffix(path)
    with _open_text(path) as handle:
        if kind == ".jsonl":
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataFormatError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
                yield _entry(obj, f"{path}:{lineno}")
        elif kind == ".json":
            try:
                obj = json.load(handle)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
            if isinstance(obj, dict):
                for key, value in obj.items():
                    if not isinstance(value, (str, dict)):
                        raise DataFormatError(f"{path}: value of {key!r} is {type(value).__name__}, expected text")
                    yield str(key), value
            elif isinstance(obj, list):
                for i, item in enumerate(obj):
                    yield _entry(item, f"{path}[{i}]")
            else:
                raise DataFormatError(f"{path}: expected an object or a list")
        elif kind == ".tsv":
            for lineno, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
                if not row:
                    continue
                if len(row) < 2:
                    raise DataFormatError(f"{path}:{lineno}: expected 'id<TAB>text'")
                yield row[0], "\t".join(row[1:])
        else:
            raise DataFormatError(f"{path}: unsupported mapping file type (use .jsonl, .json or .tsv, optionally .gz)")


class IdTexts:
    """An id -> text lookup built from a directory of mapping files (see module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"id mapping not found: {self.path}")
        files = (
            sorted(p for p in self.path.rglob("*") if p.is_file() and _base_suffix(p) in (".jsonl", ".json", ".tsv"))
            if self.path.is_dir()
            else [self.path]
        )
        if not files:
            raise FileNotFoundError(f"{self.path}: no .jsonl/.json/.tsv mapping files inside")
        self.by_file: dict[str, dict[str, Any]] = {}
        self.merged: dict[str, Any] = {}
        self.ambiguous: set[str] = set()
        for file in files:
            stem = file.name.split(".")[0]
            table = self.by_file.setdefault(stem, {})
            for key, text in _read_mapping_file(file):
                table[key] = text
                if key in self.merged and self.merged[key] != text:
                    self.ambiguous.add(key)
                self.merged.setdefault(key, text)

    def __len__(self) -> int:
        return len(self.merged)

    def get(self, key: str, dataset: str = "") -> Any:
        table = self.by_file.get(dataset)
        if table is not None and key in table:
            return table[key]
        if key in self.ambiguous:
            raise ValueError(f"id {key!r} has different texts in several files of {self.path} and none is named "
                           f"after dataset {dataset!r}")
        return self.merged[key]


def load_id_texts(path: str | Path) -> IdTexts:
    """Read an ``id_query/`` or ``id_doc/`` directory (or one mapping file)."""
    return IdTexts(path)


# ---------------------------------------------------------------------------------------------- records

def _handle(error: Exception, where: str, on_error: OnError, report: LoadReport) -> None:
    message = str(error) if str(error).startswith(where) else f"{where}: {error}"
    if on_error == "raise":
        raise DataFormatError(message) from None
    report.skipped.append(message)


def _str_list(value: Any, name: str) -> list[str]:
    if hasattr(value, "tolist"):  # numpy arrays from parquet
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name} must be a non-empty list, got {type(value).__name__}")
    return [str(v) for v in value]


def load_training_jsonl(
    path: str | Path,
    id_query: str | Path | IdTexts | None = None,
    id_doc: str | Path | IdTexts | None = None,
    *,
    on_error: OnError = "raise",
    report: LoadReport | None = None,
) -> list[RankingRecord]:
    """Load ``training_data_all.jsonl``; texts come from ``id_query``/``id_doc`` (default: beside the file)."""
    path = Path(path)
    report = report if report is not None else LoadReport()
    queries = id_query if isinstance(id_query, IdTexts) else load_id_texts(id_query or path.parent / "id_query")
    docs = id_doc if isinstance(id_doc, IdTexts) else load_id_texts(id_doc or path.parent / "id_doc")
    records = []
    with _open_text(path) as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("expected a JSON object")
                missing = [k for k in ("qid", "initial_list", "final_list") if k not in obj]
                if missing:
                    raise ValueError(f"missing field(s) {missing}")
                dataset = str(obj.get("dataset", ""))
                qid = str(obj["qid"])
                docids = _str_list(obj["initial_list"], "initial_list")
                try:
                    query = queries.get(qid, dataset)
                except KeyError as err:
                    raise ValueError(f"qid {qid!r} not found in {queries.path}") from err
                passages = []
                for docid in docids:
                    try:
                        passages.append(docs.get(docid, dataset))
                    except KeyError:
                        raise ValueError(f"docid {docid!r} not found in {docs.path}") from None
                relevant = obj.get("relevant_docids")
                records.append(RankingRecord(
                    qid=qid,
                    query=query if isinstance(query, str) else str(query),
                    docids=docids,
                    passages=passages,
                    final_list=_str_list(obj["final_list"], "final_list"),
                    relevant_docids=None if relevant is None else [str(d) for d in relevant],
                    reasoning=str(obj.get("reasoning") or ""),
                    dataset=dataset,
                    source=where,
                ))
            except (ValueError, TypeError) as err:
                _handle(err if not isinstance(err, json.JSONDecodeError) else ValueError(f"invalid JSON ({err.msg})"),
                        where, on_error, report)
    report.loaded += len(records)
    return records


_PREFIX_RE = re.compile(
    r"^I will provide you with (?P<num>\d+) passages, each indicated by a numerical identifier \[\]\. "
    r"Rank the passages based on their relevance to the search query: (?P<query>.*?)\.\n\n(?=\[1\] )",
    re.DOTALL,
)


def parse_user_message(text: str) -> tuple[str, list[str]]:
    """Split a ReasonRank user message (recipe §1.3) back into (query, passage contents).

    Unambiguous because the prompt builder turns every ``[n]`` inside the query and the passages into
    ``(n)``: the first ``.\n\n[1] `` ends the query, ``\n[k+1] `` ends passage k, and the suffix repeats
    the query (``\nSearch Query: {query}.\nRank the {num} passages above``).
    """
    match = _PREFIX_RE.match(text)
    if not match:
        raise ValueError("user message does not start with the ReasonRank prefix "
                         "('I will provide you with N passages ... search query: Q.' then a blank line and [1])")
    num, query = int(match.group("num")), match.group("query")
    suffix_at = text.rfind(f"\nSearch Query: {query}.\nRank the {num} passages above")
    if suffix_at < match.end():
        raise ValueError(f"user message has no 'Search Query: ...' suffix repeating the query for {num} passages")
    body = text[match.end() : suffix_at + 1]  # keeps the newline that ends the last passage
    passages = []
    position = 0
    for k in range(1, num + 1):
        marker = f"[{k}] "
        if not body.startswith(marker, position):
            raise ValueError(f"user message: passage [{k}] not found where expected")
        start = position + len(marker)
        if k < num:
            end = body.find(f"\n[{k + 1}] ", start)
            if end < 0:
                raise ValueError(f"user message: passage [{k + 1}] of {num} not found")
        else:
            end = len(body) - 1
            if f"\n[{k + 1}] " in body[start:]:
                raise ValueError(f"user message holds more than the {num} passages its prefix announces")
        passages.append(body[start:end])
        position = end + 1
    return query, passages


_TARGET_RE = re.compile(r"<think>(.*?)</think>\s*<answer>(.*?)</answer>", re.DOTALL)
_ID_RE = re.compile(r"\[(\d+)\]")


def _parse_target(text: str) -> tuple[str, list[int]]:
    match = _TARGET_RE.search(text)
    if not match:
        raise ValueError("output is not '<think>...</think> <answer>...</answer>'")
    ids = [int(x) for x in _ID_RE.findall(match.group(2))]
    return match.group(1).strip(), ids


def _record_from_messages(
    system: str | None, user: str, *, output: str | None, where: str, dataset: str = "",
    initial_list: Any = None, final_list: Any = None, relevant: Any = None, qid: str = "",
) -> RankingRecord:
    query, passages = parse_user_message(user)
    if initial_list is not None:
        docids = _str_list(initial_list, "initial_list")
    else:
        docids = [str(i) for i in range(1, len(passages) + 1)]
    if len(docids) != len(passages):
        raise ValueError(f"prompt holds {len(passages)} passages but initial_list has {len(docids)}")
    reasoning = ""
    if final_list is not None:
        final = _str_list(final_list, "final_list")
    else:
        reasoning, ids = _parse_target(output or "")
        if sorted(ids) != list(range(1, len(docids) + 1)):
            raise ValueError(f"output answer is not a permutation of [1]..[{len(docids)}]")
        final = [docids[i - 1] for i in ids]
    if output is not None and not reasoning:
        reasoning = _parse_target(output)[0]
    return RankingRecord(
        qid=qid or where, query=query, docids=docids, passages=passages, final_list=final,
        relevant_docids=None if relevant is None else _str_list(relevant, "relevant_docids") if len(relevant) else [],
        reasoning=reasoning, dataset=dataset, source=where,
    )


def load_alpaca(path: str | Path, *, on_error: OnError = "raise", report: LoadReport | None = None) -> list[RankingRecord]:
    """Load the LLaMA-Factory alpaca SFT JSON (``instruction``+``input`` = user message, ``output``)."""
    path = Path(path)
    report = report if report is not None else LoadReport()
    with _open_text(path) as handle:
        try:
            rows = json.load(handle) if _base_suffix(path) == ".json" else [json.loads(l) for l in handle if l.strip()]
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(rows, list):
        raise DataFormatError(f"{path}: expected a JSON list of alpaca records")
    records = []
    for i, row in enumerate(rows):
        where = f"{path}[{i}]"
        try:
            if not isinstance(row, dict) or "instruction" not in row or "output" not in row:
                raise ValueError("an alpaca record needs 'instruction' and 'output'")
            user = row["instruction"] + (("\n" + row["input"]) if row.get("input") else "")
            records.append(_record_from_messages(row.get("system"), user, output=row["output"], where=where,
                                                 dataset=str(row.get("dataset", ""))))
        except (ValueError, TypeError) as err:
            _handle(err, where, on_error, report)
    report.loaded += len(records)
    return records


def load_verl_parquet(path: str | Path, *, on_error: OnError = "raise", report: LoadReport | None = None) -> list[RankingRecord]:
    """Load a verl RL parquet (``train.parquet``/``val.parquet``); labels from the list columns or ``extra_info``."""
    import pyarrow.parquet as pq

    path = Path(path)
    report = report if report is not None else LoadReport()
    rows = pq.read_table(path).to_pylist()
    records = []
    for i, row in enumerate(rows):
        where = f"{path}: row {i}"
        try:
            extra = row.get("extra_info") or {}
            prompt = row.get("prompt")
            if not isinstance(prompt, list) or not prompt:
                raise ValueError("'prompt' must be a list of chat messages")
            user = next((m["content"] for m in prompt if m.get("role") == "user"), None)
            if user is None:
                raise ValueError("'prompt' has no user message")
            system = next((m["content"] for m in prompt if m.get("role") == "system"), None)
            initial = row.get("initial_list") if row.get("initial_list") is not None else extra.get("initial_list")
            final = row.get("final_list") if row.get("final_list") is not None else extra.get("final_list")
            relevant = row.get("relevant_docids") if row.get("relevant_docids") is not None else extra.get("relevant_docids")
            if initial is None or final is None:
                raise ValueError("missing initial_list/final_list (columns or extra_info)")
            record = _record_from_messages(system, user, output=None, where=where, dataset=str(row.get("dataset") or ""),
                                           initial_list=initial, final_list=final, relevant=relevant,
                                           qid=str(extra.get("qid") or row.get("qid") or ""))
            label = row.get("label")
            if isinstance(label, str) and label.strip():
                ids = [int(x) for x in _ID_RE.findall(label)]
                if ids and ids != record.answer_ids:
                    raise ValueError("'label' disagrees with final_list")
            records.append(record)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            _handle(err, where, on_error, report)
    report.loaded += len(records)
    return records


def load_records(
    paths: str | Path | Sequence[str | Path],
    *,
    format: str = "auto",
    id_query: str | Path | None = None,
    id_doc: str | Path | None = None,
    on_error: OnError = "raise",
    report: LoadReport | None = None,
) -> list[RankingRecord]:
    """Load records from one or more files; ``format='auto'`` picks by extension (.jsonl/.json/.parquet)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    report = report if report is not None else LoadReport()
    records: list[RankingRecord] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise FileNotFoundError(f"training file not found: {path}")
        kind = format
        if kind == "auto":
            suffix = _base_suffix(path)
            kind = {".jsonl": "jsonl", ".json": "alpaca", ".parquet": "parquet"}.get(suffix)
            if kind is None:
                raise ValueError(f"{path}: cannot tell the format from the extension; set format to jsonl, alpaca or parquet")
        if kind == "jsonl":
            records += load_training_jsonl(path, id_query, id_doc, on_error=on_error, report=report)
        elif kind == "alpaca":
            records += load_alpaca(path, on_error=on_error, report=report)
        elif kind == "parquet":
            records += load_verl_parquet(path, on_error=on_error, report=report)
        else:
            raise ValueError(f"unknown data format {kind!r}; use auto, jsonl, alpaca or parquet")
    if report.skipped:
        logger.warning("skipped %d malformed records (first: %s)", len(report.skipped), report.skipped[0])
    return records


# ---------------------------------------------------------------------------------------------- filters

def self_consistency_filter(records: Iterable[RankingRecord], threshold: float = 0.4) -> tuple[list[RankingRecord], FilterReport]:
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
    with _open_text(path) as handle:
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
    ``eval_queries``: files read by :func:`load_eval_queries` (e.g. BRIGHT's jsonl.gz) or a prepared
    ``{normalized query: label}`` map.
    """
    if not isinstance(eval_queries, dict):
        merged: dict[str, str] = {}
        for path in eval_queries:
            for key, label in load_eval_queries(path).items():
                merged.setdefault(key, f"{Path(path).name}:{label}")
        eval_queries = merged
    if near_threshold is not None and not 0.0 < near_threshold <= 1.0:
        raise ValueError(f"near_threshold must be in (0, 1], got {near_threshold}")
    index = _NearDuplicateIndex(eval_queries) if near_threshold is not None else None
    name = "decontamination (normalized exact query match"
    name += f", or word-trigram Jaccard >= {near_threshold})" if index else ")"
    report = FilterReport(name=name, max_examples=None)
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


# ---------------------------------------------------------------------------------------------- TRL rows

def format_answer_ids(ids: Sequence[int]) -> str:
    return " > ".join(f"[{i}]" for i in ids)


def format_target(reasoning: str, ids: Sequence[int]) -> str:
    """The SFT response, spaced as the system prompt and paper Fig. 12 show it:
    ``<think> {reasoning} </think> <answer> [a] > [b] > ... </answer>``."""
    return f"<think> {reasoning.strip()} </think> <answer> {format_answer_ids(ids)} </answer>"


Tokenizer = Any


def _prepared_passages(record: RankingRecord, tokenizer: Tokenizer | None, max_passage_tokens: int | None) -> list[str]:
    from reasonrank.core.truncation import truncate_with_tokenizer

    cleaned = [clean_passage(p) for p in record.passages]
    if tokenizer is not None and max_passage_tokens is not None:
        cleaned = truncate_with_tokenizer(tokenizer, cleaned, max_passage_tokens)
    return [finish_passage(c) for c in cleaned]


def _count_tokens(tokenizer: Tokenizer, messages: list[dict[str, str]], *, generation_prompt: bool) -> int:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)


def _fit_messages(
    record: RankingRecord, *, mode: PromptMode | str, tokenizer: Tokenizer | None, max_passage_tokens: int | None,
    budget: int | None, completion: list[dict[str, str]] | None,
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
        longest = max(len(tokenizer(clean_passage(p), add_special_tokens=False)["input_ids"]) for p in record.passages)
        current = min(limit, longest) if limit is not None else longest
        overflow = total - budget
        new_limit = current - math.ceil(overflow / max(1, len(record.passages))) - 1
        if new_limit < 1:
            raise ValueError(
                f"{record.source or record.qid}: does not fit in {budget} tokens even with empty passages "
                f"({total} tokens); raise the length budget (the answer is never truncated)"
            )
        limit = new_limit


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
    rows = []
    for record in records:
        target = format_target(record.reasoning, record.answer_ids) if PromptMode.parse(mode).reasons \
            else format_answer_ids(record.answer_ids)
        completion = [{"role": "assistant", "content": target}]
        prompt = _fit_messages(record, mode=mode, tokenizer=tokenizer, max_passage_tokens=max_passage_tokens,
                               budget=max_length, completion=completion)
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
        prompt = _fit_messages(record, mode=mode, tokenizer=tokenizer, max_passage_tokens=max_passage_tokens,
                               budget=max_prompt_length, completion=None)
        rows.append({
            "prompt": prompt,
            "initial_list": list(record.docids),
            "final_list": list(record.final_list),
            "relevant_docids": list(record.relevant_docids),
            "dataset": record.dataset,
        })
    return rows


def _brief(report: Any, lines: int = 12) -> str:
    text = str(report).splitlines()
    more = f"\n  ... ({len(text) - lines} more lines in data_report.txt)" if len(text) > lines else ""
    return "\n".join(text[:lines]) + more


def prepare_records(settings, *, log: Callable[[str], None] = logger.info) -> tuple[list[RankingRecord], list[Any]]:
    """Load + filter per a :class:`~reasonrank.training.config.DataSettings`; returns (records, reports)."""
    load_report = LoadReport()
    records = load_records(settings.train_files, format=settings.format, id_query=settings.id_query,
                           id_doc=settings.id_doc, on_error=settings.on_error, report=load_report)
    reports: list[Any] = [load_report]
    log(_brief(load_report))
    if settings.self_consistency_threshold is not None:
        records, report = self_consistency_filter(records, settings.self_consistency_threshold)
        reports.append(report)
        log(_brief(report))
    if settings.decontaminate:
        records, report = decontaminate(records, settings.decontaminate,
                                        near_threshold=settings.decontaminate_near_threshold)
        reports.append(report)
        log(_brief(report))
    if settings.shuffle_seed is not None:
        import random

        random.Random(settings.shuffle_seed).shuffle(records)
    if settings.max_samples is not None:
        records = records[: settings.max_samples]
    if not records:
        raise ValueError("no training records left after loading and filtering")
    return records, reports
