"""The released ReasonRank data formats (recipe §3), read into :class:`RankingRecord` lists.

- ``training_data_all.jsonl`` (+ ``id_query/`` and ``id_doc/``): one record per line with ``dataset``,
  ``qid``, ``initial_list``, ``final_list``, ``reasoning``, ``relevant_docids``; query and passage texts
  are looked up by id. The release's exact layout of the two directories is not documented, so the
  loader accepts a directory holding any number of mapping files (or a single file):
  ``*.jsonl`` (``{"id": .., "text": ..}`` with ``qid``/``docid``/``_id`` and ``query``/``contents``/... also
  accepted, or one-key ``{id: text}`` lines), ``*.json`` (``{id: text}`` or a list of such objects) and
  ``*.tsv`` (``id<TAB>text``), optionally gzipped. When ids repeat across files with different texts,
  a file named after the record's ``dataset`` (e.g. ``id_doc/math-qa.jsonl``) wins.
- LLaMA-Factory alpaca SFT JSON (``instruction``, ``input``, ``output``, ``system``): the user message
  is parsed back into query and passages (:func:`reasonrank.core.format.parse_user_message`), so
  prompts are rebuilt exactly like inference prompts.
- verl RL parquet (``prompt``, ``dataset``, ``initial_list``, ``final_list``, ``relevant_docids``,
  ``label``, ``reward_model``, ``extra_info``).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from reasonrank.core.format import OUTPUT_RE, TEXT_FIELDS, parse_user_message
from reasonrank.evaluation.io import open_text
from reasonrank.training.data.records import DataFormatError, LoadReport, OnError, RankingRecord

__all__ = [
    "IdTexts",
    "load_alpaca",
    "load_id_texts",
    "load_records",
    "load_training_jsonl",
    "load_verl_parquet",
]

logger = logging.getLogger(__name__)

_ID_KEYS = ("id", "_id", "qid", "docid", "doc_id", "query_id", "pid")
# A mapping file holds queries or passages: the query field, then the passage text fields, then "doc".
_TEXT_KEYS = ("text", "query", *(f for f in TEXT_FIELDS if f != "text"), "doc")
_ID_RE = re.compile(r"\[(\d+)\]")
#: the fields of ``training_data_all.jsonl`` as the release documents them (all required)
JSONL_FIELDS = ("dataset", "qid", "initial_list", "final_list", "reasoning", "relevant_docids")
#: the alpaca columns of ``dataset_info.json`` (``reasonrank_sft-data``: prompt, response, system)
ALPACA_FIELDS = ("instruction", "output", "system")
#: the verl parquet's label lists, each a column or a key of ``extra_info``
VERL_LISTS = ("initial_list", "final_list", "relevant_docids")


def base_suffix(path: Path) -> str:
    """The extension that names the format, ignoring a trailing ``.gz``."""
    suffixes = [s for s in path.suffixes if s != ".gz"]
    return suffixes[-1].lower() if suffixes else ""


# ---------------------------------------------------------------------------------------------- id maps
def _entry(obj: Any, where: str) -> tuple[str, Any]:
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


def _jsonl_entries(path: Path, handle: IO[str]) -> Iterator[tuple[str, Any]]:
    for lineno, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
        yield _entry(obj, f"{path}:{lineno}")


def _json_entries(path: Path, handle: IO[str]) -> Iterator[tuple[str, Any]]:
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


def _tsv_entries(path: Path, handle: IO[str]) -> Iterator[tuple[str, Any]]:
    for lineno, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
        if not row:
            continue
        if len(row) < 2:
            raise DataFormatError(f"{path}:{lineno}: expected 'id<TAB>text'")
        yield row[0], "\t".join(row[1:])


_MAPPING_READERS: dict[str, Callable[[Path, IO[str]], Iterator[tuple[str, Any]]]] = {
    ".jsonl": _jsonl_entries,
    ".json": _json_entries,
    ".tsv": _tsv_entries,
}


def _read_mapping_file(path: Path) -> Iterator[tuple[str, Any]]:
    reader = _MAPPING_READERS.get(base_suffix(path))
    if reader is None:
        raise DataFormatError(f"{path}: unsupported mapping file type (use .jsonl, .json or .tsv, optionally .gz)")
    with open_text(path) as handle:
        yield from reader(path, handle)


class IdTexts:
    """An id -> text lookup built from a directory of mapping files (see module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"id mapping not found: {self.path}")
        files = (
            sorted(p for p in self.path.rglob("*") if p.is_file() and base_suffix(p) in _MAPPING_READERS)
            if self.path.is_dir()
            else [self.path]
        )
        if not files:
            raise FileNotFoundError(f"{self.path}: no .jsonl/.json/.tsv mapping files inside")
        self.by_file: dict[str, dict[str, Any]] = {}
        self.merged: dict[str, Any] = {}
        self.ambiguous: set[str] = set()
        for file in files:
            table = self.by_file.setdefault(file.name.split(".")[0], {})
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
            raise ValueError(
                f"id {key!r} has different texts in several files of {self.path} and none is named "
                f"after dataset {dataset!r}"
            )
        return self.merged[key]


