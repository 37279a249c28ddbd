import gzip
import json

import pytest

from reasonrank.core.passages import prepare_passages
from reasonrank.core.prompts import build_messages
from reasonrank.training.data import (
    DataFormatError,
    LoadReport,
    RankingRecord,
    decontaminate,
    format_target,
    grpo_rows,
    load_alpaca,
    load_records,
    load_training_jsonl,
    load_verl_parquet,
    normalize_for_dedup,
    parse_user_message,
    self_consistency_filter,
    sft_rows,
)

QUERIES = {"q1": "why do insects fly to light [1]?", "q2": "how do tides work"}
DOCS = {
    "a": "Moths navigate by the moon.",
    "b": "Tides follow the moon [3].",
    "c": "Insects & LEDs: heat is irrelevant.",
    "d": "Stock prices fell.",
    "e": "Ocean tides have two bulges.",
}
LINES = [
    {
        "dataset": "biology",
        "qid": "q1",
        "initial_list": ["a", "b", "c", "d"],
        "final_list": ["c", "a", "b", "d"],
        "reasoning": "[3] answers it. [1] is related.",
        "relevant_docids": ["a", "c"],
    },
    {
        "dataset": "earth_science",
        "qid": "q2",
        "initial_list": ["d", "e", "b"],
        "final_list": ["d", "e", "b"],
        "reasoning": "hmm",
        "relevant_docids": ["b"],
    },
]


@pytest.fixture
def released(tmp_path):
    """training_data_all.jsonl + id_query/ (a JSON map) + id_doc/ (JSONL with docid/contents)."""
    (tmp_path / "id_query").mkdir()
    (tmp_path / "id_doc").mkdir()
    (tmp_path / "id_query" / "queries.json").write_text(json.dumps(QUERIES))
    with gzip.open(tmp_path / "id_doc" / "docs.jsonl.gz", "wt") as f:
        for docid, text in DOCS.items():
            f.write(json.dumps({"docid": docid, "contents": text}) + "\n")
    path = tmp_path / "training_data_all.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in LINES))
    return path


def test_training_jsonl_with_id_dirs(released):
    records = load_records(released)
    assert [r.qid for r in records] == ["q1", "q2"]
    first = records[0]
    assert first.query == QUERIES["q1"] and first.passages == [DOCS[d] for d in "abcd"]
    assert first.answer_ids == [3, 1, 2, 4] and first.dataset == "biology"
    assert first.source == f"{released}:1"
    assert first.teacher_ndcg == pytest.approx(1.0)
    assert records[1].teacher_ndcg == pytest.approx(0.5)


def test_tsv_and_per_dataset_files_resolve_id_collisions(tmp_path):
    (tmp_path / "id_query").mkdir()
    (tmp_path / "id_doc").mkdir()
    (tmp_path / "id_query" / "math.tsv").write_text("0\tmath question\n")
    (tmp_path / "id_query" / "code.tsv").write_text("0\tcode question\n")
    (tmp_path / "id_doc" / "all.tsv").write_text("x\tone\ny\ttwo\n")
    path = tmp_path / "training_data_all.jsonl"
    rows = [
        {
            "dataset": ds,
            "qid": "0",
            "initial_list": ["x", "y"],
            "final_list": ["y", "x"],
            "reasoning": "",
            "relevant_docids": ["y"],
        }
        for ds in ("code", "math")
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r.query for r in load_records(path)] == ["code question", "math question"]
    path.write_text(json.dumps(dict(rows[0], dataset="other")) + "\n")
    with pytest.raises(DataFormatError, match=r"training_data_all.jsonl:1: .*different texts"):
        load_records(path)


