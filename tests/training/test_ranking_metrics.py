import random

import pytest

from reasonrank.training.ranking_metrics import average_overlap, ndcg_at_k, recall_at_k


def test_against_pytrec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = random.Random(7)
    for case in range(200):
        docs = [f"d{i}" for i in range(rng.randint(1, 20))]
        rng.shuffle(docs)
        relevant = set(rng.sample(docs, rng.randint(1, len(docs))))
        qrels = {"q": {d: int(d in relevant) for d in docs}}
        run = {"q": {d: -float(pos) for pos, d in enumerate(docs)}}
        expected = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10"}).evaluate(run)["q"]
        assert ndcg_at_k(docs, relevant, 10) == pytest.approx(expected["ndcg_cut_10"], abs=1e-9), case
        assert recall_at_k(docs, relevant, 10) == pytest.approx(expected["recall_10"], abs=1e-9), case


def test_edge_cases():
    assert ndcg_at_k(["a", "b"], set()) == 0.0
    assert recall_at_k(["a", "b"], []) == 0.0
    assert ndcg_at_k(["a", "a", "b"], {"b"}, k=2) == pytest.approx(ndcg_at_k(["a", "b"], {"b"}, k=2))
    assert ndcg_at_k(["x"], {"a", "b"}) == 0.0
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(["a"], {"a"}, k=0)


def reference_rbo_0_1_3(S, T):
    """Transcription of rbo==0.1.3 RankingSimilarity(S, T).rbo() with its defaults (p=1)."""
    if not S and not T:
        return 1
    if not S or not T:
        return 0
    k = min(len(S), len(T))
    A, AO = [0] * k, [0] * k
    s_run, t_run = {S[0]}, {T[0]}
    A[0] = AO[0] = 1 if S[0] == T[0] else 0
    for d in range(1, k):
        tmp = (S[d] in t_run) + (T[d] in s_run) + (S[d] == T[d])
        A[d] = (A[d - 1] * d + tmp) / (d + 1)
        AO[d] = (AO[d - 1] * d + A[d]) / (d + 1)
        s_run.add(S[d])
        t_run.add(T[d])
    return AO[-1]


def test_average_overlap_matches_rbo_package_and_worked_example():
    rng = random.Random(1)
    for _ in range(200):
        a = list(range(rng.randint(0, 20)))
        b = rng.sample(range(25), rng.randint(0, 20))
        rng.shuffle(a)
        assert average_overlap(a, b) == pytest.approx(reference_rbo_0_1_3(a, b), abs=1e-12)
    teacher = [3, 7, 1, 15, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20]
    rollout = [7, 1, 3, 2, 4, 5, 6, 8, 9, 10, 15, 11, 12, 13, 14, 16, 17, 18, 19, 20]
    assert average_overlap(rollout, teacher) == pytest.approx(0.87022, abs=1e-5)
    assert average_overlap(teacher, teacher) == 1.0
    with pytest.raises(ValueError, match="repeated"):
        average_overlap([1, 1], [1, 2])
