"""Window accounting of a reranked dataset: statuses, usage, planned windows, progress and safe traces."""

import json

import pytest

from reasonrank import Reranker
from reasonrank.core.windows import make_strategy
from reasonrank.evaluation import load_dataset, read_run, rerank_dataset
from reasonrank.evaluation.accounting import planned_windows, token_cost, trace_line
from reasonrank.testing import FunctionBackend, lexical_ranking


@pytest.fixture(scope="module")
def dl19_three(shared_data):
    return load_dataset(str(shared_data / "dl19_bm25_top100.jsonl")).limit(3)


@pytest.mark.parametrize("strategy", ["sliding", "tournament"])
@pytest.mark.parametrize(("window_size", "step"), [(20, 10), (10, 5), (4, 1)])
def test_planned_windows_match_what_the_reranker_runs(strategy, window_size, step):
    rr = Reranker(
        "test", backend=FunctionBackend(lexical_ranking), strategy=strategy, window_size=window_size, step=step
    )
    for n in (0, 1, 2, 7, 20, 21, 30, 57, 100):
        passages = [f"passage {i} about topic {i % 3}" for i in range(n)]
        result = rr.rerank("topic 1", passages) if n else None
        expected = len(result.windows) if result else 0
        assert planned_windows(make_strategy(strategy, window_size, step), n) == expected, n


def test_trace_lines_are_valid_utf8_and_lossless():
    readable = trace_line({"raw_output": "café [2] > [1]"})
    assert "café" in readable  # ordinary text stays readable
    line = trace_line({"raw_output": "\ud800 odd \udfff", "note": "café"})
    data = line.encode("utf-8")  # would raise for a raw lone surrogate
    assert data.isascii() and line.endswith("\n")
    assert json.loads(data.decode("utf-8")) == {"raw_output": "\ud800 odd \udfff", "note": "café"}


def test_token_cost():
    assert token_cost(1_000_000, 500_000, 0.5, 2.0) == pytest.approx(1.5)
    assert token_cost(10, 10, None, None) is None


def test_progress_ticks_per_window_and_run_is_appended(dl19_three, tmp_path, capsys):
    """A reranker taking ``on_window`` ticks the bar once per window; the run file grows per batch."""
    inner = Reranker("test", backend=FunctionBackend(lexical_ranking), depth=30)
    ticks = []

    class Reporting:  # calls on_window as each window finishes, as Reranker does
        strategy, depth = inner.strategy, inner.depth

        def rerank_batch(self, queries, passages, *, on_window=None):
            results = inner.rerank_batch(queries, passages)
            for window in (w for r in results for w in r.windows):
                ticks.append(window)
                on_window(window)
            return results

    path = tmp_path / "run.trec"
    with open(path, "w") as run_out:
        out = rerank_dataset(dl19_three, Reporting(), batch_size=2, progress=True, run_out=run_out, tag="t")
    assert len(ticks) == 6 == out.windows == out.calls  # depth 30: 2 windows per query
    assert "6/6" in capsys.readouterr().err and list(read_run(path)) == dl19_three.qids
    assert out.run() == read_run(path)


def test_a_crash_keeps_the_finished_batches(dl19_three, tmp_path):
    calls = []

    def rank(query, passages):
        calls.append(query)
        if len(calls) == 3:
            raise RuntimeError("backend crashed at the third query")
        return lexical_ranking(query, passages)

    reranker = Reranker("test", backend=FunctionBackend(rank), depth=20)
    with open(tmp_path / "run.trec", "w") as run_out, open(tmp_path / "traces.jsonl", "w") as traces:
        with pytest.raises(RuntimeError, match="third query"):
            rerank_dataset(dl19_three, reranker, batch_size=1, run_out=run_out, traces=traces)
    assert list(read_run(tmp_path / "run.trec")) == dl19_three.qids[:2]
    assert len((tmp_path / "traces.jsonl").read_text().splitlines()) == 2


def test_the_reranker_reports_each_window_as_it_finishes(dl19_three, tmp_path):
    """With the real Reranker, ``on_window`` is passed and called once per planned window."""
    seen = []

    class Recording(Reranker):
        def rerank_batch(self, queries, passages, *, on_window=None, **kwargs):
            def record(trace):
                seen.append(trace)
                on_window(trace)

            return super().rerank_batch(queries, passages, on_window=record, **kwargs)

    reranker = Recording("test", backend=FunctionBackend(lexical_ranking), depth=30, strategy="tournament")
    out = rerank_dataset(dl19_three, reranker, batch_size=2, progress=True)
    assert len(seen) == out.windows == 3 * planned_windows(reranker.strategy, 30) == 6
    assert out.prompt_tokens > 0 and out.incomplete_queries == 0
