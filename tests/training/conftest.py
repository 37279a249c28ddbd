"""Shared fixtures for the training tests: one tiny Qwen3 + locally trained tokenizer per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random tiny Qwen3 with a local BPE tokenizer saved on disk (loads with from_pretrained)."""
    pytest.importorskip("trl")
    from reasonrank.testing.toy import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    """A toy task in the released layout: training_data_all.jsonl + id_query/ + id_doc/."""
    from reasonrank.testing.toy import make_task, write_task

    return write_task(make_task(16, seed=3), tmp_path_factory.mktemp("toy") / "data")
