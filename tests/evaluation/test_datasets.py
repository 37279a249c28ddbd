"""Dataset loaders: the shipped DL/NovelEval JSONL, BRIGHT (real records + a local corpus fixture)."""

import gzip
import json
import math
import statistics
from pathlib import Path

import pytest

from reasonrank.evaluation import (
    BRIGHT_TASKS,
    dataset_from_files,
    evaluate,
    load_bright,
    load_dataset,
    load_datasets,
    load_text_jsonl,
)


@pytest.fixture(scope="module")
def bright_records(shared_data):
    """The first two real records of biology and of pony."""
    picked: dict[str, list[dict]] = {"biology": [], "pony": []}
    with gzip.open(shared_data / "bright_reasonir_top100_ids.jsonl.gz", "rt") as handle:
        for line in handle:
            record = json.loads(line)
            if record["task"] in picked and len(picked[record["task"]]) < 2:
                picked[record["task"]].append(record)
            if all(len(v) == 2 for v in picked.values()):
                break
    return [r for records in picked.values() for r in records]


@pytest.fixture
def bright_fixture(tmp_path, bright_records):
    """A gz file of the real shape with one non-gold id of biology's first query marked excluded,
    and a per-task corpus folder (``<task>/corpus.jsonl`` with ``id`` and ``contents``)."""
    records = json.loads(json.dumps(bright_records))
    first = records[0]
    leak = next(d for d, _ in first["reasonir_top100"] if d not in first["gold_ids"])
    first["excluded_ids_in_top100"] = [leak]
    path = tmp_path / "bright.jsonl.gz"
    with gzip.open(path, "wt") as out:
        out.writelines(json.dumps(r) + "\n" for r in records)
    corpus = tmp_path / "corpus"
    for task in ("biology", "pony"):
        (corpus / task).mkdir(parents=True)
        with open(corpus / task / "corpus.jsonl", "w") as out:
            for r in records:
                if r["task"] == task:
                    for docid, _ in r["reasonir_top100"]:
                        out.write(json.dumps({"id": docid, "contents": f"text of {docid}"}) + "\n")
    return path, corpus, first, leak


def test_bright_loader_conventions(bright_fixture):
    path, corpus, first, leak = bright_fixture
    sets = load_bright(path, corpus=corpus)
    assert list(sets) == ["biology", "pony"]
    bio = sets["biology"]
    qid = str(first["qid"])
    assert bio.queries[qid] == first["query"]  # the original query, not a rewrite
    assert bio.qrels[qid] == {g: 1 for g in first["gold_ids"]}  # binary from gold_ids
    assert bio.excluded[qid] == {leak}
    assert [c.docid for c in bio.candidates[qid]] == [d for d, _ in first["reasonir_top100"]]  # first-stage order
    assert bio.candidates[qid][0].passage() == {"text": f"text of {first['reasonir_top100'][0][0]}"}
    assert bio.has_texts() and len(bio) == 2 and len(sets["pony"]) == 2


def test_bright_exclusion_changes_the_score(bright_fixture):
    path, _, first, leak = bright_fixture
    bio = load_bright(path, ["biology"])["biology"]
    qid = str(first["qid"])
    run = bio.first_stage_run()
    run[qid][leak] = 1e9  # the excluded document on top
    kept = evaluate(run, bio.qrels, "ndcg@10")
    dropped = evaluate(run, bio.qrels, "ndcg@10", excluded=bio.excluded)
    plain = evaluate(bio.first_stage_run(), bio.qrels, "ndcg@10", excluded=bio.excluded)
    assert kept.per_query[qid]["ndcg@10"] < dropped.per_query[qid]["ndcg@10"]
    assert dropped.per_query[qid]["ndcg@10"] == pytest.approx(plain.per_query[qid]["ndcg@10"])


