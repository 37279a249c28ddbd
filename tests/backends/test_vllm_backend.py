"""The vLLM backend on CPU: pure request building, and the class driven through a fake ``vllm`` module.

vLLM needs a CUDA GPU and cannot be installed here, so a stand-in module records what the backend
asks the engine for. The tokenizer is a real one (the tiny test model's), so prompts are rendered for real.
"""

from __future__ import annotations

import importlib
import re
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import ftfy
import pytest

from reasonrank import Reranker
from reasonrank.core.backends import make_backend
from reasonrank.core.backends.vllm import (
    LORA_NAME,
    VLLMBackend,
    build_sampling_kwargs,
    completion_from_output,
    render_prompts,
)
from reasonrank.core.prompts import build_messages
from reasonrank.core.types import ChatRequest, SamplingParams
from reasonrank.testing import FunctionBackend, format_answer

_LINE = re.compile(r"^\[(\d+)\] ", re.MULTILINE)


def reverse_ranking(query: str, passages: list[str]) -> list[int]:
    return list(reversed(range(len(passages))))


# ---------------------------------------------------------------- a stand-in for the vllm package
@dataclass
class FakeSamplingParams:
    kwargs: dict[str, Any]


@dataclass
class FakeLoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


@dataclass
class FakeEngine:
    tokenizer: Any
    max_model_len: int = 1024
    constructed: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)


def fake_vllm_module(engine: FakeEngine) -> dict[str, types.ModuleType]:
    """Modules ``vllm`` and ``vllm.lora.request`` whose LLM answers by reversing each window."""

    class LLM:
        def __init__(self, **kwargs: Any) -> None:
            engine.constructed.append(kwargs)
            self.llm_engine = types.SimpleNamespace(
                model_config=types.SimpleNamespace(max_model_len=kwargs.get("max_model_len", engine.max_model_len))
            )

        def get_tokenizer(self) -> Any:
            return engine.tokenizer

        def generate(self, prompts, sampling_params, *, lora_request=None, use_tqdm=True):
            engine.calls.append({"prompts": list(prompts), "params": list(sampling_params), "lora": lora_request})
            outputs = []
            for prompt in prompts:
                n = len(_LINE.findall(prompt))
                text = format_answer(list(reversed(range(n))))
                token_ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
                outputs.append(
                    types.SimpleNamespace(
                        prompt_token_ids=engine.tokenizer(prompt)["input_ids"],
                        outputs=[types.SimpleNamespace(text=text, token_ids=token_ids, finish_reason="stop")],
                    )
                )
            return outputs

    vllm = types.ModuleType("vllm")
    vllm.LLM = LLM
    vllm.SamplingParams = lambda **kwargs: FakeSamplingParams(kwargs)
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = FakeLoRARequest
    vllm.lora = lora
    lora.request = request
    return {"vllm": vllm, "vllm.lora": lora, "vllm.lora.request": request}


@pytest.fixture
def engine(tiny_backend, monkeypatch) -> FakeEngine:
    state = FakeEngine(tokenizer=tiny_backend.tokenizer)
    for name, module in fake_vllm_module(state).items():
        monkeypatch.setitem(sys.modules, name, module)
    return state


# ---------------------------------------------------------------- pure request building
def test_sampling_kwargs_greedy_and_qwen3():
    greedy = build_sampling_kwargs(SamplingParams(max_new_tokens=3172))
    assert greedy == {"n": 1, "max_tokens": 3172, "temperature": 0.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0}
    qwen3 = build_sampling_kwargs(SamplingParams(3172, temperature=0.6, top_p=0.95, top_k=20, min_p=0.0, seed=7))
    assert qwen3 == {
        "n": 1, "max_tokens": 3172, "temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0, "seed": 7
    }  # fmt: skip
    assert build_sampling_kwargs(SamplingParams(temperature=1.0, top_k=0))["top_k"] == -1


