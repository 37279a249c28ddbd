"""TREC run/qrels, queries and corpus readers and writers: formats, gzip, and every malformed input."""

import gzip
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonrank.evaluation import (
    ranking,
    read_corpus,
    read_qrels,
    read_queries,
    read_run,
    write_qrels,
    write_run,
)

RUN = "q1 Q0 d1 1 3.5 bm25\nq1 Q0 d2 2 2.0 bm25\n\nq2 Q0 d3 1 1.0 bm25\n"


def test_read_run_plain_and_gzip_agree(tmp_path):
    plain = tmp_path / "run.trec"
    plain.write_text(RUN)
    packed = tmp_path / "run.bin"  # gzip is detected by content, not by the name
    packed.write_bytes(gzip.compress(RUN.encode()))
    expected = {"q1": {"d1": 3.5, "d2": 2.0}, "q2": {"d3": 1.0}}
    assert read_run(plain) == expected
    assert read_run(packed) == expected


@pytest.mark.parametrize(
    "line, message",
    [
        ("q1 Q0 d9 3 1.0", "expected 6 fields"),
        ("q1 Q0 d9 3 1.0 tag extra", "expected 6 fields"),
        ("q1 Q0 d9 third 1.0 tag", "rank 'third' is not an integer"),
        ("q1 Q0 d9 3 high tag", "score 'high' is not a number"),
        ("q1 Q0 d9 3 nan tag", "is not finite"),
        ("q1 Q0 d1 3 0.5 tag", "docid 'd1' appears twice for query 'q1'"),
    ],
)
def test_malformed_run_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.trec"
    path.write_text(RUN + line + "\n")
    with pytest.raises(ValueError, match=message) as err:
        read_run(path)
    assert f"{path}:5:" in str(err.value)  # line 4 is blank; the bad line is line 5


def test_malformed_gzip_run_line_number(tmp_path):
    path = tmp_path / "bad.trec.gz"
    path.write_bytes(gzip.compress(b"q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2\n"))
    with pytest.raises(ValueError, match=r"bad\.trec\.gz:2: expected 6 fields"):
        read_run(path)


