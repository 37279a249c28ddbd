"""End-to-end synthesis against a real OpenAI-compatible teacher server on 127.0.0.1.

The teacher (:class:`reasonrank.testing.teacher.TeacherServer`) answers both prompts
deterministically and injects malformed answers, HTTP 500s and dropped connections on request; the
pipeline talks to it through the core's OpenAI backend, as it would to DeepSeek-R1 or a vLLM server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasonrank.core.passages import clean_passage
from reasonrank.synthesis import (
    BM25Retriever,
    SynthesisConfig,
    Synthesizer,
    load_corpus,
    load_queries,
)
from reasonrank.testing import lexical_ranking
from reasonrank.testing.teacher import TeacherServer
from reasonrank.training.ranking_metrics import ndcg_at_k

FIXTURES = Path(__file__).parent / "synthesis_fixtures"
FIELDS = {"dataset", "qid", "initial_list", "final_list", "reasoning", "relevant_docids"}


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(FIXTURES / "corpus.jsonl")


@pytest.fixture(scope="module")
def retriever(corpus):
    return BM25Retriever(corpus)


@pytest.fixture
def queries(retriever):
    qs = load_queries(FIXTURES / "queries.jsonl")
    retriever.fill_pools(qs, 40)
    return qs


@pytest.fixture
def teacher():
    with TeacherServer() as server:
        yield server


def run(server, queries, corpus, out, **config):
    from reasonrank.core.backends.openai import OpenAIBackend

    backend = OpenAIBackend(
        "teacher-test", base_url=server.base_url, api_key="test", max_retries=0, concurrency=4, truncation="words"
    )
    config.setdefault("concurrency", 4)
    try:
        return Synthesizer(backend, SynthesisConfig(**config)).run(queries, corpus, out, show_progress=False)
    finally:
        backend.close()


def read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def complete_records(path: Path) -> int:
    """Whole JSON lines in a file a killed process was writing (a cut last line does not count)."""
    if not path.exists():
        return 0
    count = 0
    for line in path.read_text(encoding="utf-8").split("\n")[:-1]:
        try:
            json.loads(line)
            count += 1
        except json.JSONDecodeError:
            pass
    return count


def check_released_format(out: Path) -> list[dict]:
    """Every record is in the released format and every id it uses has its text stored."""
    records = read(out / "training_data_all.jsonl")
    queries = {r["id"]: r["text"] for r in read(out / "id_query" / "queries.jsonl")}
    docs = {r["id"]: r["text"] for r in read(out / "id_doc" / "docs.jsonl")}
    for r in records + read(out / "dropped.jsonl"):
        assert FIELDS <= set(r)
        assert r["qid"] in queries
        assert sorted(r["final_list"]) == sorted(r["initial_list"]) and len(set(r["initial_list"])) == len(
            r["initial_list"]
        )
        assert set(r["relevant_docids"]) <= set(r["initial_list"])
        assert all(d in docs for d in r["initial_list"])
    for r in records:
        assert set(r) == FIELDS and r["reasoning"] and r["relevant_docids"]
    return records


def test_happy_path_writes_the_released_format(teacher, queries, corpus, tmp_path):
    report = run(teacher, queries, corpus, tmp_path)
    records = check_released_format(tmp_path)
    by_qid = {r["qid"]: r for r in records}

    # bee/sky/tide: mined by the teacher (gold answers); pylist: qrels (no answer); mona: no positive
    assert set(by_qid) == {"bee", "sky", "tide", "pylist"}
    assert set(by_qid["bee"]["relevant_docids"]) == {"bee1", "bee2"}
    assert set(by_qid["sky"]["relevant_docids"]) == {"sky1", "sky2"}
    assert set(by_qid["tide"]["relevant_docids"]) == {"tide1", "tide2"}
    assert by_qid["pylist"]["relevant_docids"] == ["py1"]
    text_of = {q.qid: q.query for q in queries}
    for r in records:  # the teacher's list is the lexical ranking of the presented passages
        passages = [clean_passage(corpus[d]) for d in r["initial_list"]]
        assert r["final_list"] == [r["initial_list"][i] for i in lexical_ranking(text_of[r["qid"]], passages)]
        assert r["reasoning"].startswith("Passage by passage")
    [dropped] = read(tmp_path / "dropped.jsonl")
    assert (dropped["qid"], dropped["reason"]) == ("mona", "no_positives")

    # 4 mining requests (pylist used its qrels), 4 ranking requests (mona had nothing to rank)
    assert teacher.count("mining") == 4 and teacher.count("ranking") == 4
    mining = [b for k, b in teacher.requests if k == "mining"]
    assert any("Reference answer: Worker bees collect nectar" in b["messages"][0]["content"] for b in mining)
    ranking = [b for k, b in teacher.requests if k == "ranking"]
    assert all("Reference answer" not in m["content"] for b in ranking for m in b["messages"])  # no gold answer

    assert (report.kept, report.dropped, report.failed) == (4, 1, 0)
    assert report.domains["biology"].kept == 1 and report.domains["biology"].dropped["no_positives"] == 1
    assert report.domains["earth_science"].kept == 2 and report.domains["stackoverflow"].kept == 1
    assert report.usage.requests == 8 and report.usage.prompt_tokens > 0 and report.usage.completion_tokens > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["kept"] == 4 and summary["domains"]["biology"]["dropped_by_reason"] == {"no_positives": 1}
    log = read(tmp_path / "synthesis_log.jsonl")
    assert sorted(e["qid"] for e in log) == sorted(q.qid for q in queries)

    # idempotent: a second run does nothing
    again = run(teacher, queries, corpus, tmp_path)
    assert (again.kept, again.dropped, again.skipped) == (0, 0, 5) and teacher.count("ranking") == 4
    assert read(tmp_path / "training_data_all.jsonl") == records


def test_output_loads_into_the_sft_stage(teacher, queries, corpus, tmp_path):
    """The training stage's own loader reads the output, and builds SFT rows from it."""
    from reasonrank.training.data import load_training_jsonl, self_consistency_filter, sft_rows

    run(teacher, queries, corpus, tmp_path)
    records = load_training_jsonl(tmp_path / "training_data_all.jsonl")
    assert sorted(r.qid for r in records) == ["bee", "pylist", "sky", "tide"]
    bee = next(r for r in records if r.qid == "bee")
    assert bee.query == "how do bees make honey"
    assert {"title": "Honey production", "text": corpus["bee1"]["text"]} in bee.passages
    kept, report = self_consistency_filter(records, 0.4)  # already filtered: the same verdict
    assert len(kept) == len(records) and report.total_dropped == 0
    rows = sft_rows(records)
    for record, row in zip(records, rows):
        answer = " > ".join(f"[{i}]" for i in record.answer_ids)
        assert row["completion"][0]["content"] == f"<think> {record.reasoning} </think> <answer> {answer} </answer>"
        assert row["prompt"][-1]["content"].startswith(f"I will provide you with {len(record.docids)} passages")


