"""``reasonrank eval``: text and JSON output, per-query, comparisons with plots, and input errors."""

import gzip
import json
import math
import re
from pathlib import Path

import pytest

from reasonrank.evaluation import load_dataset, write_qrels, write_run


@pytest.fixture(scope="module")
def dl19_files(shared_data, tmp_path_factory):
    """DL19's BM25 run (gzip) and qrels as TREC files, and a run with the top-10 reversed."""
    ds = load_dataset(str(shared_data / "dl19_bm25_top100.jsonl"))
    folder = tmp_path_factory.mktemp("dl19")
    bm25 = {q: [(c.docid, c.score) for c in cs] for q, cs in ds.candidates.items()}
    worse = {q: list(reversed(docs[:10])) + docs[10:] for q, docs in bm25.items()}
    return {
        "run": write_run(folder / "bm25.trec.gz", bm25, "bm25"),
        "worse": write_run(folder / "worse.trec", worse, "worse", rescore=True),
        "qrels": write_qrels(folder / "qrels.txt", ds.qrels),
    }


def test_eval_text_and_json(cli, dl19_files):
    code, out, err = cli("eval", "--run", dl19_files["run"], "--qrels", dl19_files["qrels"])
    assert code == 0
    assert out.splitlines()[0].split() == ["run", "ndcg@10"]
    assert out.splitlines()[1].split() == ["bm25.trec.gz", "0.5058"]
    assert "43 queries evaluated" in err
    code, out, _ = cli("eval", "--run", dl19_files["run"], "--qrels", dl19_files["qrels"], "--json")
    assert json.loads(out) == {"ndcg@10": 0.5058}
    code, out, _ = cli(
        "eval", "--run", dl19_files["run"], "--dataset", "dl19", "--json", "--metrics", "ndcg@10,recall@100"
    )
    assert json.loads(out) == {"ndcg@10": 0.5058, "recall@100": 0.4531}


def test_eval_dataset_first_stage_and_bright_table(cli, shared_data):
    code, out, _ = cli("eval", "--dataset", "dl20", "--json")
    assert code == 0 and json.loads(out) == {"ndcg@10": 0.4796}
    code, out, _ = cli("eval", "--dataset", "bright:biology,pony", "--percent", "--digits", "2")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert rows == {"bright/biology": ["43.49"], "bright/pony": ["19.55"], "average": ["31.52"]}


def test_eval_per_query(cli, dl19_files):
    code, out, _ = cli("eval", "--run", dl19_files["run"], "--dataset", "dl19", "--per-query", "--json")
    data = json.loads(out)
    assert data["queries"] == 43 and len(data["per_query"]) == 43
    assert data["aggregate"] == {"ndcg@10": 0.5058}
    code, out, _ = cli("eval", "--run", dl19_files["run"], "--dataset", "dl19", "--per-query")
    assert "264014" in out and out.splitlines()[0].split()[0] == "qid"


def test_eval_compare_with_plot(cli, dl19_files, tmp_path):
    png = tmp_path / "diff.png"
    code, out, err = cli(
        "eval", "--compare", dl19_files["run"], dl19_files["worse"], "--qrels", dl19_files["qrels"], "--plot", png
    )
    assert code == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    test_line = next(line for line in out.splitlines() if line.startswith("ndcg@10"))
    assert test_line.split()[1].startswith("-")  # the reversed top-10 is worse
    code, out, _ = cli("eval", "--compare", dl19_files["run"], dl19_files["worse"], "--dataset", "dl19", "--json")
    data = json.loads(out)
    assert data["a"]["ndcg@10"] == 0.5058 and data["difference"]["ndcg@10"] < 0
    assert data["tests"]["ndcg@10"]["n"] == 43 and data["tests"]["ndcg@10"]["t_pvalue"] < 0.05


def test_eval_missing_and_unjudged_queries(cli, dl19_files, tmp_path):
    run = tmp_path / "partial.trec"
    with gzip.open(dl19_files["run"], "rt") as handle:
        lines = handle.read().splitlines()
    first_qid = lines[0].split()[0]
    run.write_text("\n".join(line for line in lines if line.split()[0] != first_qid) + "\nnew Q0 x 1 1.0 t\n")
    code, out, err = cli("eval", "--run", run, "--qrels", dl19_files["qrels"])
    assert code == 0 and "42 queries evaluated" in err
    assert "1 without judgments skipped (new)" in err and "1 judged queries not in the run" in err
    _, skip, _ = cli("eval", "--run", run, "--qrels", dl19_files["qrels"], "--json")
    _, zero, _ = cli("eval", "--run", run, "--qrels", dl19_files["qrels"], "--json", "--missing", "zero")
    assert json.loads(zero)["ndcg@10"] < json.loads(skip)["ndcg@10"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("q Q0 d 1 1.0 t\nq Q0 e 2\n", r"bad\.trec:2: expected 6 fields"),
        ("", r"bad\.trec: the file is empty"),
        ("q Q0 d 1 1.0 t\n", "no query of the run has judgments"),
    ],
)
def test_eval_bad_run_is_a_clear_error(cli, dl19_files, tmp_path, content, message):
    bad = tmp_path / "bad.trec"
    bad.write_text(content)
    code, out, err = cli("eval", "--run", bad, "--qrels", dl19_files["qrels"])
    assert code == 2 and out == ""
    assert err.startswith("reasonrank eval: error:")
    assert re.search(message, err)


