"""``reasonrank demo`` on the real SmolLM2 model (tiny token budget), and its input checks."""

from __future__ import annotations

import json

import pytest

from reasonrank.cli.demo import DISCLAIMER, load_demo_queries
from reasonrank.cli.main import main


def test_bundled_queries_are_well_formed():
    queries = load_demo_queries()
    assert 2 <= len(queries) <= 3
    for q in queries:
        assert 4 <= len(q.passages) <= 6 and q.relevant


def test_demo_prints_output_repairs_order_and_disclaimer(smollm2_path, capsys):
    assert main(["demo", "--max-new-tokens", "4", "--show-prompt"]) == 0
    out = capsys.readouterr().out
    assert "Prompt of the first window:\n<|im_start|>system\nYou are RankLLM" in out
    for q in load_demo_queries():
        assert f": {q.query}" in out
    assert out.count("model output (") == 3
    assert out.count("repairs: ") == 3
    assert out.count("new order (* = relevant):") == 3
    assert "1. (was #" in out and "5. (was #" in out
    assert DISCLAIMER in out
    assert "plumbing check" in out and "liuwenhan/reasonrank-7B" in out and "vllm serve" in out
    assert "--backend openai --base-url" in out


def test_demo_with_own_queries_file(smollm2_path, tmp_path, capsys):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([{"query": "capital of France", "passages": ["Paris is the capital.", "Cats purr."]}]))
    assert main(["demo", "--queries", str(path), "--max-new-tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert "Query 1: capital of France" in out and "Query 2" not in out
    assert "(was #1) Paris is the capital." in out or "(was #2) Cats purr." in out


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "not valid JSON"),
        ("[]", "non-empty list of queries"),
        ('[{"query": "q", "passages": []}]', "non-empty 'passages'"),
        ('[{"query": " ", "passages": ["a"]}]', "non-empty 'query'"),
        ('[{"query": "q", "passages": ["a"], "relevant": [3]}]', "'relevant'"),
    ],
)
def test_demo_rejects_bad_queries_files(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["demo", "--queries", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_demo_rejects_bad_options(capsys):
    assert main(["demo", "--max-new-tokens", "0"]) == 2
    assert "--max-new-tokens" in capsys.readouterr().err
    assert main(["demo", "--base-url", "http://localhost:1/v1"]) == 2
    assert "--backend openai" in capsys.readouterr().err


def test_demo_against_an_openai_compatible_server(capsys):
    """With a model that follows the format, the demo shows a real reordering and no repairs."""
    pytest.importorskip("reasonrank.core.backends.openai")
    from reasonrank.testing import RankingServer

    with RankingServer(rank=lambda query, passages: list(reversed(range(len(passages))))) as server:
        code = main(
            [
                "demo",
                "--backend",
                "openai",
                "--base-url",
                server.base_url,
                "--model",
                "reasonrank-test",
                "--show-prompt",
            ]
        )
    assert code == 0
    out = capsys.readouterr().out
    assert "Prompt of the first window:\n[system]\n" in out and "\n\n[user]\nI will provide you with 5 passages" in out
    assert out.count("repairs: none (well-formed answer)") == 3
    assert out.count("1. (was #5)") == 3  # every bundled query has 5 passages, reversed
    assert "<answer>[5] > [4] > [3] > [2] > [1]</answer>" in out
    assert "plumbing check" not in out  # the SmolLM2 disclaimer is for the default model only
    assert "below the paper's 3172" in out