def test_reasoning_content_and_cost(queries, corpus, tmp_path):
    with TeacherServer(reasoning_content=True, reasoning="Chain in reasoning_content.") as server:
        report = run(server, queries[:1], corpus, tmp_path, price_in=1.0, price_out=4.0)
    [record] = read(tmp_path / "training_data_all.jsonl")
    assert record["reasoning"] == "Chain in reasoning_content."
    expected = (report.usage.prompt_tokens * 1.0 + report.usage.completion_tokens * 4.0) / 1e6
    assert report.cost == pytest.approx(expected) and report.cost > 0
    assert "$" in report.format()


def test_self_consistency_filter(queries, corpus, tmp_path):
    def worst_first(query, passages):  # the teacher ranks the bee list backwards
        order = lexical_ranking(query, passages)
        return order[::-1] if "bees" in query else order

    with TeacherServer(rank=worst_first) as server:
        report = run(server, queries, corpus, tmp_path, threshold=0.9)
    kept = read(tmp_path / "training_data_all.jsonl")
    dropped = [r for r in read(tmp_path / "dropped.jsonl") if r["reason"] == "filtered"]
    assert "bee" in {r["qid"] for r in dropped}
    for r in kept:
        assert ndcg_at_k(r["final_list"], r["relevant_docids"], k=10) >= 0.9
    for r in dropped:
        assert r["ndcg@10"] == pytest.approx(ndcg_at_k(r["final_list"], r["relevant_docids"], k=10), abs=1e-6)
        assert r["ndcg@10"] < 0.9
    assert sum(d.dropped["filtered"] for d in report.domains.values()) == len(dropped)
    assert report.domains["biology"].dropped["filtered"] >= 1
    assert "filtered=" in report.format()


