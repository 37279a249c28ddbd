"""The bench end to end in-process: DL19 candidates -> Reranker (lexical FunctionBackend) -> metrics."""

import json

import pytest

from reasonrank import Reranker
from reasonrank.evaluation import bench, evaluate, load_dataset, read_run, rerank_dataset
from reasonrank.evaluation.bench import summary_table
from reasonrank.testing import FunctionBackend, format_answer, lexical_ranking


@pytest.fixture(scope="module")
def dl19_three(shared_data):
    return load_dataset(str(shared_data / "dl19_bm25_top100.jsonl")).limit(3)


def test_bench_writes_run_metrics_and_traces(dl19_three, tmp_path):
    backend = FunctionBackend(lexical_ranking)
    reranker = Reranker("test", backend=backend, depth=30)
    (result,) = bench({"dl19": dl19_three}, reranker, tmp_path, metrics=["ndcg@10", "recall@20"], batch_size=2)

    run = read_run(tmp_path / "run.trec")
    assert list(run) == dl19_three.qids and all(len(d) == 100 for d in run.values())
    for qid, cands in dl19_three.candidates.items():
        assert set(run[qid]) == {c.docid for c in cands}  # nothing dropped, duplicated or invented
        assert [line for line in (tmp_path / "run.trec").read_text().splitlines() if line.startswith(qid + " ")][
            30
        ].split()[2] == cands[30].docid  # the tail keeps its order

    # depth 30, window 20, step 10: windows [10,30) and [0,20) -> 2 calls per query, 2 batches of queries
    traces = [json.loads(line) for line in (tmp_path / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == 6 == result.reranked_run.calls
    assert sum(len(calls) for calls in backend.calls) == 6 and len(backend.calls) == 4  # 2 rounds x 2 batches
    assert {t["qid"] for t in traces} == set(dl19_three.qids)
    assert all(len(t["docids"]) == 20 and sorted(t["docids"]) == sorted(t["order_docids"]) for t in traces)
    assert all(t["raw_output"].startswith("<think>") and t["repairs"] == [] for t in traces)

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    first = evaluate(dl19_three.first_stage_run(), dl19_three.qrels, ["ndcg@10", "recall@20"])
    assert metrics["first_stage"] == pytest.approx(first.aggregate)
    assert metrics["reranked"] == pytest.approx(evaluate(run, dl19_three.qrels, ["ndcg@10", "recall@20"]).aggregate)
    assert metrics["queries"] == 3 and metrics["cost"]["calls"] == 6
    assert set(metrics["paired_tests"]["ndcg@10"]) >= {"t_pvalue", "randomization_pvalue", "difference", "n"}
    assert metrics["reranker"]["depth"] == 30 and metrics["reranker"]["prompt_mode"] == "reasoning"
    assert "dl19" in summary_table([result], "ndcg@10")
    first_run = read_run(tmp_path / "first_stage.trec")
    assert evaluate(first_run, dl19_three.qrels, ["ndcg@10", "recall@20"]).aggregate == pytest.approx(first.aggregate)


def test_malformed_answers_are_repaired_and_counted(dl19_three):
    # The model answers with only two ids: the rest are appended in window order; nothing is lost.
    backend = FunctionBackend(lexical_ranking, respond=lambda q, p, order: format_answer(order[:2]))
    out = rerank_dataset(dl19_three.limit(1), Reranker("test", backend=backend, depth=20))
    (qid,) = out.rankings
    assert sorted(d for d, _ in out.rankings[qid]) == sorted(c.docid for c in dl19_three.candidates[qid])
    assert out.repaired_windows == 1 and out.failed_windows == 0


def test_bench_needs_texts_and_judgments(dl19_three, tmp_path):
    reranker = Reranker("test", backend=FunctionBackend())
    no_qrels = dl19_three.limit(1)
    no_qrels.qrels = {}
    with pytest.raises(ValueError, match="no judgments"):
        bench({"x": no_qrels}, reranker, tmp_path)
    no_text = dl19_three.limit(1)
    no_text.candidates = {q: [type(c)(c.docid, c.score) for c in cs] for q, cs in no_text.candidates.items()}
    with pytest.raises(ValueError, match="no document texts"):
        bench({"x": no_text}, reranker, tmp_path)
    with pytest.raises(ValueError, match="unknown metric"):
        bench({"x": dl19_three}, reranker, tmp_path, metrics=["nope"])
