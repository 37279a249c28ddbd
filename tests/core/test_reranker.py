"""The reranker end to end over real backends: FunctionBackend in-process and RankingServer over HTTP."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonrank import Reranker, RerankResult
from reasonrank.core import parsing
from reasonrank.core import reranker as reranker_module
from reasonrank.core.types import BackendError
from reasonrank.testing import Fault, FunctionBackend, RankingServer
from reasonrank.testing.answers import score_ranking as by_score
from reasonrank.testing.answers import scored_passages as scored


def check_result(res: RerankResult, n: int):
    assert sorted(res.order) == list(range(n))
    assert len(res.scores) == n
    assert all(a > b for a, b in zip(res.scores, res.scores[1:]))


def test_sliding_perfect_ranker_top10_and_trace():
    relevance = [(i * 37) % 100 for i in range(100)]
    backend = FunctionBackend(by_score)
    res = Reranker(backend=backend).rerank("q", scored(relevance))
    check_result(res, 100)
    assert res.order[:10] == sorted(range(100), key=lambda i: -relevance[i])[:10]
    assert (res.calls, res.rounds) == (9, 9)
    first = res.windows[0]
    assert first.passages == list(range(80, 100)) and first.round == 0
    assert sorted(first.order) == first.passages
    assert first.reasoning and first.answer.startswith("[") and first.repairs == []
    assert res.score_of()[res.order[0]] == res.scores[0]


def test_tournament_top10_in_fewer_rounds():
    relevance = [(i * 37) % 100 for i in range(100)]
    res = Reranker(backend=FunctionBackend(by_score), strategy="tournament").rerank("q", scored(relevance))
    check_result(res, 100)
    assert res.order[:10] == sorted(range(100), key=lambda i: -relevance[i])[:10]
    assert res.rounds <= 4


def test_depth_tail_follows_in_input_order():
    backend = FunctionBackend(lambda q, p: list(reversed(range(len(p)))))
    res = Reranker(backend=backend, depth=30).rerank("q", [f"p{i}" for i in range(50)])
    check_result(res, 50)
    assert sorted(res.order[:30]) == list(range(30))
    assert res.order[30:] == list(range(30, 50))
    assert all(max(w.passages) < 30 for w in res.windows)


def test_three_queries_share_each_backend_call():
    backend = FunctionBackend(by_score)
    results = Reranker(backend=backend).rerank_batch(["a", "b", "c"], [scored(range(100))] * 3)
    assert [len(batch) for batch in backend.calls] == [3] * 9
    for res in results:
        check_result(res, 100)
        assert res.order[:10] == list(range(99, 89, -1))


def test_rerank_batch_with_different_lengths():
    backend = FunctionBackend(by_score)
    sizes = [100, 57, 1, 0, 20]
    results = Reranker(backend=backend).rerank_batch(list("abcde"), [scored(range(n)) for n in sizes])
    for res, n in zip(results, sizes):
        check_result(res, n)
        assert res.order[: min(n, 10)] == list(range(n - 1, max(n - 11, -1), -1))
    assert [r.calls for r in results] == [9, 5, 0, 0, 1]
    assert len(backend.calls) == 9 and len(backend.calls[0]) == 3  # round 0: queries a, b and e


@pytest.mark.parametrize("n", [0, 1])
def test_zero_or_one_passage_makes_no_call(n):
    backend = FunctionBackend()
    res = Reranker(backend=backend).rerank("q", ["only"] * n)
    assert res.order == list(range(n)) and res.windows == []
    assert backend.calls == []


def test_bad_inputs_raise_clear_errors():
    rr = Reranker(backend=FunctionBackend())
    with pytest.raises(ValueError, match="query 0 is empty"):
        rr.rerank("   ", ["a", "b"])
    with pytest.raises(ValueError, match="got 2 queries but 1 passage lists"):
        rr.rerank_batch(["a", "b"], [["x"]])
    with pytest.raises(TypeError, match="list of queries"):
        rr.rerank_batch("a", [["x"]])
    with pytest.raises(ValueError, match="query 0, passage 1: passage dict has no text field"):
        rr.rerank("q", ["fine", {"id": "d2"}])
    with pytest.raises(ValueError, match="on_error"):
        Reranker(backend=FunctionBackend(), on_error="ignore")
    with pytest.raises(ValueError, match="step"):
        Reranker(backend=FunctionBackend(), window_size=10, step=10)


def test_dict_passages_and_truncation_reach_the_prompt():
    backend = FunctionBackend()
    passages = [{"title": "Cats", "text": "one two three four five six"}, {"content": "dogs [7] bark"}]
    Reranker(backend=backend, max_passage_tokens=8).rerank("cats", passages)
    user = backend.calls[0][0].messages[1]["content"]
    assert "\n[1] Title: Cats Content: one two three\n" in user  # 8 tokens ~ 6 words (word approximation)
    assert "\n[2] dogs (7) bark\n" in user


def test_malformed_answers_never_drop_or_invent_passages():
    backend = FunctionBackend(respond=lambda q, p, order: "<answer>[3] > [3] > [0] > [99] > banana")
    res = Reranker(backend=backend).rerank("q", [f"p{i}" for i in range(30)])
    check_result(res, 30)
    flags = set().union(*(w.repairs for w in res.windows))
    assert {parsing.UNCLOSED_ANSWER, parsing.DROPPED_DUPLICATES, parsing.DROPPED_OUT_OF_RANGE} <= flags
    assert res.repaired


@pytest.fixture
def server():
    with RankingServer(by_score) as srv:
        yield srv


def test_on_error_raise_names_query_and_window(server):
    server.faults.append(Fault("status", status=400))
    rr = Reranker("m", base_url=server.base_url, max_retries=0)
    with pytest.raises(BackendError, match=r"query 0 round 0 window 0 \(query 'why cats purr'\).*HTTP 400"):
        rr.rerank("why cats purr", scored(range(30)))
    rr.close()


def test_on_error_keep_keeps_the_window_order_and_flags_it(server):
    server.faults.append(Fault("status", status=400))
    with Reranker("m", base_url=server.base_url, max_retries=0, on_error="keep") as rr:
        res = rr.rerank("q", scored(range(30)))
    check_result(res, 30)
    failed, ok = res.windows
    assert failed.error and "HTTP 400" in failed.error
    assert failed.order == failed.passages == list(range(10, 30))
    assert failed.repairs == [parsing.KEPT_WINDOW_ORDER]
    assert ok.error is None and ok.passages == list(range(20))
    assert res.order[:10] == list(range(19, 9, -1))  # the second window still ranked what it saw
    assert res.repaired


async def test_async_rerank_equals_sync(server):
    passages = scored([(i * 13) % 45 for i in range(45)])
    with Reranker("m", base_url=server.base_url) as rr:
        sync = rr.rerank("q", passages)
        asynced = await rr.arerank("q", passages)
        batch = await rr.arerank_batch(["q", "r"], [passages, passages[:25]])
        await rr.aclose()
    assert asynced.order == sync.order == batch[0].order
    assert asynced.scores == sync.scores
    check_result(batch[1], 25)


def test_backend_is_built_lazily_once(server, monkeypatch):
    built = []
    real = reranker_module.make_backend

    def counting(*args, **kwargs):
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(reranker_module, "make_backend", counting)
    rr = Reranker(None, base_url=server.base_url, concurrency=2)
    assert built == []
    rr.rerank("q", scored(range(25)))
    rr.rerank_batch(["a", "b"], [scored(range(5))] * 2)
    assert len(built) == 1 and rr.backend is rr.backend
    assert rr.backend.concurrency == 2 and rr.backend.model_name == server.model
    rr.close()


def test_ready_backend_cannot_take_backend_options():
    with pytest.raises(ValueError, match="ready Backend"):
        Reranker(backend=FunctionBackend(), base_url="http://x/v1")


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(0, 150).flatmap(lambda n: st.permutations(range(n))), min_size=1, max_size=3),
    st.sampled_from(["sliding", "tournament"]),
)
def test_perfect_ranker_top10_for_any_batch(relevances, strategy):
    backend = FunctionBackend(by_score)
    results = Reranker(backend=backend, strategy=strategy, depth=150).rerank_batch(
        [f"q{i}" for i in range(len(relevances))], [scored(r) for r in relevances]
    )
    for res, relevance in zip(results, relevances):
        check_result(res, len(relevance))
        assert res.order[:10] == sorted(range(len(relevance)), key=lambda i: -relevance[i])[:10]
    assert len(backend.calls) == max(r.rounds for r in results)  # one backend call per round, all queries
