"""``reasonrank rerank`` and ``reasonrank bench`` end to end against a real HTTP server on 127.0.0.1."""

import json
from pathlib import Path

import pytest

from reasonrank.evaluation import evaluate, load_dataset, ranking, read_run, write_qrels, write_run
from reasonrank.testing import RankingServer, lexical_ranking


@pytest.fixture(scope="module")
def server():
    with RankingServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def dl19(shared_data):
    return load_dataset(str(shared_data / "dl19_bm25_top100.jsonl"))


def _model(server):
    return ["--base-url", server.base_url, "--model", "reasonrank-test", "--no-progress"]


def _expected_top(dl19, qid, depth):
    """What one window over the first ``depth`` candidates gives with the server's lexical ranking."""
    cands = dl19.candidates[qid][:depth]
    return [cands[i].docid for i in lexical_ranking(dl19.queries[qid], [c.text for c in cands])]


def test_rerank_dataset_to_trec_run(cli, server, dl19, tmp_path):
    out, traces = tmp_path / "out.trec", tmp_path / "traces.jsonl"
    before = len(server.chat_requests)
    code, _, err = cli(
        "rerank",
        "--dataset",
        "dl19",
        "--limit",
        "2",
        "--depth",
        "20",
        "--batch-size",
        "2",
        "--output",
        out,
        "--traces",
        traces,
        *_model(server),
    )
    assert code == 0, err
    assert "reranked 2 queries of dl19 with 2 LLM calls" in err
    assert len(server.chat_requests) - before == 2  # depth 20 = one window per query
    run = read_run(out)
    assert list(run) == dl19.qids[:2]
    for qid, docs in run.items():
        order = ranking(docs)
        assert order[:20] == _expected_top(dl19, qid, 20)
        assert order[20:] == [c.docid for c in dl19.candidates[qid][20:]]  # the tail keeps its order
    lines = out.read_text().splitlines()
    assert [int(line.split()[3]) for line in lines[:100]] == list(range(1, 101))
    assert all(line.endswith(" reasonrank") for line in lines)
    records = [json.loads(line) for line in traces.read_text().splitlines()]
    assert [r["qid"] for r in records] == dl19.qids[:2]
    assert records[0]["order_docids"] == _expected_top(dl19, dl19.qids[0], 20)


def test_rerank_takes_out_like_bench(cli, server, dl19, tmp_path):
    out = tmp_path / "alias.trec"
    code, _, err = cli("rerank", "--dataset", "dl19", "--limit", "1", "--depth", "20", "--out", out, *_model(server))
    assert code == 0, err
    assert list(read_run(out)) == dl19.qids[:1]


def test_rerank_trec_run_queries_and_corpus(cli, server, dl19, tmp_path):
    qids = dl19.qids[:2]
    first = write_run(
        tmp_path / "bm25.trec.gz", {q: [(c.docid, c.score) for c in dl19.candidates[q][:15]] for q in qids}
    )
    (tmp_path / "queries.tsv").write_text("".join(f"{q}\t{dl19.queries[q]}\n" for q in qids))
    with open(tmp_path / "corpus.jsonl", "w") as corpus:
        for q in qids:
            for c in dl19.candidates[q][:15]:
                corpus.write(json.dumps({"docid": c.docid, "text": c.text}) + "\n")
    out = tmp_path / "reranked.trec"
    args = [
        "rerank",
        "--run",
        first,
        "--queries",
        tmp_path / "queries.tsv",
        "--corpus",
        tmp_path / "corpus.jsonl",
        "--output",
        out,
    ]
    code, _, err = cli(*args, "--window-size", "10", "--step", "5", *_model(server))
    assert code == 0, err
    run = read_run(out)
    assert {q: set(d) for q, d in run.items()} == {q: {c.docid for c in dl19.candidates[q][:15]} for q in qids}
    assert ranking(run[qids[0]])[0] in _expected_top(dl19, qids[0], 15)[:5]

    # A document missing from the corpus: a clear error naming it, or dropped with --skip-missing.
    missing = dl19.candidates[qids[1]][3].docid
    lines = (tmp_path / "corpus.jsonl").read_text().splitlines()
    (tmp_path / "corpus.jsonl").write_text(
        "\n".join(line for line in lines if json.loads(line)["docid"] != missing) + "\n"
    )
    code, _, err = cli(*args, *_model(server))
    assert code == 2 and f"not in the corpus: {missing}" in err
    code, _, err = cli(*args, "--skip-missing", *_model(server))
    assert code == 0 and missing not in read_run(out)[qids[1]]


