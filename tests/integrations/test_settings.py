"""Every RerankerConfig setting, enumerated from the settings object, through each of the three adapters.

Each setting must be accepted under its name (Haystack: ``sampling_top_k`` for the sampling ``top_k``),
reach the adapter's Reranker config, and survive the framework's serialization (secrets left out). A new
setting in ``RerankerConfig`` is picked up here without editing this file.
"""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import types
import typing
from typing import Any

import pytest

from reasonrank import Reranker
from reasonrank.core.config import iter_settings, setting_fields
from reasonrank.integrations.adapter import setting_specs

SECRET_ENV = "REASONRANK_TEST_SAMPLE_KEY"


# Settings whose valid values have a form their type does not say (a cache is a URL-like name).
FORMED = {"cache": "memory", "deadline": 2.5}


def sample(name: str, default: Any, meta: dict[str, Any]) -> Any:
    """A valid value different from the default, from the setting's choices, default or type."""
    if name in FORMED:
        return FORMED[name]
    if meta["choices"]:
        return next(c for c in meta["choices"] if c != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, dict):
        return {"timeout": 5.0}
    if isinstance(default, int):
        return default + 1
    spec = next(s for s in setting_specs() if s.setting == name)
    kinds = typing.get_args(spec.annotation) if isinstance(spec.annotation, types.UnionType) else (spec.annotation,)
    kind = next(k for k in kinds if k is not type(None))
    return {int: 7, float: 0.5, str: f"sample-{name}"}[kind]


SAMPLES = [(name, sample(name, default, meta), meta) for name, default, meta in iter_settings()]
IDS = [name for name, _, _ in SAMPLES]


def test_samples_cover_every_setting():
    assert IDS == [f.name for f in setting_fields()]
    assert all(value != default for (_, value, _), (_, default, _) in zip(SAMPLES, iter_settings()))


def secret_value(value: Any) -> Any:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def check_config(reranker: Reranker, name: str, value: Any) -> None:
    assert getattr(reranker.config, name) == value


# ---------------------------------------------------------------------------- LlamaIndex
@pytest.mark.parametrize(("name", "value", "meta"), SAMPLES, ids=IDS)
def test_llama_index_takes_and_serializes_every_setting(name, value, meta):
    pytest.importorskip("llama_index.core")
    from reasonrank.integrations.llama_index import ReasonRankRerank

    field = ReasonRankRerank.model_fields[name]
    assert field.description.startswith(meta["help"])
    rr = ReasonRankRerank(**{name: value})
    assert secret_value(getattr(rr, name)) == value
    check_config(rr.reranker, name, value)
    clone = ReasonRankRerank.from_json(rr.to_json())
    if meta["secret"]:
        assert name not in rr.to_dict() and clone.api_key is None and value not in rr.to_json()
    else:
        assert getattr(clone, name) == value and clone.to_dict() == rr.to_dict()
    for twin in (pickle.loads(pickle.dumps(rr)), copy.deepcopy(rr)):  # copies keep the secret too
        assert secret_value(getattr(twin, name)) == value
        check_config(twin.reranker, name, value)


# ---------------------------------------------------------------------------- LangChain
@pytest.mark.parametrize(("name", "value", "meta"), SAMPLES, ids=IDS)
def test_langchain_takes_and_serializes_every_setting(name, value, meta):
    pytest.importorskip("langchain_core")
    from reasonrank.integrations.langchain import ReasonRankCompressor

    assert ReasonRankCompressor.model_fields[name].description.startswith(meta["help"])
    comp = ReasonRankCompressor(**{name: value})
    assert secret_value(getattr(comp, name)) == value
    check_config(comp.get_reranker(), name, value)
    dumped = comp.model_dump()
    clone = ReasonRankCompressor(**dumped)
    if meta["secret"]:
        assert name not in dumped and clone.api_key is None and value not in comp.model_dump_json() + repr(comp)
    else:
        assert getattr(clone, name) == value and clone.model_dump() == dumped
        check_config(clone.get_reranker(), name, value)