def test_bright_single_corpus_file_and_missing_documents(bright_fixture, tmp_path):
    path, corpus, first, _ = bright_fixture
    single = tmp_path / "corpus.jsonl"
    lines = (corpus / "biology" / "corpus.jsonl").read_text().splitlines()
    single.write_text("\n".join(lines[1:]) + "\n")  # the first candidate is missing
    missing = first["reasonir_top100"][0][0]
    with pytest.raises(ValueError, match=rf"1 candidate documents of bright/biology are not in the corpus: {missing}"):
        load_bright(path, ["biology"], single)
    bio = load_bright(path, ["biology"], single, skip_missing=True)["biology"]
    assert missing not in {c.docid for c in bio.candidates[str(first["qid"])]}
    with pytest.raises(FileNotFoundError, match="no corpus for BRIGHT task 'pony'"):
        load_bright(path, ["pony"], tmp_path / "nowhere")


def test_bright_bad_input(bright_fixture, tmp_path):
    path, _, first, _ = bright_fixture
    with pytest.raises(ValueError, match="unknown BRIGHT task 'biologie'"):
        load_bright(path, ["biologie"])
    with pytest.raises(ValueError, match="no queries for BRIGHT task"):
        load_bright(path, ["aops"])
    bad = dict(first, excluded_ids_in_top100=[first["gold_ids"][0]])
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(bad) + "\n" + json.dumps({"task": "biology"}) + "\n")
    with pytest.raises(ValueError, match=r"broken\.jsonl:1: .*excluded ids are also gold ids"):
        load_bright(broken)
    broken.write_text(json.dumps(first) + "\n" + json.dumps({"task": "biology", "qid": "7"}) + "\n")
    with pytest.raises(ValueError, match=r"broken\.jsonl:2: expected a BRIGHT record"):
        load_bright(broken)


def test_bright_shipped_first_stage_reproduces_reasonir(shared_data, monkeypatch):
    # Paper Table 1, ReasonIR-8B (no rerank): biology 43.49, pony 19.55, average 30.59.
    monkeypatch.setenv("REASONRANK_DATA", str(shared_data))
    sets = load_datasets("bright")
    assert list(sets) == [f"bright/{t}" for t in BRIGHT_TASKS]
    scores = {
        n: evaluate(d.first_stage_run(), d.qrels, excluded=d.excluded).aggregate["ndcg@10"] for n, d in sets.items()
    }
    assert sum(len(d) for d in sets.values()) == 1384
    assert round(scores["bright/biology"] * 100, 2) == 43.49
    assert round(scores["bright/pony"] * 100, 2) == 19.55
    assert round(statistics.mean(scores.values()) * 100, 2) == 30.59


def test_shipped_names_and_limit(shared_data, monkeypatch):
    monkeypatch.setenv("REASONRANK_DATA", str(shared_data))
    ds = load_dataset("dl19").limit(2)
    assert len(ds) == 2 and set(ds.qrels) <= set(ds.qids)
    assert all(len(c) == 100 and c[0].text for c in ds.candidates.values())
    assert len(load_dataset("noveleval")) == 21
    with pytest.raises(ValueError, match="holds 12 datasets"):
        load_dataset("bright")
    with pytest.raises(FileNotFoundError, match="no dataset 'dl21'"):
        load_dataset("dl21")
    with pytest.raises(ValueError, match="only apply to BRIGHT"):
        load_dataset("dl19:biology")


def test_text_jsonl_malformed_line(tmp_path):
    path = tmp_path / "mini.jsonl"
    good = {"qid": "1", "query": "q", "candidates": [{"docid": "a", "score": 1.0, "text": "t"}], "qrels": {"a": 1}}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"qid": "2", "query": "q"}) + "\n")
    with pytest.raises(ValueError, match=r"mini\.jsonl:2: expected"):
        load_text_jsonl(path)
    path.write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"mini\.jsonl:2: invalid JSON"):
        load_text_jsonl(path)