def test_rerank_usage_errors(cli, server, shared_data, tmp_path):
    out = ["--output", tmp_path / "x.trec"]
    assert "give --dataset" in cli("rerank", *out, *_model(server))[2]
    assert "needs --queries and --corpus" in cli("rerank", "--run", tmp_path / "r", *out, *_model(server))[2]
    code, _, err = cli("rerank", "--dataset", "dl19", *out, "--model", "m")
    assert code == 2 and "needs --base-url" in err
    code, _, err = cli("rerank", "--dataset", "bright:biology", *out, *_model(server))
    assert code == 2 and "no document texts; give --corpus" in err
    code, _, err = cli("rerank", "--dataset", "dl19", "--limit", "0", *out, *_model(server))
    assert code == 2 and "--limit must be >= 1" in err


def test_bench_end_to_end(cli, server, dl19, tmp_path):
    code, out, err = cli(
        "bench",
        "--dataset",
        "dl19",
        "--limit",
        "3",
        "--depth",
        "20",
        "--out",
        tmp_path / "b",
        "--metrics",
        "ndcg@10,recall@20",
        *_model(server),
    )
    assert code == 0, err
    assert out.startswith("ndcg@10 (x100)") and "dl19" in out
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    three = dl19.limit(3)
    expected_first = evaluate(three.first_stage_run(), three.qrels, ["ndcg@10", "recall@20"]).aggregate
    assert metrics["first_stage"] == pytest.approx(expected_first)
    run = read_run(tmp_path / "b" / "run.trec")
    assert metrics["reranked"] == pytest.approx(evaluate(run, three.qrels, ["ndcg@10", "recall@20"]).aggregate)
    assert metrics["queries"] == 3 and metrics["cost"]["calls"] == 3
    assert metrics["reranker"]["model"] == "reasonrank-test" and metrics["reranker"]["backend"] == "openai"
    traces = (tmp_path / "b" / "traces.jsonl").read_text().splitlines()
    assert len(traces) == 3 and json.loads(traces[0])["completion_tokens"] > 0
    code, out, _ = cli(
        "bench",
        "--dataset",
        "dl19",
        "--limit",
        "2",
        "--depth",
        "20",
        "--out",
        tmp_path / "c",
        "--json",
        *_model(server),
    )
    assert code == 0 and json.loads(out)["queries"] == 2