def test_malformed_answers_are_retried_then_dropped(teacher, queries, corpus, tmp_path):
    bee, sky, tide, pylist = queries[:4]

    # a malformed mining answer, then a good one: re-asked, kept
    teacher.answers["mining"].extend(["I cannot decide.", "<think>ok</think>Relevant: [1], [2]"])
    run(teacher, [bee], corpus, tmp_path / "a", concurrency=1)
    [entry] = read(tmp_path / "a" / "synthesis_log.jsonl")
    assert entry["mining"]["attempts"] == 2 and entry["status"] == "kept"

    # ids outside the list are ignored and recorded
    teacher.answers["mining"].append("<think>ok</think>Relevant: [99], [1], [2], [0]")
    run(teacher, [sky], corpus, tmp_path / "b", concurrency=1)
    [entry] = read(tmp_path / "b" / "synthesis_log.jsonl")
    assert entry["mining"]["ignored_ids"] == [99, 0]
    [record] = check_released_format(tmp_path / "b")
    assert set(record["relevant_docids"]) == set(sky.pool[:2])

    # mining unreadable twice: dropped, nothing ranked
    teacher.answers["mining"].extend(["no idea", "still no idea"])
    before = teacher.count("ranking")
    run(teacher, [tide], corpus, tmp_path / "c", concurrency=1)
    assert teacher.count("ranking") == before

    # a ranking without any id twice: dropped; a ranking without reasoning twice: dropped
    teacher.answers["ranking"].extend(["<think>x</think>I refuse.", "<think>x</think>Nope."])
    run(teacher, [pylist], corpus, tmp_path / "d", concurrency=1)
    teacher.answers["ranking"].extend(["[1] > [2]", "[2] > [1]"])
    run(teacher, [bee], corpus, tmp_path / "e", concurrency=1)

    reasons = {name: [r["reason"] for r in read(tmp_path / name / "dropped.jsonl")] for name in "cde"}
    assert reasons == {"c": ["unparsable_mining"], "d": ["unparsable_ranking"], "e": ["no_reasoning"]}
    [d] = read(tmp_path / "d" / "dropped.jsonl")
    assert d["final_list"] == d["initial_list"]  # nothing invented, nothing lost
    for name in "abcde":
        check_released_format(tmp_path / name)


def test_server_failures_leave_queries_for_the_next_run(teacher, queries, corpus, tmp_path):
    teacher.failing_queries.add("what causes ocean tides")
    teacher.faults.extend(["500"])  # one more failure hits whichever request comes first
    first = run(teacher, queries, corpus, tmp_path, concurrency=1)
    assert first.failed == 2 and first.domains["earth_science"].failed >= 1
    finished = {r["qid"] for r in read(tmp_path / "training_data_all.jsonl") + read(tmp_path / "dropped.jsonl")}
    assert "tide" not in finished and len(finished) == 3
    failures = [e for e in read(tmp_path / "synthesis_log.jsonl") if e["status"] == "failed"]
    assert len(failures) == 2 and all(e["reason"] for e in failures)
    assert "run again to retry" in first.format()

    teacher.failing_queries.clear()
    teacher.faults.extend(["drop"])  # a dropped connection fails its query too
    second = run(teacher, queries, corpus, tmp_path, concurrency=1)
    assert second.skipped == 3 and second.failed == 1
    third = run(teacher, queries, corpus, tmp_path, concurrency=1)
    assert third.skipped == 4 and third.failed == 0 and third.kept + third.dropped == 1
    records = check_released_format(tmp_path)
    qids = [r["qid"] for r in records + read(tmp_path / "dropped.jsonl")]
    assert sorted(qids) == sorted(q.qid for q in queries)  # each once


def test_concurrency_is_bounded(queries, corpus, tmp_path):
    with TeacherServer(delay=0.05) as server:
        report = run(server, queries, corpus, tmp_path, concurrency=2)
    assert report.kept + report.dropped == len(queries)
    assert 1 <= server.max_in_flight <= 2


