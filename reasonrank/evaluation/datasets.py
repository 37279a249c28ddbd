"""Evaluation datasets: a first-stage candidate list per query, with texts and judgments.

Two shipped formats (see ``../shared/data/README.md``):

- **Text JSONL** (DL19, DL20, NovelEval): ``{"qid", "query", "candidates": [{"docid", "score",
  "text"}], "qrels": {docid: grade}}`` per line.
- **BRIGHT** (``bright_reasonir_top100_ids.jsonl.gz``): ``{"task", "qid", "query", "gold_ids",
  "reasonir_top100": [[docid, score], ...], "excluded_ids_in_top100": [...]}``; no texts. BRIGHT
  conventions (recipe section 2.3): binary qrels from ``gold_ids`` (short-document setting),
  ``excluded_ids`` removed from the run before scoring (checked to be disjoint from the gold ids),
  the *original* query for reranking, one dataset per task. Texts come from a local corpus:
  ``corpus.jsonl`` (``id``, ``contents``) for one task, or a folder with ``<task>/corpus.jsonl``
  or ``<task>.jsonl`` per task.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reasonrank.evaluation.io import Qrels, Run, iter_lines, read_corpus, read_qrels, read_queries, read_run

__all__ = [
    "Candidate",
    "Dataset",
    "BRIGHT_TASKS",
    "SHIPPED",
    "data_dir",
    "load_text_jsonl",
    "load_bright",
    "load_dataset",
    "load_datasets",
    "dataset_from_files",
]

BRIGHT_TASKS = (
    "biology",
    "earth_science",
    "economics",
    "psychology",
    "robotics",
    "stackoverflow",
    "sustainable_living",
    "leetcode",
    "pony",
    "aops",
    "theoremqa_questions",
    "theoremqa_theorems",
)

# Short names for the files of ../shared/data.
SHIPPED = {
    "dl19": "dl19_bm25_top100.jsonl",
    "dl20": "dl20_bm25_top100.jsonl",
    "noveleval": "noveleval_top20.jsonl",
    "bright": "bright_reasonir_top100_ids.jsonl.gz",
}


@dataclass
class Candidate:
    """One first-stage result: its id, first-stage score and (when known) its text and title."""

    docid: str
    score: float
    text: str | None = None
    title: str | None = None

    def passage(self) -> dict[str, str]:
        """The passage as the reranker takes it."""
        if self.text is None:
            raise ValueError(f"document {self.docid!r} has no text; give a corpus")
        return {"text": self.text, **({"title": self.title} if self.title else {})}


@dataclass
class Dataset:
    """Queries, their first-stage candidates (in first-stage order), judgments and excluded ids."""

    name: str
    queries: dict[str, str]
    candidates: dict[str, list[Candidate]]
    qrels: Qrels
    excluded: dict[str, set[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.candidates)

    @property
    def qids(self) -> list[str]:
        return list(self.candidates)

    def first_stage_run(self) -> Run:
        """The first-stage run (excluded ids kept; :func:`~reasonrank.evaluation.metrics.evaluate` drops them)."""
        return {qid: {c.docid: c.score for c in cands} for qid, cands in self.candidates.items()}

    def has_texts(self) -> bool:
        return all(c.text is not None for cands in self.candidates.values() for c in cands)

    def limit(self, n: int | None) -> Dataset:
        """The first ``n`` queries (all when ``n`` is None)."""
        if n is None:
            return self
        if n < 1:
            raise ValueError(f"limit must be >= 1, got {n}")
        keep = self.qids[:n]
        return Dataset(
            self.name,
            {q: self.queries[q] for q in keep},
            {q: self.candidates[q] for q in keep},
            {q: self.qrels[q] for q in keep if q in self.qrels},
            {q: self.excluded[q] for q in keep if q in self.excluded},
        )

    def attach_corpus(self, corpus: Mapping[str, Mapping[str, str]], *, skip_missing: bool = False) -> Dataset:
        """Fill candidate texts from ``{docid: {"text", "title"}}``.

        Missing documents raise a :class:`ValueError` naming them, or are dropped with ``skip_missing``.
        """
        missing = sorted({c.docid for cands in self.candidates.values() for c in cands if c.docid not in corpus})
        if missing and not skip_missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise ValueError(f"{len(missing)} candidate documents of {self.name} are not in the corpus: {shown}")
        candidates = {
            qid: [
                Candidate(c.docid, c.score, corpus[c.docid]["text"], corpus[c.docid].get("title"))
                for c in cands
                if c.docid in corpus
            ]
            for qid, cands in self.candidates.items()
        }
        return Dataset(self.name, dict(self.queries), candidates, self.qrels, self.excluded)


def data_dir() -> Path:
    """The shared data folder: ``$REASONRANK_DATA``, else ``../shared/data`` from here or the repository."""
    env = os.environ.get("REASONRANK_DATA")
    if env:
        return Path(env)
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "data"


# ----------------------------------------------------------------------------------- text JSONL
def load_text_jsonl(path: str | Path, name: str | None = None) -> Dataset:
    """Load a DL19/DL20/NovelEval-style JSONL file (texts, candidates and graded qrels per line)."""
    path = Path(path)
    queries: dict[str, str] = {}
    candidates: dict[str, list[Candidate]] = {}
    qrels: Qrels = {}
    for number, line in iter_lines(path):
        try:
            record = json.loads(line)
            qid = str(record["qid"])
            queries[qid] = record["query"]
            candidates[qid] = [
                Candidate(str(c["docid"]), float(c["score"]), c.get("text"), c.get("title") or None)
                for c in record["candidates"]
            ]
            judged = record.get("qrels") or {}
            if judged:
                qrels[qid] = {str(d): int(g) for d, g in judged.items()}
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: invalid JSON ({err.msg})") from None
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{path}:{number}: expected {{'qid', 'query', 'candidates': [{{'docid', 'score', 'text'}}], 'qrels'}}: {err!r}"
            ) from None
    return Dataset(name or path.name.split(".")[0], queries, candidates, qrels)


# --------------------------------------------------------------------------------------- BRIGHT
def _corpus_file(corpus: Path, task: str) -> Path:
    if corpus.is_file():
        return corpus
    for candidate in (
        corpus / task / "corpus.jsonl",
        corpus / task / "corpus.jsonl.gz",
        corpus / f"{task}.jsonl",
        corpus / f"{task}.jsonl.gz",
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no corpus for BRIGHT task {task!r} under {corpus} (looked for {task}/corpus.jsonl and {task}.jsonl)"
    )


@dataclass
class _BrightQuery:
    task: str
    qid: str
    query: str
    gold: list[str]
    excluded: set[str]
    candidates: list[Candidate]


def _bright_query(path: Path, number: int, line: str, wanted: list[str] | None) -> _BrightQuery | None:
    """One line of the BRIGHT file (None when its task is not wanted); errors name the file and line."""
    try:
        record = json.loads(line)
        task, qid = record["task"], str(record["qid"])
        if wanted is not None and task not in wanted:
            return None
        gold = [str(g) for g in record["gold_ids"]]
        excluded = {str(e) for e in record.get("excluded_ids_in_top100", record.get("excluded_ids", []))}
        cands = [Candidate(str(docid), float(score)) for docid, score in record["reasonir_top100"]]
        # the original query: reranking never uses the GPT-4 rewrite
        entry = _BrightQuery(task, qid, record["query"], gold, excluded, cands)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{number}: invalid JSON ({err.msg})") from None
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{path}:{number}: expected a BRIGHT record {{'task', 'qid', 'query', 'gold_ids', 'reasonir_top100'}}: {err!r}"
        ) from None
    overlap = excluded & set(gold)
    if overlap:
        raise ValueError(f"{path}:{number}: {task} query {qid}: excluded ids are also gold ids: {sorted(overlap)}")
    return entry


def _add_bright_query(datasets: dict[str, Dataset], q: _BrightQuery, where: str) -> None:
    ds = datasets.setdefault(q.task, Dataset(f"bright/{q.task}", {}, {}, {}, {}))
    if q.qid in ds.candidates:
        raise ValueError(f"{where}: {q.task} query {q.qid} appears twice")
    ds.queries[q.qid] = q.query
    ds.candidates[q.qid] = q.candidates
    if q.gold:
        ds.qrels[q.qid] = {g: 1 for g in q.gold}
    if q.excluded:
        ds.excluded[q.qid] = q.excluded


def _check_bright_tasks(tasks: Iterable[str] | None) -> list[str] | None:
    wanted = list(tasks) if tasks is not None else None
    for task in wanted or ():
        if task not in BRIGHT_TASKS:
            raise ValueError(f"unknown BRIGHT task {task!r}; tasks are {', '.join(BRIGHT_TASKS)}")
    return wanted


def load_bright(
    path: str | Path,
    tasks: Iterable[str] | None = None,
    corpus: str | Path | None = None,
    *,
    skip_missing: bool = False,
) -> dict[str, Dataset]:
    """Load BRIGHT (ReasonIR-8B top-100 run and gold ids) as one :class:`Dataset` per task.

    Qrels are binary from ``gold_ids``; ``excluded_ids_in_top100`` become :attr:`Dataset.excluded`
    and must be disjoint from the gold ids. ``corpus`` (a ``corpus.jsonl`` with ``id`` and
    ``contents``, or a folder with one per task) fills the texts for reranking.
    """
    path = Path(path)
    wanted = _check_bright_tasks(tasks)
    datasets: dict[str, Dataset] = {}
    for number, line in iter_lines(path):
        query = _bright_query(path, number, line, wanted)
        if query is not None:
            _add_bright_query(datasets, query, f"{path}:{number}")
    if wanted is not None:
        absent = [t for t in wanted if t not in datasets]
        if absent:
            raise ValueError(f"{path}: no queries for BRIGHT task(s) {', '.join(absent)}")
        datasets = {t: datasets[t] for t in wanted}
    if corpus is not None:
        corpus = Path(corpus)
        for task, ds in datasets.items():
            ids = {c.docid for cands in ds.candidates.values() for c in cands}
            datasets[task] = ds.attach_corpus(read_corpus(_corpus_file(corpus, task), ids), skip_missing=skip_missing)
    return datasets


# ------------------------------------------------------------------------------------ any source
def _resolve(spec: str) -> tuple[Path, list[str] | None]:
    """``dl19`` | ``bright`` | ``bright:biology,pony`` | a file path -> (file, BRIGHT tasks)."""
    name, _, task_list = spec.partition(":")
    tasks = [t for t in task_list.split(",") if t] or None
    if name.lower() in SHIPPED:
        return data_dir() / SHIPPED[name.lower()], tasks
    path = Path(spec if Path(spec).exists() else name)
    if not path.is_file():
        raise FileNotFoundError(
            f"no dataset {spec!r}: not a file, and not one of {', '.join(SHIPPED)} (data dir {data_dir()})"
        )
    return path, tasks


def _is_bright(path: Path) -> bool:
    for _, first in iter_lines(path):
        return '"reasonir_top100"' in first or '"gold_ids"' in first
    return False


def load_datasets(spec: str, corpus: str | Path | None = None, *, skip_missing: bool = False) -> dict[str, Dataset]:
    """Load a dataset by short name (``dl19``, ``dl20``, ``noveleval``, ``bright[:task,...]``) or path.

    Returns ``{name: Dataset}``: one entry, or one per BRIGHT task.
    """
    path, tasks = _resolve(spec)
    if _is_bright(path):
        return {f"bright/{t}": ds for t, ds in load_bright(path, tasks, corpus, skip_missing=skip_missing).items()}
    if tasks:
        raise ValueError(f"{spec!r}: tasks (':...') only apply to BRIGHT")
    name = next((k for k, v in SHIPPED.items() if v == path.name), path.name.split(".")[0])
    ds = load_text_jsonl(path, name)
    if corpus is not None:
        ds = ds.attach_corpus(
            read_corpus(corpus, {c.docid for cs in ds.candidates.values() for c in cs}), skip_missing=skip_missing
        )
    return {name: ds}


def load_dataset(spec: str, corpus: str | Path | None = None, *, skip_missing: bool = False) -> Dataset:
    """Like :func:`load_datasets` for a spec that names one dataset (one BRIGHT task at most)."""
    found = load_datasets(spec, corpus, skip_missing=skip_missing)
    if len(found) != 1:
        raise ValueError(f"{spec!r} holds {len(found)} datasets ({', '.join(found)}); name one, e.g. bright:biology")
    return next(iter(found.values()))


def dataset_from_files(
    run: str | Path,
    queries: str | Path,
    corpus: str | Path | None = None,
    qrels: str | Path | None = None,
    *,
    skip_missing: bool = False,
) -> Dataset:
    """A dataset from a TREC run (candidates, ranked as trec_eval ranks them), queries, corpus and qrels."""
    from reasonrank.evaluation.io import ranking

    first_stage = read_run(run)
    all_queries = read_queries(queries)
    absent = [q for q in first_stage if q not in all_queries]
    if absent:
        shown = ", ".join(absent[:10]) + (f" and {len(absent) - 10} more" if len(absent) > 10 else "")
        raise ValueError(f"{len(absent)} queries of the run {run} are not in {queries}: {shown}")
    candidates = {q: [Candidate(d, docs[d]) for d in ranking(docs)] for q, docs in first_stage.items()}
    ds = Dataset(
        Path(run).name.split(".")[0],
        {q: all_queries[q] for q in first_stage},
        candidates,
        read_qrels(qrels) if qrels else {},
    )
    if corpus is not None:
        ids = {c.docid for cs in candidates.values() for c in cs}
        ds = ds.attach_corpus(read_corpus(corpus, ids), skip_missing=skip_missing)
    return ds