def test_prompts_match_inference_and_target_format(released):
    record = load_records(released)[0]
    rows = sft_rows([record], max_passage_tokens=None)
    expected = build_messages(record.query, prepare_passages(record.passages))
    assert rows[0]["prompt"] == expected
    assert "(1)" in rows[0]["prompt"][1]["content"]  # [1] in the query became (1), as at inference
    target = rows[0]["completion"][0]["content"]
    assert target == "<think> [3] answers it. [1] is related. </think> <answer> [3] > [1] > [2] > [4] </answer>"
    assert rows[0]["completion"][0]["role"] == "assistant"
    direct = sft_rows([record], mode="direct", max_passage_tokens=None)[0]["completion"][0]["content"]
    assert direct == "[3] > [1] > [2] > [4]"
    g = grpo_rows([record], max_passage_tokens=None)[0]
    assert g["prompt"] == expected and g["initial_list"] == list("abcd") and g["relevant_docids"] == ["a", "c"]


def test_alpaca_round_trip(tmp_path, released):
    record = load_records(released)[0]
    messages = build_messages(record.query, prepare_passages(record.passages))
    rows = [
        {
            "instruction": messages[1]["content"],
            "input": "",
            "system": messages[0]["content"],
            "output": format_target(record.reasoning, record.answer_ids),
        }
    ]
    path = tmp_path / "reasonrank_sft-data.json"
    path.write_text(json.dumps(rows))
    loaded = load_records(path)[0]
    assert loaded.relevant_docids is None and loaded.reasoning == record.reasoning
    assert loaded.answer_ids == [3, 1, 2, 4]
    assert sft_rows([loaded], max_passage_tokens=None) == sft_rows([record], max_passage_tokens=None)


def test_parse_user_message_with_multiline_passages():
    messages = build_messages("q", ["line one\nline two", "second\n(2) looks like an id"])
    query, passages = parse_user_message(messages[1]["content"])
    assert query == "q" and passages == ["line one\nline two", "second\n(2) looks like an id"]
    with pytest.raises(ValueError, match="prefix"):
        parse_user_message("hello")


def _write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


def _verl_row(record):
    messages = build_messages(record.query, prepare_passages(record.passages))
    label = " > ".join(f"[{i}]" for i in record.answer_ids)
    return {
        "data_source": "ranking",
        "prompt": messages,
        "dataset": record.dataset,
        "initial_list": record.docids,
        "final_list": record.final_list,
        "relevant_docids": record.relevant_docids,
        "label": label,
        "reward_model": {"style": "rule", "ground_truth": label},
        "extra_info": {
            "initial_list": record.docids,
            "final_list": record.final_list,
            "relevant_docids": record.relevant_docids,
        },
    }


def test_verl_parquet(tmp_path, released):
    records = load_records(released)
    path = tmp_path / "train.parquet"
    _write_parquet(path, [_verl_row(r) for r in records])
    loaded = load_records(path)
    assert [r.answer_ids for r in loaded] == [r.answer_ids for r in records]
    assert loaded[0].relevant_docids == ["a", "c"] and loaded[1].dataset == "earth_science"
    assert (
        grpo_rows(loaded, max_passage_tokens=None)[0]["prompt"]
        == grpo_rows(records[:1], max_passage_tokens=None)[0]["prompt"]
    )


def test_verl_parquet_bad_row_names_the_row(tmp_path, released):
    records = load_records(released)
    bad = _verl_row(records[1])
    bad["label"] = "[1] > [3] > [2]"  # disagrees with final_list
    path = tmp_path / "train.parquet"
    _write_parquet(path, [_verl_row(records[0]), bad])
    with pytest.raises(DataFormatError, match=r"train.parquet: row 1: 'label' disagrees"):
        load_verl_parquet(path)
    report = LoadReport()
    assert len(load_verl_parquet(path, on_error="skip", report=report)) == 1
    assert len(report.skipped) == 1 and "row 1" in report.skipped[0]