def test_dl19_example_runs_offline_and_hands_off_to_sft(shared_data, tmp_path):
    example = Path(__file__).resolve().parents[2] / "examples" / "synthesize_dl19.py"
    out = tmp_path / "dl19"
    done = subprocess.run(
        [sys.executable, str(example), "--queries", "3", "--out", str(out), "--data", str(shared_data)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "msmarco-dl19" in done.stdout
    records = check_released_format(out)
    finished = records + read(out / "dropped.jsonl")
    assert len(finished) == 3 and all(len(r["initial_list"]) == 20 for r in finished)
    dl19 = [json.loads(line) for line in (shared_data / "dl19_bm25_top100.jsonl").read_text().splitlines()[:3]]
    for r, source in zip(sorted(finished, key=lambda r: r["qid"]), sorted(dl19, key=lambda d: d["qid"])):
        assert set(r["relevant_docids"]) <= {d for d, g in source["qrels"].items() if g >= 2}
    if records:
        assert f"SFT hand-off: {len(records)} records" in done.stdout
        assert "SFT: 3 steps" in done.stdout and (out / "sft" / "config.json").is_file()


def test_resume_after_a_killed_run(tmp_path):
    """Kill -9 a CLI run mid-way; the re-run finishes the rest without duplicates."""
    out = tmp_path / "out"
    qfile = tmp_path / "queries.jsonl"
    topics = ["honey bees nectar", "ocean tides moon", "blue sky scattering", "python list comprehension"]
    qfile.write_text(
        "".join(json.dumps({"id": f"q{i}", "query": topics[i % 4], "answer": topics[i % 4]}) + "\n" for i in range(12))
    )
    with TeacherServer(delay=0.15) as server:
        cmd = [
            sys.executable,
            "-m",
            "reasonrank.cli.main",
            "synthesize",
            "--queries",
            str(qfile),
            "--corpus",
            str(FIXTURES / "corpus.jsonl"),
            "--out",
            str(out),
            "--base-url",
            server.base_url,
            "--model",
            "teacher-test",
            "--api-key",
            "k",
            "--concurrency",
            "2",
            "--max-retries",
            "0",
            "--no-progress",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        data = out / "training_data_all.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if data.exists() and len(data.read_text().splitlines()) >= 2:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        interrupted = complete_records(data) + complete_records(out / "dropped.jsonl")
        assert 2 <= interrupted < 12

        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "summary.json").read_text())["skipped"] == interrupted
    finished = read(data) + read(out / "dropped.jsonl")
    assert sorted(r["qid"] for r in finished) == sorted(f"q{i}" for i in range(12))
    ids = [r["id"] for r in read(out / "id_doc" / "docs.jsonl")]
    assert len(ids) == len(set(ids))
    check_released_format(out)


def test_cli_with_the_dataset_shape_and_bad_input(tmp_path, capsys):
    from reasonrank.cli.main import main

    dataset = tmp_path / "web.jsonl"
    corpus = load_corpus(FIXTURES / "corpus.jsonl")
    rows = [
        {
            "qid": "b1",
            "query": "how do bees make honey",
            "candidates": [
                {"docid": d, "score": 1.0, "text": corpus[d]["text"]} for d in ("bee3", "bee1", "bee4", "bee2", "misc1")
            ],
            "qrels": {"bee1": 2, "bee2": 1, "bee3": 0},
        },
        {
            "qid": "b2",
            "query": "why is the sky blue",
            "candidates": [{"docid": d, "score": 1.0, "text": corpus[d]["text"]} for d in ("sky3", "sky1")],
            "qrels": {"sky1": 1},
        },
    ]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with TeacherServer() as server:
        code = main(
            [
                "synthesize",
                "--dataset",
                str(dataset),
                "--out",
                str(tmp_path / "out"),
                "--base-url",
                server.base_url,
                "--model",
                "teacher-test",
                "--limit",
                "1",
                "--list-size",
                "4",
                "--seed",
                "3",
                "--no-progress",
            ]
        )
        assert server.count("mining") == 0  # no gold answer, qrels given: the qrels are the positives
    assert code == 0
    [record] = check_released_format(tmp_path / "out")
    assert record["dataset"] == "web" and set(record["relevant_docids"]) == {"bee1", "bee2"}
    assert len(record["initial_list"]) == 4 and "bee3" in record["initial_list"]  # the top-ranked negative
    assert "web" in capsys.readouterr().out

    code = main(
        [
            "synthesize",
            "--dataset",
            str(dataset),
            "--queries",
            str(dataset),
            "--out",
            str(tmp_path / "x"),
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
        ]
    )
    assert code == 2 and "either --dataset" in capsys.readouterr().err
    code = main(
        [
            "synthesize",
            "--queries",
            str(tmp_path / "missing.jsonl"),
            "--corpus",
            str(dataset),
            "--out",
            str(tmp_path / "x"),
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
        ]
    )
    assert code == 2 and "missing.jsonl" in capsys.readouterr().err


def test_a_backend_that_cannot_work_stops_the_run_before_any_request(queries, corpus, tmp_path):
    from reasonrank.testing import FunctionBackend

    class NoTokenizer(FunctionBackend):
        def truncate(self, texts, max_tokens):
            raise OSError("tokenizer 'x' not found")

    backend = NoTokenizer()
    with pytest.raises(OSError, match="tokenizer 'x' not found"):
        Synthesizer(backend, SynthesisConfig()).run(queries, corpus, tmp_path, show_progress=False)
    assert backend.calls == [] and not (tmp_path / "training_data_all.jsonl").exists()