def load_id_texts(path: str | Path) -> IdTexts:
    """Read an ``id_query/`` or ``id_doc/`` directory (or one mapping file)."""
    return IdTexts(path)


# ---------------------------------------------------------------------------------------------- helpers
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


# ------------------------------------------------------------------------------------- released jsonl
def _lookup(table: IdTexts, key: str, dataset: str, kind: str) -> Any:
    try:
        return table.get(key, dataset)
    except KeyError:
        raise ValueError(f"{kind} {key!r} not found in {table.path}") from None


def _jsonl_record(line: str, where: str, queries: IdTexts, docs: IdTexts) -> RankingRecord:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON ({err.msg})") from None
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    missing = [k for k in JSONL_FIELDS if k not in obj]
    if missing:
        raise ValueError(f"missing field(s) {missing} (the release documents {', '.join(JSONL_FIELDS)})")
    dataset = str(obj.get("dataset", ""))
    qid = str(obj["qid"])
    docids = _str_list(obj["initial_list"], "initial_list")
    query = _lookup(queries, qid, dataset, "qid")
    passages = [_lookup(docs, docid, dataset, "docid") for docid in docids]
    relevant = obj.get("relevant_docids")
    return RankingRecord(
        qid=qid,
        query=query if isinstance(query, str) else str(query),
        docids=docids,
        passages=passages,
        final_list=_str_list(obj["final_list"], "final_list"),
        relevant_docids=None if relevant is None else [str(d) for d in relevant],
        reasoning=str(obj.get("reasoning") or ""),
        dataset=dataset,
        source=where,
    )


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
    with open_text(path) as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                records.append(_jsonl_record(line, where, queries, docs))
            except (ValueError, TypeError) as err:
                _handle(err, where, on_error, report)
    report.loaded += len(records)
    return records


# ------------------------------------------------------------------------------ alpaca and verl parquet
def _parse_target(text: str) -> tuple[str, list[int]]:
    match = OUTPUT_RE.search(text)
    if not match:
        raise ValueError("output is not '<think>...</think> <answer>...</answer>'")
    ids = [int(x) for x in _ID_RE.findall(match.group(2))]
    return match.group(1).strip(), ids


def _final_from_output(output: str | None, docids: list[str]) -> tuple[str, list[str]]:
    reasoning, ids = _parse_target(output or "")
    if sorted(ids) != list(range(1, len(docids) + 1)):
        raise ValueError(f"output answer is not a permutation of [1]..[{len(docids)}]")
    return reasoning, [docids[i - 1] for i in ids]


def _record_from_messages(
    user: str,
    *,
    output: str | None,
    where: str,
    dataset: str = "",
    initial_list: Any = None,
    final_list: Any = None,
    relevant: Any = None,
    qid: str = "",
) -> RankingRecord:
    query, passages = parse_user_message(user)
    if initial_list is not None:
        docids = _str_list(initial_list, "initial_list")
    else:
        docids = [str(i) for i in range(1, len(passages) + 1)]
    if len(docids) != len(passages):
        raise ValueError(f"prompt holds {len(passages)} passages but initial_list has {len(docids)}")
    if final_list is not None:
        reasoning, final = "", _str_list(final_list, "final_list")
        if output is not None:
            reasoning = _parse_target(output)[0]
    else:
        reasoning, final = _final_from_output(output, docids)
    relevant_docids = None
    if relevant is not None:
        relevant_docids = _str_list(relevant, "relevant_docids") if len(relevant) else []
    return RankingRecord(
        qid=qid or where,
        query=query,
        docids=docids,
        passages=passages,
        final_list=final,
        relevant_docids=relevant_docids,
        reasoning=reasoning,
        dataset=dataset,
        source=where,
    )


