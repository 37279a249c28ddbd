"""Run the real ``reasonrank`` entry point in-process."""

from pathlib import Path

import pytest

from reasonrank.cli import main as cli_main

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture
def cli(monkeypatch, capsys):
    """``cli(*argv) -> (exit status, stdout, stderr)``; short dataset names resolve in ``../shared/data``."""
    if SHARED_DATA.is_dir():
        monkeypatch.setenv("REASONRANK_DATA", str(SHARED_DATA))

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = cli_main.main([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke
