"""Paired comparison: means, difference, t-test, randomization test, and the PNG plot."""

import pytest

from reasonrank.evaluation import compare, evaluate, plot_differences

QRELS = {str(q): {"rel": 1} for q in range(12)}


def _run(top_relevant: set[int]) -> dict:
    # Relevant document at rank 1 for queries in top_relevant, else at rank 3.
    run = {}
    for q in range(12):
        order = ["rel", "x", "y"] if q in top_relevant else ["x", "y", "rel"]
        run[str(q)] = {d: 3.0 - i for i, d in enumerate(order)}
    return run


def test_better_run_is_significant_and_identical_is_not(tmp_path):
    a = evaluate(_run({0, 1}), QRELS, "ndcg@10,p@1")
    b = evaluate(_run(set(range(11))), QRELS, "ndcg@10,p@1")
    result = compare(a, b, "p@1")
    assert result.mean_a == pytest.approx(2 / 12) and result.mean_b == pytest.approx(11 / 12)
    assert result.difference == pytest.approx(9 / 12)
    assert (result.wins, result.losses, result.ties) == (9, 0, 3)
    assert result.t_pvalue < 0.001
    assert result.randomization_pvalue == pytest.approx(2 / 2**9, rel=0.01)  # exact: only all-flip-same extremes
    same = compare(a, a, "ndcg@10")
    assert same.difference == 0.0 and same.t_pvalue == 1.0 and same.randomization_pvalue == 1.0
    png = plot_differences(result, tmp_path / "plots" / "diff.png", labels=("bm25", "rerank"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_constant_difference_and_too_few_queries():
    a = evaluate(_run(set()), QRELS, "p@1")
    b = evaluate(_run(set(range(12))), QRELS, "p@1")
    result = compare(a, b, "p@1")
    assert result.t_pvalue == 0.0 and result.difference == 1.0
    one = evaluate({"0": {"rel": 1.0}}, QRELS, "p@1")
    with pytest.raises(ValueError, match="share 1 evaluated queries"):
        compare(one, one, "p@1")
    with pytest.raises(ValueError, match="metric 'map' was not computed"):
        compare(a, b, "map")