def _read_alpaca_rows(path: Path) -> list[Any]:
    with open_text(path) as handle:
        try:
            if base_suffix(path) == ".json":
                rows = json.load(handle)
            else:
                rows = [json.loads(line) for line in handle if line.strip()]
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(rows, list):
        raise DataFormatError(f"{path}: expected a JSON list of alpaca records")
    return rows


def load_alpaca(
    path: str | Path, *, on_error: OnError = "raise", report: LoadReport | None = None
) -> list[RankingRecord]:
    """Load the LLaMA-Factory alpaca SFT JSON (``instruction``+``input`` = user message, ``output``)."""
    path = Path(path)
    report = report if report is not None else LoadReport()
    records = []
    for i, row in enumerate(_read_alpaca_rows(path)):
        where = f"{path}[{i}]"
        try:
            if not isinstance(row, dict):
                raise ValueError(f"expected an object with {', '.join(ALPACA_FIELDS)}")
            missing = [k for k in ALPACA_FIELDS if k not in row]
            if missing:
                raise ValueError(f"missing field(s) {missing} (dataset_info.json maps {', '.join(ALPACA_FIELDS)})")
            user = row["instruction"] + (("\n" + row["input"]) if row.get("input") else "")
            records.append(
                _record_from_messages(user, output=row["output"], where=where, dataset=str(row.get("dataset", "")))
            )
        except (ValueError, TypeError) as err:
            _handle(err, where, on_error, report)
    report.loaded += len(records)
    return records


def _column(row: dict[str, Any], extra: dict[str, Any], name: str) -> Any:
    """A label list from its own column, else from ``extra_info``."""
    return row.get(name) if row.get(name) is not None else extra.get(name)


def _verl_record(row: dict[str, Any], where: str) -> RankingRecord:
    extra = row.get("extra_info") or {}
    prompt = row.get("prompt")
    if not isinstance(prompt, list) or not prompt:
        raise ValueError("'prompt' must be a list of chat messages")
    user = next((m["content"] for m in prompt if m.get("role") == "user"), None)
    if user is None:
        raise ValueError("'prompt' has no user message")
    missing = [k for k in VERL_LISTS if _column(row, extra, k) is None]
    if missing:
        raise ValueError(f"missing field(s) {missing} (neither a column nor in extra_info)")
    initial, final = _column(row, extra, "initial_list"), _column(row, extra, "final_list")
    record = _record_from_messages(
        user,
        output=None,
        where=where,
        dataset=str(row.get("dataset") or ""),
        initial_list=initial,
        final_list=final,
        relevant=_column(row, extra, "relevant_docids"),
        qid=str(extra.get("qid") or row.get("qid") or ""),
    )
    label = row.get("label")
    if isinstance(label, str) and label.strip():
        ids = [int(x) for x in _ID_RE.findall(label)]
        if ids and ids != record.answer_ids:
            raise ValueError("'label' disagrees with final_list")
    return record


def load_verl_parquet(
    path: str | Path, *, on_error: OnError = "raise", report: LoadReport | None = None
) -> list[RankingRecord]:
    """Load a verl RL parquet (``train.parquet``/``val.parquet``); labels from the list columns or ``extra_info``."""
    import pyarrow.parquet as pq

    path = Path(path)
    report = report if report is not None else LoadReport()
    records = []
    for i, row in enumerate(pq.read_table(path).to_pylist()):
        where = f"{path}: row {i}"
        try:
            records.append(_verl_record(row, where))
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            _handle(err, where, on_error, report)
    report.loaded += len(records)
    return records


# ------------------------------------------------------------------------------------------- any format
_FORMAT_OF_SUFFIX = {".jsonl": "jsonl", ".json": "alpaca", ".parquet": "parquet"}


def _format_of(path: Path, format: str) -> str:
    if format != "auto":
        if format not in ("jsonl", "alpaca", "parquet"):
            raise ValueError(f"unknown data format {format!r}; use auto, jsonl, alpaca or parquet")
        return format
    kind = _FORMAT_OF_SUFFIX.get(base_suffix(path))
    if kind is None:
        raise ValueError(f"{path}: cannot tell the format from the extension; set format to jsonl, alpaca or parquet")
    return kind


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
        kind = _format_of(path, format)
        if kind == "jsonl":
            records += load_training_jsonl(path, id_query, id_doc, on_error=on_error, report=report)
        elif kind == "alpaca":
            records += load_alpaca(path, on_error=on_error, report=report)
        else:
            records += load_verl_parquet(path, on_error=on_error, report=report)
    if report.skipped:
        logger.warning("skipped %d malformed records (first: %s)", len(report.skipped), report.skipped[0])
    return records