def test_dataset_from_files(tmp_path):
    (tmp_path / "run.trec").write_text("1 Q0 a 1 2.0 x\n1 Q0 b 2 2.0 x\n1 Q0 c 3 1.0 x\n2 Q0 a 1 1.0 x\n")
    (tmp_path / "q.tsv").write_text("1\tfirst\n2\tsecond\n3\tunused\n")
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"id": d, "contents": d * 3}) + "\n" for d in "abc"))
    (tmp_path / "qrels.txt").write_text("1 0 a 1\n")
    ds = dataset_from_files(tmp_path / "run.trec", tmp_path / "q.tsv", tmp_path / "c.jsonl", tmp_path / "qrels.txt")
    assert ds.queries == {"1": "first", "2": "second"}
    assert [c.docid for c in ds.candidates["1"]] == ["b", "a", "c"]  # ranked as trec_eval ranks: tie by docid desc
    assert ds.candidates["1"][0].text == "bbb" and ds.qrels == {"1": {"a": 1}}
    (tmp_path / "q.tsv").write_text("1\tfirst\n")
    with pytest.raises(ValueError, match=r"1 queries of the run .* are not in .*q\.tsv: 2"):
        dataset_from_files(tmp_path / "run.trec", tmp_path / "q.tsv", tmp_path / "c.jsonl")


# A committed fixture of the BRIGHT shape (made-up ids and texts; no shared data needed): biology has
# two queries, the first with an excluded id ranked first; pony has one; a corpus.jsonl per task.
BRIGHT_MINI = Path(__file__).parent / "fixtures" / "bright_mini"


def _ndcg(relevant_ranks: list[int], n_relevant: int) -> float:
    dcg = sum(1 / math.log2(r + 1) for r in relevant_ranks)
    return dcg / sum(1 / math.log2(r + 1) for r in range(1, n_relevant + 1))


def test_bright_fixture_with_local_corpus_folder():
    sets = load_bright(BRIGHT_MINI / "bright.jsonl", corpus=BRIGHT_MINI / "corpus")
    assert list(sets) == ["biology", "pony"] and [len(s) for s in sets.values()] == [2, 1]
    bio = sets["biology"]
    assert bio.name == "bright/biology"
    assert bio.qrels == {
        "0": {"insects_light/Phototaxis_0.txt": 1, "insects_light/Phototaxis_1.txt": 1},
        "1": {"birds_migration/Magnetoreception_0.txt": 1},
    }
    assert bio.excluded == {"0": {"insects_light/Leaked_answer.txt"}}
    assert bio.candidates["0"][2].passage() == {"text": "Phototaxis: why insects are attracted to light at night."}
    assert sets["pony"].has_texts() and sets["pony"].queries["0"] == "How do I draw a filled circle in Pony?"

    # Gold ranks after dropping the excluded id: 2 and 4 (not 3 and 5); then 2; pony 2.
    scores = {
        task: evaluate(ds.first_stage_run(), ds.qrels, "ndcg@10", excluded=ds.excluded) for task, ds in sets.items()
    }
    assert scores["biology"].per_query["0"]["ndcg@10"] == pytest.approx(_ndcg([2, 4], 2))
    assert scores["biology"].aggregate["ndcg@10"] == pytest.approx((_ndcg([2, 4], 2) + _ndcg([2], 1)) / 2)
    assert scores["pony"].aggregate["ndcg@10"] == pytest.approx(_ndcg([2], 1))
    leaky = evaluate(bio.first_stage_run(), bio.qrels, "ndcg@10")
    assert leaky.per_query["0"]["ndcg@10"] == pytest.approx(_ndcg([3, 5], 2))


def test_bright_fixture_single_corpus_file_and_spec():
    # One task's corpus.jsonl given as a file; the dataset spec "FILE:TASK" names the task.
    ds = load_dataset(f"{BRIGHT_MINI / 'bright.jsonl'}:pony", corpus=BRIGHT_MINI / "corpus" / "pony" / "corpus.jsonl")
    assert ds.name == "bright/pony" and ds.has_texts()
    assert [c.docid for c in ds.candidates["0"]] == [
        "pony_docs/builtin-Array.md",
        "pony_docs/builtin-Circle.md",
        "pony_docs/builtin-String.md",
    ]
    with pytest.raises(ValueError, match="6 candidate documents of bright/biology are not in the corpus"):
        load_bright(BRIGHT_MINI / "bright.jsonl", ["biology"], BRIGHT_MINI / "corpus" / "pony" / "corpus.jsonl")
    sets = load_datasets(str(BRIGHT_MINI / "bright.jsonl"))  # no corpus: ids only, still scorable
    assert list(sets) == ["bright/biology", "bright/pony"] and not sets["bright/pony"].has_texts()
