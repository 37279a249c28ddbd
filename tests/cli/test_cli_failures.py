"""``reasonrank rerank`` / ``bench`` under failures: odd model output, crashes mid-run, a dead key;
and the usage (tokens, cost) they report. Real HTTP servers on 127.0.0.1."""

import json

import pytest

from reasonrank.evaluation import load_dataset, ranking, read_run
from reasonrank.testing import Fault, RankingServer, lexical_ranking

SURROGATE = "<think>odd bytes \ud800 here</think> <answer>[2] > [1]</answer>"


@pytest.fixture(scope="module")
def dl19(shared_data):
    return load_dataset(str(shared_data / "dl19_bm25_top100.jsonl"))


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch):
    monkeypatch.delenv("REASONRANK_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def _model(server, *extra):
    return ["--base-url", server.base_url, "--model", "reasonrank-test", "--no-progress", *extra]


def _small(limit=2):
    return ["--dataset", "dl19", "--limit", str(limit), "--depth", "20", "--batch-size", "1"]


def test_a_lone_surrogate_in_the_output_is_traced_and_the_run_written(cli, dl19, tmp_path):
    out, traces = tmp_path / "out.trec", tmp_path / "traces.jsonl"
    with RankingServer() as srv:
        srv.faults.append(Fault("text", text=SURROGATE))  # JSON "\ud800": valid JSON, a lone surrogate
        code, _, err = cli("rerank", *_small(), "--output", out, "--traces", traces, "--on-error", "keep", *_model(srv))
        assert code == 0, err
        assert list(read_run(out)) == dl19.qids[:2]
        first = json.loads(traces.read_bytes().decode("utf-8").splitlines()[0])
        assert first["raw_output"] == SURROGATE  # kept exactly, escaped in the file
        srv.faults.append(Fault("text", text=SURROGATE))
        code, _, err = cli("bench", *_small(), "--out", tmp_path / "b", *_model(srv))
        assert code == 0, err
        assert len(read_run(tmp_path / "b" / "run.trec")) == 2
        lines = (tmp_path / "b" / "traces.jsonl").read_bytes().decode("utf-8").splitlines()
        assert "\ud800" in json.loads(lines[0])["raw_output"]


def _failing_after(server, good):
    """A rank function that makes every request after the first ``good`` ones answer HTTP 400."""
    served = []

    def rank(query, passages):
        served.append(query)
        if len(served) >= good:
            server.faults.extend(Fault("status", status=400) for _ in range(4))
        return lexical_ranking(query, passages)

    return rank


def test_a_failure_mid_run_keeps_the_finished_queries(cli, dl19, tmp_path):
    """``--on-error raise``: the backend fails at the third query; the first two are on disk."""
    out, traces = tmp_path / "out.trec", tmp_path / "traces.jsonl"
    server = RankingServer()
    server.rank = _failing_after(server, 2)
    with server:
        code, _, err = cli("rerank", *_small(3), "--output", out, "--traces", traces, *_model(server))
        assert code == 1 and "query 0" in err and f"finished before it are in {out}" in err
        assert list(read_run(out)) == dl19.qids[:2]
        assert [json.loads(line)["qid"] for line in traces.read_text().splitlines()] == dl19.qids[:2]
    server = RankingServer()
    server.rank = _failing_after(server, 2)
    with server:
        code, _, err = cli("bench", *_small(3), "--out", tmp_path / "b", *_model(server))
        assert code == 1, err
        assert list(read_run(tmp_path / "b" / "run.trec")) == dl19.qids[:2]


def test_every_window_failing_exits_nonzero_with_the_run_written(cli, dl19, tmp_path):
    """A revoked key (HTTP 401) with ``--on-error keep``: exit 1 naming the cause, the run still written."""
    out = tmp_path / "out.trec"
    with RankingServer(api_key="the-right-key") as srv:
        args = ["rerank", *_small(), "--output", out, "--on-error", "keep", *_model(srv)]
        code, _, err = cli(*args)
        assert code == 1, err
        assert "2 of 2 windows (100%)" in err and "401" in err and "--max-failed-share 0.1" in err
        run = read_run(out)
        for qid in dl19.qids[:2]:  # the first-stage order, kept
            assert ranking(run[qid]) == [c.docid for c in dl19.candidates[qid]]
        depth100 = ["--dataset", "dl19", "--limit", "1", "--output", out, "--on-error", "keep", *_model(srv)]
        code, _, err = cli("rerank", *depth100)  # fail-fast: the 8 later windows are never sent
        assert code == 1 and "9 of 9 windows (100%)" in err and "8 skipped after a failure" in err
        code, _, err = cli(*args, "--max-failed-share", "1")
        assert code == 0 and "(0 repaired, 2 failed)" in err
        code, _, err = cli("bench", *_small(), "--out", tmp_path / "b", "--on-error", "keep", *_model(srv))
        assert code == 1 and "401" in err
        assert (tmp_path / "b" / "run.trec").is_file() and (tmp_path / "b" / "metrics.json").is_file()
        code, _, err = cli(*args, "--max-failed-share", "1.5")
        assert code == 2 and "--max-failed-share must be in [0, 1]" in err


def test_usage_and_cost_are_reported(cli, tmp_path):
    out, traces = tmp_path / "out.trec", tmp_path / "traces.jsonl"
    with RankingServer() as srv:
        prices = ["--price-in", "2", "--price-out", "8"]
        code, _, err = cli("rerank", *_small(), "--output", out, "--traces", traces, *prices, *_model(srv))
        assert code == 0, err
        windows = [json.loads(line) for line in traces.read_text().splitlines()]
        prompt = sum(w["prompt_tokens"] for w in windows)
        completion = sum(w["completion_tokens"] for w in windows)
        assert prompt > 0 and completion > 0 and all(w["status"] == "ok" for w in windows)
        assert f"tokens: {prompt} prompt + {completion} completion; 0 cached calls" in err
        assert f"cost ${(2 * prompt + 8 * completion) / 1e6:.4f}" in err
        code, _, err = cli("bench", *_small(), "--out", tmp_path / "b", *prices, *_model(srv))
        assert code == 0, err
        cost = json.loads((tmp_path / "b" / "metrics.json").read_text())["cost"]
        assert (cost["prompt_tokens"], cost["completion_tokens"]) == (prompt, completion)
        assert cost["usd"] == pytest.approx((2 * prompt + 8 * completion) / 1e6, abs=1e-6)
        assert f"tokens: {prompt} prompt + {completion} completion" in err
        code, _, err = cli("rerank", *_small(), "--output", out, "--price-in", "-1", *_model(srv))
        assert code == 2 and "--price-in must be >= 0" in err
