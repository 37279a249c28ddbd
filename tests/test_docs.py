"""The README and docs/ run as written: every Python code block executes against a local ranking server.

``$REASONRANK_BASE_URL`` points at a :class:`~reasonrank.testing.RankingServer` on 127.0.0.1 (it ranks by
word overlap with the query), which is how the README's blocks reach "your" server. A block that needs
what CI cannot have (a GPU, hours of training) is fenced as ``python test="skip" reason="..."``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_examples import CodeExample, EvalExample, find_examples

from reasonrank.core.config import iter_settings
from reasonrank.testing import RankingServer

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = [ex for ex in find_examples(*PAGES) if ex.prefix.split()[:1] in (["python"], ["py"])]


@pytest.fixture(scope="module")
def server():
    with RankingServer(model="liuwenhan/reasonrank-7B", tokenize=True) as running:
        yield running


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda ex: f"{Path(ex.path).name}:{ex.start_line}")
def test_code_block_runs(example: CodeExample, eval_example: EvalExample, server, monkeypatch, tmp_path):
    settings = example.prefix_settings()
    if settings.get("test") == "skip":
        assert settings.get("reason"), f"{example}: a skipped block must say why (reason=...)"
        pytest.skip(settings["reason"])
    monkeypatch.setenv("REASONRANK_BASE_URL", server.base_url)
    monkeypatch.delenv("REASONRANK_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    eval_example.run(example)


def test_readme_lists_every_setting():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name, _, _ in iter_settings() if f"`{name}`" not in readme]
    assert not missing, f"README's settings table lacks {missing}"