def test_render_prompts_uses_chat_template_and_ftfy(tiny_backend):
    tokenizer = tiny_backend.tokenizer
    messages = build_messages("ice", ["it \u201cfloats\u201d", "glaciers"])
    (prompt,) = render_prompts(tokenizer, [ChatRequest(messages, SamplingParams())])
    assert prompt == ftfy.fix_text(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    assert prompt.endswith("<|im_start|>assistant\n") and '[1] it "floats"' in prompt


def test_completion_from_request_output():
    output = types.SimpleNamespace(
        prompt_token_ids=[1, 2, 3],
        outputs=[types.SimpleNamespace(text="<answer>[2] > [1]</answer>", token_ids=[5, 6], finish_reason="length")],
    )
    done = completion_from_output(output, 1.5)
    assert (done.text, done.prompt_tokens, done.completion_tokens, done.finish_reason, done.seconds) == (
        "<answer>[2] > [1]</answer>", 3, 2, "length", 1.5)  # fmt: skip
    assert completion_from_output(types.SimpleNamespace(outputs=[]), 0.0).error


# ---------------------------------------------------------------- the class through the fake module
def test_one_generate_per_round_for_all_queries_with_lora(engine):
    backend = VLLMBackend("liuwenhan/reasonrank-7B", lora_path="/adapters/rr", tensor_parallel_size=4)
    (kwargs,) = engine.constructed
    assert kwargs == {
        "model": "liuwenhan/reasonrank-7B",
        "tensor_parallel_size": 4,
        "gpu_memory_utilization": 0.9,
        "dtype": "auto",
        "seed": 0,
        "enforce_eager": False,
        "trust_remote_code": False,
        "enable_lora": True,
        "max_lora_rank": 32,
    }
    queries = ["ice floats", "undo a git commit", "seasons on earth"]
    passages = [[f"passage {q} {i}" for i in range(25)] for q in range(3)]
    rr = Reranker(backend=backend, max_passage_tokens=64)
    results = rr.rerank_batch(queries, passages)

    # 25 candidates, window 20, step 10: windows [5,25) then [0,15) -> 2 rounds, each one engine call.
    assert len(engine.calls) == 2
    assert [len(call["prompts"]) for call in engine.calls] == [3, 3]
    for call in engine.calls:
        assert call["lora"] == FakeLoRARequest(LORA_NAME, 1, "/adapters/rr")
        assert all(p.kwargs["temperature"] == 0.0 and p.kwargs["max_tokens"] == 3172 for p in call["params"])
    first_prompt = engine.calls[0]["prompts"][0]
    assert first_prompt.startswith("<|im_start|>system\nYou are RankLLM") and "[20] passage 0 24" in first_prompt

    expected = Reranker(backend=FunctionBackend(rank=reverse_ranking), max_passage_tokens=None).rerank_batch(
        queries, passages
    )
    assert [r.order for r in results] == [r.order for r in expected]
    for res in results:
        first, second = res.windows
        assert first.passages == list(range(5, 25)) and first.order == list(range(24, 4, -1))
        assert second.passages == [0, 1, 2, 3, 4, *range(24, 14, -1)]  # positions 0..14 after round 1
        assert all(w.repairs == [] and w.finish_reason == "stop" and w.prompt_tokens for w in res.windows)


def test_no_lora_and_engine_options(engine):
    backend = make_backend("vllm", "some/model", max_model_len=4096, engine_kwargs={"swap_space": 8}, seed=3)
    (kwargs,) = engine.constructed
    assert kwargs["enable_lora"] is False and "max_lora_rank" not in kwargs
    assert (kwargs["max_model_len"], kwargs["swap_space"], kwargs["seed"]) == (4096, 8, 3)
    assert backend.lora_request is None and backend.max_model_len == 4096
    backend.generate([ChatRequest(build_messages("q", ["a", "b"]), SamplingParams(max_new_tokens=5))])
    assert engine.calls[0]["lora"] is None
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend.generate([])


def test_mixed_sampling_in_one_call_and_over_long_prompt(engine):
    backend = VLLMBackend("m", max_model_len=600)
    short = build_messages("q", ["a", "b"])
    requests = [
        ChatRequest(short, SamplingParams(max_new_tokens=5)),
        ChatRequest(build_messages("q", ["word " * 700, "b"]), SamplingParams()),
        ChatRequest(short, SamplingParams(temperature=0.6, top_p=0.95, top_k=20, seed=1)),
    ]
    first, too_long, sampled = backend.generate(requests)
    assert too_long.error and "max_model_len is 600" in too_long.error
    assert first.error is None and sampled.error is None
    (call,) = engine.calls  # the over-long prompt never reaches the engine
    assert [p.kwargs["temperature"] for p in call["params"]] == [0.0, 0.6]
    assert call["params"][1].kwargs["seed"] == 1


def test_truncate_and_count_with_engine_tokenizer(engine, tiny_backend):
    backend = VLLMBackend("m")
    text = "the glacier season earth tilt because the sun is relevant " * 5
    assert backend.truncate([text, "ice"], 6) == tiny_backend.truncate([text, "ice"], 6)
    assert backend.count_tokens(text) == tiny_backend.count_tokens(text)


def test_missing_vllm_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match=r'pip install "reasonrank\[vllm\]"'):
        VLLMBackend("liuwenhan/reasonrank-7B")
    with pytest.raises(ImportError, match="GPU"):
        _ = Reranker("liuwenhan/reasonrank-7B", backend="vllm").backend


def test_module_imports_without_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    monkeypatch.delitem(sys.modules, "reasonrank.core.backends.vllm")
    module = importlib.import_module("reasonrank.core.backends.vllm")
    assert module.build_sampling_kwargs(SamplingParams())["temperature"] == 0.0


def test_a_passed_deadline_skips_the_call_and_a_future_one_runs_it(engine):
    import time

    backend = VLLMBackend("m")
    requests = [ChatRequest(build_messages("q", ["a", "b"]), SamplingParams(max_new_tokens=5))] * 2
    skipped = backend.generate(requests, deadline=time.monotonic() - 1)
    assert [(c.status, c.error.startswith("deadline exceeded")) for c in skipped] == [("skipped", True)] * 2
    assert engine.calls == []
    done = backend.generate(requests, deadline=time.monotonic() + 60)
    assert [c.error for c in done] == [None, None] and len(engine.calls) == 1