def test_eval_usage_errors(cli, dl19_files, tmp_path):
    assert cli("eval", "--run", dl19_files["run"])[0] == 2  # no qrels
    code, _, err = cli("eval", "--run", dl19_files["run"], "--dataset", "dl19", "--metrics", "ndcg@ten")
    assert code == 2 and "unknown metric 'ndcg@ten'" in err
    code, _, err = cli("eval", "--run", dl19_files["run"], "--dataset", "dl19", "--plot", tmp_path / "x.png")
    assert code == 2 and "--plot needs --compare" in err
    code, _, err = cli("eval", "--run", dl19_files["run"], "--dataset", "bright")
    assert code == 2 and "bright:biology" in err
    code, _, err = cli("eval", "--run", tmp_path / "none.trec", "--dataset", "dl19")
    assert code == 2 and "no such file" in err


BRIGHT_MINI = Path(__file__).resolve().parents[1] / "evaluation" / "fixtures" / "bright_mini"


def test_eval_bright_fixture_tasks_exclusions_and_average(cli, tmp_path):
    """A BRIGHT-shaped file: per-task JSON with the average; excluded ids never count (no shared data)."""
    spec = BRIGHT_MINI / "bright.jsonl"
    code, out, _ = cli("eval", "--dataset", spec, "--json", "--digits", "6")
    data = json.loads(out)
    assert code == 0 and set(data) == {"bright/biology", "bright/pony", "average"}
    pony = 1 / math.log2(3)  # the gold document at rank 2
    assert data["bright/pony"]["ndcg@10"] == pytest.approx(pony, abs=1e-6)
    assert data["average"]["ndcg@10"] == pytest.approx(
        (data["bright/biology"]["ndcg@10"] + data["bright/pony"]["ndcg@10"]) / 2, abs=1e-6
    )
    # A run that puts the excluded id first scores as if it were not there.
    run = tmp_path / "leaky.trec"
    run.write_text(
        "0 Q0 insects_light/Leaked_answer.txt 1 9 x\n0 Q0 insects_light/Phototaxis_0.txt 2 8 x\n"
        "1 Q0 birds_migration/Magnetoreception_0.txt 1 9 x\n"
    )
    code, out, _ = cli("eval", "--run", run, "--dataset", f"{spec}:biology", "--json", "--metrics", "p@1")
    assert code == 0 and json.loads(out) == {"p@1": 1.0}
    code, out, _ = cli("eval", "--run", run, "--qrels", _bright_qrels(tmp_path), "--json", "--metrics", "p@1")
    assert json.loads(out) == {"p@1": 0.5}  # plain qrels know nothing of the exclusion


def _bright_qrels(tmp_path):
    from reasonrank.evaluation import load_bright

    return write_qrels(tmp_path / "bio.qrels", load_bright(BRIGHT_MINI / "bright.jsonl", ["biology"])["biology"].qrels)


def test_eval_gzip_qrels_and_malformed_qrels(cli, tmp_path):
    run = tmp_path / "run.trec"
    run.write_text("1 Q0 a 1 2.0 x\n1 Q0 b 2 1.0 x\n2 Q0 c 1 1.0 x\n")
    qrels = tmp_path / "qrels.gz"
    qrels.write_bytes(gzip.compress(b"1 0 b 1\n2 0 c 2\n"))
    code, out, _ = cli("eval", "--run", run, "--qrels", qrels, "--json", "--metrics", "p@1,mrr")
    assert code == 0 and json.loads(out) == {"p@1": 0.5, "mrr": 0.75}
    bad = tmp_path / "bad.qrels"
    bad.write_text("1 0 b 1\n\n2 0 c\n")
    code, out, err = cli("eval", "--run", run, "--qrels", bad)
    assert code == 2 and out == ""
    assert re.search(r"bad\.qrels:3: expected 4 fields 'qid iteration docid grade', got 3: '2 0 c'", err)
    bad_run = tmp_path / "bad.trec.gz"
    bad_run.write_bytes(gzip.compress(b"1 Q0 a 1 2.0 x\n1 Q0 b 2 lots x\n"))
    code, _, err = cli("eval", "--compare", run, bad_run, "--qrels", qrels)
    assert code == 2 and re.search(r"bad\.trec\.gz:2: score 'lots' is not a number", err)


def test_eval_ties_in_a_run_are_broken_like_trec_eval(cli, tmp_path):
    run = tmp_path / "tied.trec"
    run.write_text("1 Q0 a 1 1.0 x\n1 Q0 b 2 1.0 x\n")  # the rank column says a first; trec_eval ranks b first
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("1 0 a 1\n")
    code, out, _ = cli("eval", "--run", run, "--qrels", qrels, "--json", "--metrics", "p@1,recip_rank")
    assert code == 0 and json.loads(out) == {"p@1": 0.0, "recip_rank": 0.5}


def test_a_missing_extra_is_a_clear_error_not_a_traceback(cli, dl19_files, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ir_measures", None)  # as if reasonrank[eval] were not installed
    code, _, err = cli("eval", "--run", dl19_files["run"], "--qrels", dl19_files["qrels"])
    assert code == 2
    assert "pip install 'reasonrank[eval]'" in err and "Traceback" not in err