def test_bench_bright_tasks_with_local_corpus(cli, server, shared_data, tmp_path):
    """BRIGHT of the real shape (two real queries of two tasks) with a ``corpus.jsonl`` per task."""
    import gzip

    records, seen = [], {"biology": 0, "pony": 0}
    with gzip.open(shared_data / "bright_reasonir_top100_ids.jsonl.gz", "rt") as handle:
        for line in handle:
            record = json.loads(line)
            if seen.get(record["task"], 2) < 2:
                seen[record["task"]] += 1
                records.append(record)
    (tmp_path / "bright.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    for task in seen:
        (tmp_path / "corpus" / task).mkdir(parents=True)
        docs = {d for r in records if r["task"] == task for d, _ in r["reasonir_top100"]}
        gold = {g for r in records if r["task"] == task for g in r["gold_ids"]}
        with open(tmp_path / "corpus" / task / "corpus.jsonl", "w") as out:
            for d in sorted(docs):
                out.write(
                    json.dumps({"id": d, "contents": f"document {d}" + (" insects light" if d in gold else "")}) + "\n"
                )
    code, out, err = cli(
        "bench",
        "--dataset",
        tmp_path / "bright.jsonl",
        "--corpus",
        tmp_path / "corpus",
        "--depth",
        "20",
        "--out",
        tmp_path / "b",
        *_model(server),
    )
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert set(rows) == {"bright/biology", "bright/pony", "average"}
    summary = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert set(summary["datasets"]) == {"bright/biology", "bright/pony"}
    assert summary["average"]["first_stage"]["ndcg@10"] == pytest.approx(
        (
            summary["datasets"]["bright/biology"]["first_stage"]["ndcg@10"]
            + summary["datasets"]["bright/pony"]["first_stage"]["ndcg@10"]
        )
        / 2
    )
    for task in ("bright_biology", "bright_pony"):
        assert len(read_run(tmp_path / "b" / task / "run.trec")) == 2
        assert len((tmp_path / "b" / task / "traces.jsonl").read_text().splitlines()) == 2


def test_rerank_malformed_and_failed_windows(cli, dl19, tmp_path):
    from reasonrank.testing import Fault

    out, traces = tmp_path / "out.trec", tmp_path / "traces.jsonl"
    args = ["rerank", "--dataset", "dl19", "--limit", "2", "--depth", "20", "--batch-size", "1", "--output", out]
    with RankingServer() as srv:
        # A malformed answer is repaired (nothing dropped or invented) and flagged in the trace.
        srv.faults.append(Fault("text", text="<think>hmm</think> <answer>[3] > [3] > [99]</answer>"))
        code, _, err = cli(*args, "--traces", traces, *_model(srv))
        assert code == 0 and "(1 repaired, 0 failed)" in err
        first = json.loads(traces.read_text().splitlines()[0])
        assert first["repairs"] and first["order_docids"][0] == first["docids"][2]
        assert {q: set(d) for q, d in read_run(out).items()} == {
            q: {c.docid for c in dl19.candidates[q]} for q in dl19.qids[:2]
        }
        # A failed window: an error naming it (exit 1), or kept in its order with --on-error keep.
        srv.faults.append(Fault("status", status=400))
        code, _, err = cli(*args, *_model(srv))
        assert code == 1 and "reasonrank rerank: error:" in err and "query 0" in err
        srv.faults.append(Fault("status", status=400))
        code, _, err = cli(*args, "--on-error", "keep", *_model(srv))
        assert code == 1 and "(0 repaired, 1 failed)" in err  # 1 of 2 windows: more than --max-failed-share
        assert "1 of 2 windows (50%)" in err and "injected 400" in err
        srv.faults.append(Fault("status", status=400))
        code, _, err = cli(*args, "--on-error", "keep", "--max-failed-share", "0.5", *_model(srv))
        assert code == 0 and "(0 repaired, 1 failed)" in err
        first_query = dl19.qids[0]
        assert ranking(read_run(out)[first_query]) == [c.docid for c in dl19.candidates[first_query]]


def test_reranker_flags(cli, server, shared_data, tmp_path):
    out = ["--dataset", "dl19", "--output", tmp_path / "x.trec"]
    code, _, err = cli("rerank", *out, "--concurrency", "0", *_model(server))
    assert code == 2 and "--concurrency must be >= 1" in err
    code, _, err = cli("rerank", *out, "--backend", "transformers", "--model", "m", "--concurrency", "2")
    assert code == 2 and "--concurrency applies to the openai backend" in err
    code, _, err = cli("rerank", *out, "--backend", "transformers", "--model", "m", "--http-client", "aiohttp")
    assert code == 2 and "--http-client applies to the openai backend" in err
    code, _, err = cli("rerank", *out, "--window-size", "10", "--step", "10", *_model(server))
    assert code == 2 and "step" in err


BRIGHT_MINI = Path(__file__).resolve().parents[1] / "evaluation" / "fixtures" / "bright_mini"


def test_bench_bright_fixture_excludes_before_reranking(cli, server, tmp_path):
    """The committed BRIGHT-shaped fixture with a ``<task>/corpus.jsonl`` folder: excluded documents
    never reach the model or the run; the summary averages the tasks; ``eval --compare`` reads the outputs."""
    before = len(server.chat_requests)
    out = tmp_path / "bright"
    code, stdout, err = cli(
        "bench", "--dataset", BRIGHT_MINI / "bright.jsonl", "--corpus", BRIGHT_MINI / "corpus", "--out", out,
        *_model(server),
    )  # fmt: skip
    assert code == 0, err
    prompts = [m["content"] for r in server.chat_requests[before:] for m in r["messages"]]
    assert len(server.chat_requests) - before == 3  # one window per query
    assert not any("copied from the question page" in p for p in prompts)
    for task in ("bright_biology", "bright_pony"):
        assert "Leaked_answer" not in (out / task / "run.trec").read_text()
        assert "Leaked_answer" not in (out / task / "traces.jsonl").read_text()
    summary = json.loads((out / "metrics.json").read_text())
    # The lexical server puts every gold document first: nDCG@10 = 1 after reranking.
    assert summary["average"]["reranked"]["ndcg@10"] == pytest.approx(1.0)
    assert summary["average"]["first_stage"]["ndcg@10"] < 0.7
    rows = {line.split()[0]: line.split()[1:] for line in stdout.splitlines()[2:]}
    assert rows["average"][1] == "100.00"
    code, stdout, _ = cli(
        "eval", "--compare", out / "bright_biology" / "first_stage.trec", out / "bright_biology" / "run.trec",
        "--dataset", f"{BRIGHT_MINI / 'bright.jsonl'}:biology", "--json",
    )  # fmt: skip
    data = json.loads(stdout)
    assert code == 0 and data["b"]["ndcg@10"] == 1.0 and data["tests"]["ndcg@10"]["n"] == 2
    assert data["a"]["ndcg@10"] == round(summary["datasets"]["bright/biology"]["first_stage"]["ndcg@10"], 4)


def test_bench_from_trec_files_then_compare_with_plot(cli, server, dl19, tmp_path):
    """bench over --run (gzip) --queries --corpus --qrels, then ``eval --compare`` of its two runs."""
    qids = dl19.qids[:4]
    write_run(tmp_path / "bm25.trec.gz", {q: [(c.docid, c.score) for c in dl19.candidates[q][:30]] for q in qids})
    (tmp_path / "queries.jsonl").write_text(
        "".join(json.dumps({"qid": q, "query": dl19.queries[q]}) + "\n" for q in qids)
    )
    with open(tmp_path / "collection.tsv", "w") as corpus:
        for q in qids:
            for c in dl19.candidates[q][:30]:
                corpus.write(f"{c.docid}\t{' '.join(c.text.split())}\n")
    write_qrels(tmp_path / "qrels.txt", {q: dl19.qrels[q] for q in qids})
    out = tmp_path / "bench"
    code, _, err = cli(
        "bench", "--run", tmp_path / "bm25.trec.gz", "--queries", tmp_path / "queries.jsonl",
        "--corpus", tmp_path / "collection.tsv", "--qrels", tmp_path / "qrels.txt", "--out", out,
        "--metrics", "ndcg@10,map", *_model(server),
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["first_stage.trec", "metrics.json", "run.trec", "traces.jsonl"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "bm25" and metrics["queries"] == 4
    assert metrics["cost"]["calls"] == 4 * 2  # 30 candidates: windows [10,30) and [0,20)
    assert len((out / "traces.jsonl").read_text().splitlines()) == 8
    png = tmp_path / "diff.png"
    code, stdout, err = cli(
        "eval", "--compare", out / "first_stage.trec", out / "run.trec", "--qrels", tmp_path / "qrels.txt",
        "--metrics", "ndcg@10,map", "--plot", png, "--per-query",
    )  # fmt: skip
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"plot: {png}" in err
    table = stdout.split("\n\n")
    assert table[0].splitlines()[0].split() == ["ndcg@10"] and len(table[0].splitlines()) == 2 + 4
    means = {line.split()[1]: line.split()[2:] for line in stdout.splitlines() if line[:2] in ("A ", "B ")}
    assert float(means["first_stage.trec"][0]) == pytest.approx(metrics["first_stage"]["ndcg@10"], abs=1e-4)
    assert float(means["run.trec"][1]) == pytest.approx(metrics["reranked"]["map"], abs=1e-4)
    assert any(line.startswith("ndcg@10 ") and line.endswith("(4)") for line in stdout.splitlines())


def test_reranker_flags_come_from_the_settings(capsys):
    """Every CLI setting is a flag with its default and help; the values reach Reranker.config as given."""
    from reasonrank.cli.main import build_parser, main
    from reasonrank.cli.rerank import build_reranker
    from reasonrank.core.config import iter_settings

    with pytest.raises(SystemExit):
        main(["rerank", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name, default, meta in iter_settings():
        flag = "--" + name.replace("_", "-")
        assert (flag in help_text) == meta["cli"], flag
        if meta["cli"] and default is not None:
            assert f"(default: {default}" in help_text
            assert " ".join(meta["help"].split()) in help_text
    parser = build_parser()
    base = ["rerank", "--dataset", "dl19", "--output", "x.trec", "--base-url", "http://x/v1"]
    defaults = build_reranker(parser.parse_args(base))
    assert defaults.config == type(defaults.config)(base_url="http://x/v1")
    args = parser.parse_args(
        [*base, "--max-passage-tokens", "0", "--temperature", "0.3", "--top-k", "5", "--seed", "3",
         "--strategy", "tournament", "--prompt-mode", "qwen3", "--concurrency", "2", "--http-client", "aiohttp"]
    )  # fmt: skip
    rr = build_reranker(args)
    assert rr.max_passage_tokens is None and rr.config.max_passage_tokens is None  # 0: no truncation
    assert (rr.sampling.temperature, rr.sampling.top_k, rr.sampling.seed) == (0.3, 5, 3)
    assert rr.strategy.name == "tournament" and rr.prompt_mode.value == "qwen3"
    assert rr.config.backend_kwargs == {"concurrency": 2, "http_client": "aiohttp"}