@pytest.mark.parametrize("content", [b"", b"\n  \n", gzip.compress(b"")])
def test_empty_files_are_errors(tmp_path, content):
    path = tmp_path / "empty.trec"
    path.write_bytes(content)
    for reader in (read_run, read_qrels, read_queries, read_corpus):
        with pytest.raises(ValueError, match="empty"):
            reader(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.trec"):
        read_run(tmp_path / "nope.trec")


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "run.trec.gz"
    path.write_bytes(gzip.compress(RUN.encode())[:20])
    with pytest.raises(ValueError, match="cannot read it"):
        read_run(path)


def test_ranking_breaks_ties_like_trec_eval():
    # trec_eval: score descending, then docid descending.
    assert ranking({"a": 1.0, "c": 2.0, "b": 1.0, "z": 0.5}) == ["c", "b", "a", "z"]


def test_write_run_roundtrip_keeps_order_and_ranks(tmp_path):
    path = write_run(
        tmp_path / "out" / "run.trec.gz", {"q1": [("b", 0.9), ("a", 0.8)], "q2": {"x": 2.0, "y": 3.0}}, "mine"
    )
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    with gzip.open(path, "rt") as handle:
        lines = handle.read().splitlines()
    assert lines == ["q1 Q0 b 1 0.9 mine", "q1 Q0 a 2 0.8 mine", "q2 Q0 y 1 3.0 mine", "q2 Q0 x 2 2.0 mine"]
    assert read_run(path) == {"q1": {"b": 0.9, "a": 0.8}, "q2": {"y": 3.0, "x": 2.0}}


def test_write_run_refuses_ties_and_rescores(tmp_path):
    tied = {"q1": [("b", 1.0), ("a", 1.0)]}
    with pytest.raises(ValueError, match="rank 2 is not below"):
        write_run(tmp_path / "r.trec", tied)
    path = write_run(tmp_path / "r.trec", tied, rescore=True)
    run = read_run(path)
    assert ranking(run["q1"]) == ["b", "a"]  # the given order survives trec_eval's tie-break


def test_write_run_scores_survive_six_decimal_rounding(tmp_path):
    # 1/rank for 2000 documents: %.6f would tie (1/1999 and 1/2000 both print 0.000500).
    docs = [(f"d{i}", 1.0 / (i + 1)) for i in range(2000)]
    run = read_run(write_run(tmp_path / "r.trec", {"q": docs}))
    assert ranking(run["q"]) == [d for d, _ in docs]


@pytest.mark.parametrize("bad", [{"q 1": [("d", 1.0)]}, {"q": [("d d", 1.0)]}, {"q": [("d", 2.0), ("d", 1.0)]}])
def test_write_run_rejects_bad_ids(tmp_path, bad):
    with pytest.raises(ValueError):
        write_run(tmp_path / "r.trec", bad)


def test_qrels_trec_json_and_errors(tmp_path):
    trec = tmp_path / "qrels.txt"
    write_qrels(trec, {"q1": {"d1": 2, "d2": 0}})
    assert read_qrels(trec) == {"q1": {"d1": 2, "d2": 0}}
    js = tmp_path / "qrels.json"
    js.write_text(json.dumps({"q1": {"d1": 1}}))
    assert read_qrels(js) == {"q1": {"d1": 1}}
    bad = tmp_path / "bad.txt"
    bad.write_text("q1 0 d1 1\nq1 0 d2\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected 4 fields"):
        read_qrels(bad)
    bad.write_text("q1 0 d1 high\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1: grade 'high' is not an integer"):
        read_qrels(bad)


def test_queries_tsv_and_jsonl(tmp_path):
    tsv = tmp_path / "q.tsv"
    tsv.write_text("1\twhat is a flea\n2\thow long is a year\n")
    assert read_queries(tsv) == {"1": "what is a flea", "2": "how long is a year"}
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text('{"qid": 1, "query": "a"}\n{"_id": "2", "text": "b"}\n')
    assert read_queries(jsonl) == {"1": "a", "2": "b"}
    tsv.write_text("1\tok\n2 no tab here\n")
    with pytest.raises(ValueError, match=r"q\.tsv:2: expected 'qid<TAB>query'"):
        read_queries(tsv)
    jsonl.write_text('{"qid": 1, "query": "a"}\n{"qid": 2\n')
    with pytest.raises(ValueError, match=r"q\.jsonl:2: invalid JSON"):
        read_queries(jsonl)


def test_corpus_jsonl_tsv_and_id_filter(tmp_path):
    jsonl = tmp_path / "corpus.jsonl"
    jsonl.write_text(
        '{"id": "a", "contents": "alpha"}\n{"docid": "b", "text": "beta", "title": "B"}\n{"_id": "c", "text": "gamma"}\n'
    )
    assert read_corpus(jsonl) == {"a": {"text": "alpha"}, "b": {"text": "beta", "title": "B"}, "c": {"text": "gamma"}}
    assert list(read_corpus(jsonl, ids=["c"])) == ["c"]
    tsv = tmp_path / "collection.tsv"
    tsv.write_text("1\tone\n2\tTwo\ttwo text\n")
    assert read_corpus(tsv) == {"1": {"text": "one"}, "2": {"text": "two text", "title": "Two"}}
    jsonl.write_text('{"id": "a", "contents": "alpha"}\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"corpus\.jsonl:2: a document needs an id"):
        read_corpus(jsonl)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.text("abcxyz019_-", min_size=1, max_size=6),
        st.lists(st.text("ABCdef0123./_", min_size=1, max_size=8), min_size=1, max_size=30, unique=True),
        min_size=1,
        max_size=4,
    )
)
def test_written_order_is_the_order_trec_eval_reads(tmp_path_factory, rankings):
    # Any ranked lists, written with rank-derived scores, read back in exactly the same order.
    path = tmp_path_factory.mktemp("prop") / "run.trec"
    write_run(path, {q: [(d, 0.0) for d in docs] for q, docs in rankings.items()}, rescore=True)
    run = read_run(path)
    assert list(run) == list(rankings)
    assert {q: ranking(docs) for q, docs in run.items()} == rankings


def test_json_qrels_shape_errors(tmp_path):
    path = tmp_path / "qrels.json"
    path.write_text('\n  {"q1": {"d1": 2}}')  # leading whitespace is still JSON
    assert read_qrels(path) == {"q1": {"d1": 2}}
    path.write_text('{"q1": ["d1"]}')
    with pytest.raises(ValueError, match=r"qrels\.json: JSON qrels must be"):
        read_qrels(path)
    path.write_text('{"q1": {"d1": 2},\n "q2": }')
    with pytest.raises(ValueError, match=r"qrels\.json:2: invalid JSON qrels"):
        read_qrels(path)