def _line(**fields) -> str:
    """A training_data_all.jsonl line with every documented field (``LINES[0]``'s, then ``fields``)."""
    return json.dumps({**LINES[0], "relevant_docids": [], **fields})


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "invalid JSON"),
        (json.dumps({"qid": "q1", "initial_list": ["a"]}), r"missing field\(s\) \['dataset', 'final_list'"),
        (_line(qid="zz", initial_list=["a"], final_list=["a"]), "qid 'zz' not found"),
        (_line(initial_list=["a", "nope"], final_list=["a", "nope"]), "docid 'nope' not found"),
        (_line(initial_list=["a", "b"], final_list=["a", "c"]), "not a permutation"),
        (_line(initial_list=["a", "b"], final_list=["a", "b"], relevant_docids=["e"]), "not in initial_list"),
        (_line(initial_list=[], final_list=[]), "non-empty"),
    ],
)
def test_malformed_jsonl_raise_or_skip(released, line, message):
    released.write_text(json.dumps(LINES[0]) + "\n" + line + "\n")
    with pytest.raises(DataFormatError, match=rf"training_data_all.jsonl:2: .*{message}"):
        load_training_jsonl(released)
    report = LoadReport()
    assert len(load_records(released, on_error="skip", report=report)) == 1
    assert report.loaded == 1 and len(report.skipped) == 1 and ":2:" in report.skipped[0]


def test_malformed_alpaca_and_missing_files(tmp_path):
    path = tmp_path / "sft.json"
    path.write_text(json.dumps([{"instruction": "not a ranking prompt", "output": "x", "system": "s"}]))
    with pytest.raises(DataFormatError, match=r"sft.json\[0\]: .*prefix"):
        load_alpaca(path)
    with pytest.raises(FileNotFoundError):
        load_records(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="format"):
        load_records(path, format="csv")


def test_self_consistency_filter_reports_per_domain(released):
    records = load_records(released)
    kept, report = self_consistency_filter(records, 0.6)
    assert [r.qid for r in kept] == ["q1"]
    assert report.dropped == {"earth_science": 1} and report.kept == 1
    assert "earth_science: dropped 1" in str(report) and "nDCG@10=0.500" in str(report)
    kept, report = self_consistency_filter(records, 0.4)
    assert len(kept) == 2 and report.total_dropped == 0
    unlabelled = RankingRecord(qid="u", query="q", docids=["1"], passages=["p"], final_list=["1"])
    kept, report = self_consistency_filter([unlabelled], 0.4)
    assert len(kept) == 1 and report.unlabelled == 1


def test_normalize_for_dedup():
    assert normalize_for_dedup("  Why, do  INSECTS\n fly?! ") == "why do insects fly"


def test_decontamination_against_bright(shared_data, released):
    bright = shared_data / "bright_reasonir_top100_ids.jsonl.gz"
    with gzip.open(bright, "rt") as f:
        first = json.loads(f.readline())
    records = load_records(released)
    leaked = RankingRecord(
        qid="leak",
        query=first["query"].upper().replace("\n", "  ") + " ?",
        docids=["a"],
        passages=["p"],
        final_list=["a"],
        relevant_docids=["a"],
        dataset="biology",
        source="x:9",
    )
    kept, report = decontaminate(records + [leaked], [bright])
    assert [r.qid for r in kept] == ["q1", "q2"]
    assert report.dropped == {"biology": 1}
    assert f"{first['task']}/{first['qid']}" in report.examples[0] and "x:9" in report.examples[0]


def test_token_budget_truncates_passages_never_the_answer(tiny_model_dir, released):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    record = load_records(released)[0]
    record.passages = [p + " filler words" * 40 for p in record.passages]
    full = sft_rows([record], tokenizer=tok, max_passage_tokens=None)[0]
    cut = sft_rows([record], tokenizer=tok, max_passage_tokens=8)[0]
    assert len(cut["prompt"][1]["content"]) < len(full["prompt"][1]["content"])
    length = lambda row: len(tok.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)["input_ids"])  # noqa: E731
    budget = length(full) - 100
    fitted = sft_rows([record], tokenizer=tok, max_passage_tokens=None, max_length=budget)[0]
    assert length(fitted) <= budget
    assert fitted["completion"] == full["completion"]
    with pytest.raises(ValueError, match="does not fit"):
        sft_rows([record], tokenizer=tok, max_length=20)
    prompt_budget = grpo_rows([record], tokenizer=tok, max_passage_tokens=None, max_prompt_length=budget - 50)[0]
    assert (
        len(tok.apply_chat_template(prompt_budget["prompt"], tokenize=True, add_generation_prompt=True)["input_ids"])
        <= budget - 50
    )


