"""Metrics on ir-measures/pytrec_eval: the published first-stage figures and the query conventions."""

import pytest
import pytrec_eval

from reasonrank.evaluation import evaluate, load_dataset, parse_metrics, read_run, write_run


@pytest.mark.parametrize("name, expected", [("dl19", 0.5058), ("dl20", 0.4796)])
def test_first_stage_reproduces_published_bm25(shared_data, monkeypatch, name, expected):
    monkeypatch.setenv("REASONRANK_DATA", str(shared_data))
    ds = load_dataset(name)
    result = evaluate(ds.first_stage_run(), ds.qrels, "ndcg@10")
    assert round(result.aggregate["ndcg@10"], 4) == expected
    assert len(result.per_query) == {"dl19": 43, "dl20": 54}[name]


def test_written_run_scores_the_same_as_the_first_stage(shared_data, tmp_path, monkeypatch):
    # Through a TREC file with rank-derived scores (DL20 has BM25 score ties: the order must survive).
    monkeypatch.setenv("REASONRANK_DATA", str(shared_data))
    ds = load_dataset("dl20")
    ranked = {q: [(c.docid, c.score) for c in cands] for q, cands in ds.candidates.items()}
    run = read_run(write_run(tmp_path / "dl20.trec", ranked, rescore=True))
    assert round(evaluate(run, ds.qrels).aggregate["ndcg@10"], 4) == 0.4796


def test_matches_pytrec_eval_directly():
    qrels = {"1": {"a": 2, "b": 1, "c": 0}, "2": {"x": 1, "y": 3}}
    run = {"1": {"a": 0.2, "b": 0.9, "c": 0.5, "d": 0.1}, "2": {"y": 0.3, "z": 0.7, "x": 0.7}}
    ours = evaluate(run, qrels, "ndcg@10,map,recall@2,p@1")
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "map", "recall_2", "P_1"}).evaluate(run)
    for qid in qrels:
        assert ours.per_query[qid]["ndcg@10"] == pytest.approx(ref[qid]["ndcg_cut_10"])
        assert ours.per_query[qid]["map"] == pytest.approx(ref[qid]["map"])
        assert ours.per_query[qid]["recall@2"] == pytest.approx(ref[qid]["recall_2"])
        assert ours.per_query[qid]["p@1"] == pytest.approx(ref[qid]["P_1"])


def test_ties_are_broken_by_docid_descending():
    qrels = {"q": {"a": 1}}
    assert evaluate({"q": {"a": 1.0, "b": 1.0}}, qrels, "p@1").aggregate["p@1"] == 0.0  # "b" > "a": b first
    assert evaluate({"q": {"a": 1.0, "0": 1.0}}, qrels, "p@1").aggregate["p@1"] == 1.0


def test_missing_and_unjudged_queries():
    qrels = {"1": {"a": 1}, "2": {"b": 1}, "3": {"c": 1}}
    run = {"1": {"a": 1.0}, "2": {"x": 1.0}, "9": {"a": 1.0}}  # 3 absent, 9 unjudged
    skip = evaluate(run, qrels, "p@1")
    assert skip.aggregate["p@1"] == pytest.approx(0.5)  # mean over the evaluated queries 1 and 2
    assert skip.queries == ["1", "2"]
    assert skip.unjudged == ["9"] and skip.missing == ["3"]
    zero = evaluate(run, qrels, "p@1", missing="zero")
    assert zero.aggregate["p@1"] == pytest.approx(1 / 3)  # trec_eval -c
    assert sorted(zero.queries) == ["1", "2", "3"]


def test_judged_query_with_no_relevant_document_counts_as_zero():
    result = evaluate({"1": {"a": 1.0}, "2": {"b": 1.0}}, {"1": {"a": 1}, "2": {"b": 0}}, "ndcg@10")
    assert result.per_query["2"]["ndcg@10"] == 0.0
    assert result.aggregate["ndcg@10"] == pytest.approx(0.5)


def test_no_overlap_is_a_clear_error():
    with pytest.raises(ValueError, match="no query of the run has judgments"):
        evaluate({"x": {"a": 1.0}}, {"1": {"a": 1}})
    with pytest.raises(ValueError, match="qrels are empty"):
        evaluate({"x": {"a": 1.0}}, {})


def test_excluded_ids_are_removed_before_scoring():
    qrels = {"q": {"gold": 1}}
    run = {"q": {"leak": 2.0, "gold": 1.0}}
    assert evaluate(run, qrels, "p@1").aggregate["p@1"] == 0.0
    assert evaluate(run, qrels, "p@1", excluded={"q": {"leak"}}).aggregate["p@1"] == 1.0


def test_metric_names():
    measures = parse_metrics("ndcg@10, recall@100,map,mrr@10,P@5,R(rel=2)@100")
    assert [str(m) for m in measures.values()] == ["nDCG@10", "R@100", "AP", "RR@10", "P@5", "R(rel=2)@100"]
    with pytest.raises(ValueError, match="unknown metric 'bogus@3'"):
        parse_metrics("bogus@3")
    with pytest.raises(ValueError, match="no metrics"):
        parse_metrics(" , ")


def test_ir_measures_computes_with_pytrec_eval():
    # trec_eval-exact: the provider ir-measures picks first for these measures is pytrec_eval.
    import ir_measures

    assert ir_measures.pytrec_eval.is_available()
    for measure in parse_metrics("ndcg@10,recall@100,map,p@5").values():
        assert ir_measures.pytrec_eval.supports(measure)
        assert not ir_measures.runtime.supports(measure)  # the only provider ahead of it
    assert [p.NAME for p in ir_measures.DefaultPipeline.providers][:2] == ["runtime", "pytrec_eval"]


def test_measures_outside_trec_eval_and_repeated_names():
    # Judged@k is not a trec_eval measure: ir-measures computes it with another provider.
    qrels = {"q": {"a": 1, "b": 0}}
    run = {"q": {"a": 3.0, "x": 2.0, "b": 1.0, "y": 0.5}}
    result = evaluate(run, qrels, "Judged@2,ndcg@10,nDCG@10")
    assert result.per_query["q"]["Judged@2"] == pytest.approx(0.5)
    assert result.aggregate["ndcg@10"] == result.aggregate["nDCG@10"] == pytest.approx(1.0)