# ---------------------------------------------------------------------------- Haystack
@pytest.mark.parametrize(("name", "value", "meta"), SAMPLES, ids=IDS)
def test_haystack_takes_and_serializes_every_setting(name, value, meta, monkeypatch):
    pytest.importorskip("haystack")
    from haystack.utils import Secret

    from haystack_integrations.components.rankers.reasonrank import ReasonRankRanker

    param = "sampling_top_k" if name == "top_k" else name
    given = value
    if meta["secret"]:  # a Haystack Secret: serialized as its env var's name, never its value
        monkeypatch.setenv(SECRET_ENV, value)
        given = Secret.from_env_var(SECRET_ENV)
    ranker = ReasonRankRanker(**{param: given})
    check_config(ranker.reranker, name, value)
    data = ranker.to_dict()
    assert data["init_parameters"][param] == (given.to_dict() if meta["secret"] else value)
    if meta["secret"]:
        assert value not in str(data)
    clone = ReasonRankRanker.from_dict(data)
    assert clone.to_dict() == data
    check_config(clone.reranker, name, value)


def test_haystack_top_k_keeps_its_framework_meaning():
    pytest.importorskip("haystack")
    import inspect

    from haystack_integrations.components.rankers.reasonrank import ReasonRankRanker

    params = inspect.signature(ReasonRankRanker.__init__).parameters
    assert list(params)[:3] == ["self", "model", "top_k"] and params["top_k"].default == 10
    ranker = ReasonRankRanker(top_k=3, sampling_top_k=20)
    assert ranker.top_k == 3 and ranker.reranker.config.top_k == 20
    assert {name for name, _, _ in iter_settings()} - {"top_k"} <= set(params)


# ---------------------------------------------------------------------------- unknown keywords
def make_adapter(framework: str, **kwargs: Any) -> Any:
    if framework == "llama_index":
        pytest.importorskip("llama_index.core")
        from reasonrank.integrations.llama_index import ReasonRankRerank as cls
    elif framework == "langchain":
        pytest.importorskip("langchain_core")
        from reasonrank.integrations.langchain import ReasonRankCompressor as cls
    else:
        pytest.importorskip("haystack")
        from haystack_integrations.components.rankers.reasonrank import ReasonRankRanker as cls
    return cls(**kwargs)


FRAMEWORKS = ["llama_index", "langchain", "haystack"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_unknown_keyword_is_a_type_error(framework):
    with pytest.raises(TypeError, match="unexpected keyword argument 'windowsize' \\(did you mean 'window_size'\\?\\)"):
        make_adapter(framework, windowsize=5)
    with pytest.raises(TypeError, match="'no_such_option'"):
        make_adapter(framework, no_such_option=1)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_invalid_setting_value_fails_at_construction(framework):
    with pytest.raises(ValueError, match="step must be smaller"):
        make_adapter(framework, window_size=5)
    with pytest.raises(ValueError, match="unknown backend"):
        make_adapter(framework, backend="nope")


# ---------------------------------------------------------------------------- missing framework
MISSING = [
    ("llama_index", "reasonrank.integrations.llama_index", "llama-index"),
    ("langchain_core", "reasonrank.integrations.langchain", "langchain"),
    ("haystack", "reasonrank.integrations.haystack", "haystack"),
    ("haystack", "haystack_integrations.components.rankers.reasonrank", "haystack"),
]


@pytest.mark.parametrize(("framework", "module", "extra"), MISSING, ids=[m for _, m, _ in MISSING])
def test_missing_framework_gives_the_install_hint(framework, module, extra):
    code = f"import sys; sys.modules[{framework!r}] = None\ntry:\n    import {module}\nexcept ImportError as e:\n    print(e)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(f'which is not installed: pip install "reasonrank[{extra}]"')
    assert f"{framework!r}" in out.stdout
