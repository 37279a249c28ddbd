"""Unit tests of the synthesis pieces: prompts, answer parsing, candidate lists, inputs, the store."""

from __future__ import annotations

import json
import random

import pytest

from reasonrank.synthesis import (
    ListConfig,
    SynthesisConfig,
    SynthesisStore,
    SyntheticSample,
    build_candidate_list,
    load_dataset_jsonl,
    load_queries,
    mining_messages,
    parse_mining_answer,
    parse_teacher_ranking,
    pools_from_run,
    ranking_messages,
)
from reasonrank.synthesis.candidates import query_rng
from reasonrank.testing.teacher import parse_teacher_request


# ----------------------------------------------------------------------------------------- prompts
def test_ranking_messages_follow_the_rankgpt_multi_turn_layout():
    messages = ranking_messages("what is [2] plus two", ["first passage", "second passage"])
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert "I will provide you with 2 passages" in messages[0]["content"]
    assert messages[0]["content"].endswith("Rank the passages based on their relevance to query: what is (2) plus two.")
    assert messages[1]["content"] == "Okay, please provide the passages."
    assert [m["content"] for m in messages[2:6]] == [
        "[1] first passage",
        "Received passage [1].",
        "[2] second passage",
        "Received passage [2].",
    ]
    assert messages[-1]["content"].startswith("Search Query: what is (2) plus two. \nRank the 2 passages above")
    assert "The output format should be [] > []" in messages[-1]["content"]
    assert parse_teacher_request(messages) == (
        "ranking",
        "what is (2) plus two",
        None,
        ["first passage", "second passage"],
    )


def test_mining_message_shows_the_gold_answer_only_when_there_is_one():
    with_answer = mining_messages("q", ["p one", "p two"], answer="the gold answer")[0]["content"]
    without = mining_messages("q", ["p one", "p two"])[0]["content"]
    assert "Reference answer: the gold answer" in with_answer
    assert "Reference answer" not in without and "reference answer" not in without
    for text in (with_answer, without):
        assert "[1] p one\n[2] p two\n" in text
        assert "Relevant: [i], [j], ..." in text
    assert parse_teacher_request([{"role": "user", "content": with_answer}]) == (
        "mining",
        "q",
        "the gold answer",
        ["p one", "p two"],
    )


# ----------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("text", "indices", "ignored", "parsed"),
    [
        ("<think>[9] looks good</think>\nRelevant: [2], [5]", [1, 4], [], True),
        ("Relevant: [2], [2], [40], [0]", [1], [40, 0], True),
        ("Relevant:\n[1] , [3]", [0, 2], [], True),
        ("<think>...</think>Relevant: none", [], [], True),
        ("relevant passages: 3, 1", [2, 0], [], True),
        ("<answer>[4] > [2]</answer>", [3, 1], [], True),
        ("[3] > [1]", [2, 0], [], True),
        ("I am not able to judge these passages.", [], [], False),
        ("<think>Relevant: [1]</think> I refuse.", [], [], False),  # ids inside the reasoning do not count
        ("", [], [], False),
        ("Relevant: [99]", [], [99], True),
    ],
)
def test_parse_mining_answer(text, indices, ignored, parsed):
    answer = parse_mining_answer(text, 10)
    assert (answer.indices, answer.ignored, answer.parsed) == (indices, ignored, parsed)


def test_parse_teacher_ranking_never_drops_or_duplicates():
    ranked = parse_teacher_ranking("<think>\nthe chain\n</think>\n\n[2] > [1] > [2] > [7]", 3)
    assert ranked.order == [1, 0, 2] and ranked.reasoning == "the chain" and ranked.usable
    assert {"dropped_duplicates", "dropped_out_of_range", "appended_missing"} <= set(ranked.repairs)

    plain = parse_teacher_ranking("I think [3] is best. Final: [3] > [1] > [2]", 3)
    assert plain.order == [2, 0, 1] and plain.reasoning == "I think [3] is best. Final:" and plain.usable

    tagged = parse_teacher_ranking("reasons here <answer>[1] > [3] > [2]</answer>", 3)
    assert tagged.order == [0, 2, 1] and tagged.reasoning == "reasons here"

    unreadable = parse_teacher_ranking("<think>hmm</think> sorry, I cannot", 3)
    assert unreadable.order == [0, 1, 2] and not unreadable.usable

    bare = parse_teacher_ranking("[2] > [1]", 2)
    assert bare.order == [1, 0] and bare.reasoning == "" and not bare.usable and "no_reasoning" in bare.repairs


# ----------------------------------------------------------------------------------------- lists
def test_candidate_list_composition_and_determinism():
    pool = [f"d{i}" for i in range(40)]
    positives = ["d3", "d30", "d39"]
    config = ListConfig(list_size=20, max_positives=2, hard_negatives=6)
    first = build_candidate_list(pool, positives, config, query_rng(7, "web", "q1"), exclude=["d0"])
    again = build_candidate_list(pool, positives, config, query_rng(7, "web", "q1"), exclude=["d0"])
    other = build_candidate_list(pool, positives, config, query_rng(8, "web", "q1"), exclude=["d0"])
    assert first == again and first.docids != other.docids
    assert len(first.docids) == 20 == len(set(first.docids))
    assert first.positives == ["d3", "d30"]  # capped, first-stage order
    assert "d39" not in first.docids and "d0" not in first.docids  # uncapped positive / excluded never negatives
    assert first.hard_negatives == ["d1", "d2", "d4", "d5", "d6", "d7"]
    assert len(first.sampled_negatives) == 12 and not set(first.sampled_negatives) & set(first.hard_negatives)
    assert set(first.docids) == set(first.positives) | set(first.hard_negatives) | set(first.sampled_negatives)