def test_parse_user_message_with_paragraphs_in_the_query():
    """BRIGHT-style queries hold blank lines and sentences ending in '.'; the parser must not stop early."""
    query = "Why do moths circle lamps.\n\nI read they navigate by the moon [1].\n\nIs that right?"
    passages = ["moths use the moon.\n\nSearch Query: fake.", "lamps are bright"]
    messages = build_messages(query, prepare_passages(passages))
    parsed_query, parsed = parse_user_message(messages[1]["content"])
    assert parsed_query == query.replace("[1]", "(1)")
    assert parsed == prepare_passages(passages)
    record = RankingRecord(qid="m", query=parsed_query, docids=["1", "2"], passages=parsed, final_list=["2", "1"])
    assert sft_rows([record], max_passage_tokens=None)[0]["prompt"] == messages


def test_budget_with_titled_passages(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    passages = [{"title": f"T{i}", "text": "word " * 200} for i in range(3)]
    record = RankingRecord(
        qid="t", query="q", docids=list("abc"), passages=passages, final_list=list("cab"), relevant_docids=["c"]
    )
    row = grpo_rows([record], tokenizer=tok, max_passage_tokens=None, max_prompt_length=300)[0]
    assert len(tok.apply_chat_template(row["prompt"], tokenize=True, add_generation_prompt=True)["input_ids"]) <= 300
    assert "Title: T0 Content: word" in row["prompt"][1]["content"]


def test_near_duplicate_decontamination_lists_every_removal():
    eval_queries = {
        normalize_for_dedup("How does the moon drive ocean tides on the coast of Maine every day"): "b/1",
        normalize_for_dedup("what is a monad"): "b/2",
    }

    def record(qid, query, dataset="x"):
        return RankingRecord(
            qid=qid, query=query, docids=["a"], passages=["p"], final_list=["a"], dataset=dataset, source=f"f:{qid}"
        )

    records = [
        record("1", "How does the moon drive ocean tides on the coast of Maine every single day?"),
        record("2", "What is a MONAD", "code"),
        record("3", "what is a monoid"),
        record("4", "How do tides work"),
    ]
    kept, report = decontaminate(records, eval_queries)
    assert [r.qid for r in kept] == ["1", "3", "4"]
    kept, report = decontaminate(records, eval_queries, near_threshold=0.7)
    assert [r.qid for r in kept] == ["3", "4"]
    assert report.dropped == {"x": 1, "code": 1}
    text = str(report)
    assert "f:1 (qid 1) near-duplicates (Jaccard 0.79) eval query b/1" in text
    assert "f:2 (qid 2) duplicates eval query b/2" in text
    with pytest.raises(ValueError, match="near_threshold"):
        decontaminate(records, eval_queries, near_threshold=0)


def test_toy_task_unreliable_teacher_keeps_true_labels():
    from reasonrank.testing.toy import TOPICS, make_task

    reliable = make_task(40, seed=5, num_topics=4)
    noisy = make_task(40, seed=5, num_topics=4, unreliable_topics=2)
    assert [s["relevant_docids"] for s in noisy] == [s["relevant_docids"] for s in reliable]
    for s in reliable:
        assert s["final_list"][: len(s["relevant_docids"])] == [
            d for d in s["initial_list"] if d in s["relevant_docids"]
        ]
    guessed = [s for s in noisy if s["query"] in {f"about {t}" for t in TOPICS[:2]}]
    assert guessed and any(s["final_list"] != r["final_list"] for s, r in zip(noisy, reliable) if s in guessed)
    assert all(s == r for s, r in zip(noisy, reliable) if s not in guessed)


def _leak(query: str, dataset: str = "msmarco") -> RankingRecord:
    return RankingRecord(
        qid="leak",
        query=query,
        docids=["a"],
        passages=["p"],
        final_list=["a"],
        relevant_docids=["a"],
        dataset=dataset,
        source="train:7",
    )


def test_builtin_decontamination_is_the_default_and_covers_every_shipped_set(shared_data, released):
    from reasonrank.training.config import DataSettings
    from reasonrank.training.data import prepare_records

    dl19 = json.loads((shared_data / "dl19_bm25_top100.jsonl").read_text().splitlines()[0])
    novel = json.loads((shared_data / "noveleval_top20.jsonl").read_text().splitlines()[0])
    assert DataSettings().decontaminate == ["builtin"]
    records = load_records(released) + [_leak(dl19["query"] + "."), _leak(novel["query"].upper(), "web")]
    kept, report = decontaminate(records, ["builtin"])
    assert [r.qid for r in kept] == ["q1", "q2"]
    assert report.dropped == {"msmarco": 1, "web": 1}
    text = str(report)
    for name in ("dl19_bm25_top100.jsonl", "dl20_bm25_top100.jsonl", "noveleval_top20.jsonl", "bright_"):
        assert name in text.splitlines()[1]  # "checked against N evaluation queries from ..."
    assert f"dl19_bm25_top100.jsonl:{dl19['qid']}" in text and "train:7" in text
    # prepare_records (what every run calls) applies it by default and returns the report
    _, reports = prepare_records(DataSettings(train_files=[str(released)], self_consistency_threshold=None))
    assert "decontamination" in str(reports[-1]) and "dropped 0" in str(reports[-1])


def test_user_query_files_add_to_the_builtin_sets(tmp_path, released):
    mine = tmp_path / "my_test_queries.jsonl"
    mine.write_text(json.dumps({"qid": "t1", "query": "How do TIDES work?"}) + "\n")
    kept, report = decontaminate(load_records(released), ["builtin", str(mine)])
    assert [r.qid for r in kept] == ["q1"]
    assert "my_test_queries.jsonl:t1" in report.examples[0]
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        decontaminate(load_records(released), [str(tmp_path / "nope.jsonl")])


def test_missing_shipped_sets_are_reported_not_skipped_silently(tmp_path, monkeypatch, released):
    monkeypatch.setenv("REASONRANK_DATA", str(tmp_path / "empty"))
    kept, report = decontaminate(load_records(released), ["builtin"])
    assert len(kept) == 2
    text = str(report)
    for name in ("dl19", "dl20", "noveleval", "bright"):
        assert f"NOT CHECKED: {name}" in text


# The released files' documented fields (recipe §3: the authors' README and dataset_info.json), exactly.
@pytest.mark.parametrize("field", ["dataset", "qid", "initial_list", "final_list", "reasoning", "relevant_docids"])
def test_released_jsonl_fields_are_all_required(released, field):
    line = dict(LINES[0])
    del line[field]
    released.write_text(json.dumps(line) + "\n")
    with pytest.raises(DataFormatError, match=rf"training_data_all.jsonl:1: missing field\(s\) \['{field}'\]"):
        load_training_jsonl(released)


@pytest.mark.parametrize("field", ["instruction", "output", "system"])
def test_alpaca_columns_of_dataset_info_are_required(tmp_path, released, field):
    record = load_records(released)[0]
    messages = build_messages(record.query, prepare_passages(record.passages))
    row = {
        "instruction": messages[1]["content"],
        "output": format_target(record.reasoning, record.answer_ids),
        "system": messages[0]["content"],
    }
    path = tmp_path / "reasonrank_sft-data.json"
    path.write_text(json.dumps([row]))
    assert load_alpaca(path)[0].answer_ids == record.answer_ids  # exactly the documented columns suffice
    del row[field]
    path.write_text(json.dumps([row]))
    with pytest.raises(DataFormatError, match=rf"\[0\]: missing field\(s\) \['{field}'\]"):
        load_alpaca(path)


@pytest.mark.parametrize("field", ["initial_list", "final_list", "relevant_docids"])
def test_verl_label_lists_are_required_as_columns_or_extra_info(tmp_path, released, field):
    row = _verl_row(load_records(released)[0])
    del row[field]
    path = tmp_path / "train.parquet"
    _write_parquet(path, [row])
    assert len(load_verl_parquet(path)) == 1  # extra_info carries it (the audit's converter reads both)
    del row["extra_info"][field]
    _write_parquet(path, [row])
    with pytest.raises(DataFormatError, match=rf"row 0: missing field\(s\) \['{field}'\]"):
        load_verl_parquet(path)
