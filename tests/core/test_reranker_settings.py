"""Reranker keywords come from RerankerConfig: every setting is accepted and stored, the rest go to the backend."""

import typing

import pytest

from reasonrank import Reranker, RerankerConfig
from reasonrank.core.backends.openai import OpenAIBackend
from reasonrank.core.config import iter_settings, setting_fields
from reasonrank.core.prompts import build_messages
from reasonrank.core.reranker import default_sampling
from reasonrank.core.types import ChatRequest, SamplingParams
from reasonrank.testing import FunctionBackend

# Settings whose type allows no generic sample value.
SAMPLES = {"backend_kwargs": {"timeout": 5.0}, "cache": "memory"}


def sample_value(name, default, metadata):
    """A valid value other than the default, derived from the setting's type and choices."""
    if name in SAMPLES:
        return SAMPLES[name]
    if metadata["choices"]:
        return next(c for c in reversed(metadata["choices"]) if c != default)
    kinds = typing.get_args(typing.get_type_hints(RerankerConfig)[name]) or (
        typing.get_type_hints(RerankerConfig)[name],
    )
    if bool in kinds:
        return not default
    if int in kinds:
        return default + 1 if default is not None else 7
    if float in kinds:
        return 0.5
    if str in kinds:
        return "http://x/v1" if name == "base_url" else "x"
    raise AssertionError(f"no sample value for the new setting {name!r}: add one to SAMPLES")


@pytest.mark.parametrize(("name", "default", "metadata"), list(iter_settings()), ids=lambda v: str(v)[:20])
def test_every_setting_is_a_reranker_keyword_stored_in_its_config(name, default, metadata):
    value = sample_value(name, default, metadata)
    rr = Reranker(**{name: value})
    assert getattr(rr.config, name) == value
    assert rr.config == RerankerConfig(**{name: value})
    assert Reranker.from_config(rr.config).config is rr.config


def test_settings_reach_the_reranker_attributes():
    rr = Reranker("m", prompt_mode="qwen3", window_size=10, step=4, depth=30, strategy="tournament",
                  max_passage_tokens=None, temperature=0.2, seed=3, on_error="keep")  # fmt: skip
    assert (rr.model, rr.window_size, rr.step, rr.depth, rr.strategy.name) == ("m", 10, 4, 30, "tournament")
    assert rr.prompt_mode.value == "qwen3" and rr.max_passage_tokens is None and rr.on_error == "keep"
    assert rr.sampling == SamplingParams(3172, temperature=0.2, top_p=0.95, top_k=20, min_p=0.0, seed=3)
    assert rr.backend_name == "openai" and not rr.show_progress
    assert {f.name for f in setting_fields()} == set(rr.config.to_dict(secrets=True))


def test_other_keywords_are_backend_options_checked_now():
    rr = Reranker("m", base_url="http://x/v1", timeout=5.0, concurrency=2)
    assert rr.config.backend_kwargs == {"timeout": 5.0, "concurrency": 2}
    assert rr.backend.concurrency == 2 and rr.backend.base_url == "http://x/v1"
    rr.close()
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'windowsize' \(did you mean 'window_size'\?\)"):
        Reranker(windowsize=5)
    with pytest.raises(TypeError, match=r"'timout' \(did you mean 'timeout'\?\)"):
        Reranker(timout=5)
    # vllm's module imports without vLLM: its constructor's keywords are checked on any machine
    with pytest.raises(TypeError, match=r"'tensor_parallel' \(did you mean 'tensor_parallel_size'\?\)"):
        Reranker("m", backend="vllm", tensor_parallel=2)
    assert Reranker("m", backend="vllm", tensor_parallel_size=2).config.backend_kwargs == {"tensor_parallel_size": 2}
    with pytest.raises(TypeError, match="'device'.*a ready Backend takes no backend options"):
        Reranker(backend=FunctionBackend(), device="cpu")
    with pytest.raises(TypeError, match="'base_url' is a reranker setting, not a backend option"):
        Reranker(backend_kwargs={"base_url": "http://x/v1"})
    with pytest.raises(TypeError, match="'timeout'"):
        Reranker.from_config(RerankerConfig(backend="vllm", model="m", backend_kwargs={"timeout": 1}))


def test_backend_names_are_validated_at_construction():
    with pytest.raises(ValueError, match="unknown backend 'vlm'; choose one of: openai, transformers, vllm"):
        Reranker("m", backend="vlm")
    assert Reranker("m", backend="VLLM").backend_name == "vllm"
    assert Reranker(backend=FunctionBackend(name="fn")).backend_name == "fn"


def test_backend_names_and_render():
    backend = OpenAIBackend("m", base_url="http://x/v1")
    assert (backend.kind, backend.model_name, backend.name) == ("openai", "m", "openai:m")
    assert OpenAIBackend(base_url="http://x/v1").name == "openai:?"  # the name never asks the server
    request = ChatRequest(build_messages("q", ["a", "b"]), default_sampling("reasoning"))
    assert backend.render(request) is None and FunctionBackend().render(request) is None  # messages sent as is


class CountingBackend(FunctionBackend):
    def __init__(self):
        super().__init__()
        self.truncated = []

    def truncate(self, texts, max_tokens):
        self.truncated.append(list(texts))
        return super().truncate(texts, max_tokens)


def test_each_round_prepares_the_passages_it_shows_first_in_one_batch():
    backend = CountingBackend()
    passages = [[f"q{q} passage {i} [{i}]" for i in range(n)] for q, n in enumerate([30, 5, 1])]
    Reranker(backend=backend, depth=20).rerank_batch(["a", "b", "c"], passages)
    # one 20-passage window for q0, one of 5 for q1, none for q2 (a single passage is not ranked)
    assert backend.truncated == [passages[0][:20] + passages[1]]
    backend = CountingBackend()
    Reranker(backend=backend, depth=30, window_size=10, step=5).rerank_batch(["a", "b"], passages[:2])
    # back to front: q0's windows 20-30, 15-25, ..., each round only the passages not shown before
    assert backend.truncated == [passages[0][20:30] + passages[1]] + [passages[0][i : i + 5] for i in (15, 10, 5, 0)]
    user = backend.calls[0][0].messages[1]["content"]
    assert "[1] q0 passage 20 (20)\n" in user  # cleaned, truncated, then ids escaped
    backend = CountingBackend()
    Reranker(backend=backend).rerank_batch(["a"], [["only one"]])  # no window due: nothing to truncate
    assert backend.truncated == [] and backend.calls == []