def test_candidate_list_small_pool_and_no_shuffle():
    cands = build_candidate_list(["a", "b", "a", "c"], ["c"], ListConfig(shuffle=False), random.Random(0))
    assert cands.docids == ["a", "b", "c"] and cands.positives == ["c"]


def test_candidate_list_takes_more_positives_when_negatives_run_out():
    pool = ["p1", "n1", "p2", "p3", "p4"]
    config = ListConfig(list_size=4, max_positives=2, shuffle=False)
    cands = build_candidate_list(pool, ["p1", "p2", "p3", "p4"], config, random.Random(0))
    assert cands.docids == ["p1", "n1", "p2", "p3"] and cands.positives == ["p1", "p2", "p3"]


@pytest.mark.parametrize(
    "kwargs", [{"list_size": 0}, {"max_positives": 0}, {"list_size": 3, "max_positives": 4}, {"hard_negatives": -1}]
)
def test_list_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        ListConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"positives": "gold"}, {"threshold": 1.5}, {"concurrency": 0}, {"pool_size": 0}, {"price_in": -1.0}]
)
def test_synthesis_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        SynthesisConfig(**kwargs)


# ----------------------------------------------------------------------------------------- inputs
def test_load_queries_reads_answers_qrels_and_domains(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"id": 1, "text": "q one", "gold_answer": "a", "qrels": {"d1": 2, "d2": 0}}\n'
        '{"qid": "2", "query": "q two", "positives": ["d3"], "dataset": "math-qa"}\n'
    )
    one, two = load_queries(path)
    assert (one.qid, one.query, one.answer, one.dataset, one.known_positives()) == ("1", "q one", "a", "q", ["d1"])
    assert (two.dataset, two.known_positives(), two.answer) == ("math-qa", ["d3"], None)
    assert [q.dataset for q in load_queries(path, domain="web")] == ["web", "web"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "1"}\n', "needs an id"),
        ('{"id": "1", "query": "x", "answer": 3}\n', "'answer' must be a string"),
        ('{"id": "1", "query": "x", "qrels": [1]}\n', "'qrels' must be an object"),
        ('{"id": "1", "query": "x"}\n{"id": "1", "query": "y"}\n', "appears twice"),
        ("not json\n", "invalid JSON"),
    ],
)
def test_load_queries_errors_name_the_problem(tmp_path, content, message):
    path = tmp_path / "q.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_queries(path)


def test_load_dataset_jsonl_and_run_pools(tmp_path):
    path = tmp_path / "dl.jsonl"
    record = {
        "qid": "7",
        "query": "q",
        "candidates": [{"docid": "a", "score": 2, "text": "A"}, {"docid": "b", "score": 1, "text": "B"}],
        "qrels": {"b": 3},
    }
    path.write_text(json.dumps(record) + "\n")
    [query], corpus = load_dataset_jsonl(path)
    assert query.pool == ["a", "b"] and query.known_positives(2) == ["b"] and query.dataset == "dl"
    assert corpus == {"a": {"text": "A"}, "b": {"text": "B"}}

    run = tmp_path / "run.trec"
    run.write_text("7 Q0 b 1 9.0 bm25\n7 Q0 a 2 8.0 bm25\n7 Q0 c 3 7.0 bm25\n")
    pools_from_run([query], run, depth=2)
    assert query.pool == ["b", "a"]
    other = load_queries(_write(tmp_path / "x.jsonl", '{"id": "8", "query": "q"}\n'))
    with pytest.raises(ValueError, match="no results for 1 queries"):
        pools_from_run(other, run, depth=2)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": "1", "query": "q", "candidates": [{"docid": "a"}]}\n')
    with pytest.raises(ValueError, match="needs a 'docid' and a 'text'"):
        load_dataset_jsonl(bad)


def _write(path, text):
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------------------- store
def test_sample_validation():
    with pytest.raises(ValueError, match="permutation"):
        SyntheticSample("d", "q", ["a", "b"], ["a"], "r", ["a"])
    with pytest.raises(ValueError, match="subset"):
        SyntheticSample("d", "q", ["a", "b"], ["b", "a"], "r", ["c"])


def test_store_repairs_a_cut_line_and_locks_the_directory(tmp_path):
    with SynthesisStore(tmp_path) as store:
        store.write_texts("q1", "query one", {"a": {"text": "A"}, "b": {"text": "B", "title": "T"}})
        store.write_kept(SyntheticSample("d", "q1", ["a", "b"], ["b", "a"], "why", ["b"]))
        with pytest.raises(RuntimeError, match="another synthesis run"):
            SynthesisStore(tmp_path)
    with open(tmp_path / "training_data_all.jsonl", "a") as handle:
        handle.write('{"dataset": "d", "qid": "q2", "initial_li')  # a crash mid-line
    with SynthesisStore(tmp_path) as store:
        assert store.finished("d", "q1") and not store.finished("d", "q2")
        with pytest.raises(ValueError, match="different text"):
            store.check_query("q1", "another query")
        with pytest.raises(ValueError, match="different text"):
            store.check_doc("a", "changed")
        store.check_doc("b", "B")
    lines = (tmp_path / "training_data_all.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["qid"] == "q1"
    docs = [json.loads(line) for line in (tmp_path / "id_doc" / "docs.jsonl").read_text().splitlines()]
    assert docs == [{"id": "a", "text": "A"}, {"id": "b", "text": "B", "title": "T"}]
