"""The transformers backend on real models: SmolLM2-135M-Instruct end to end, and a tiny random Qwen3."""

from __future__ import annotations

import importlib
import shutil
import sys

import ftfy
import pytest

from reasonrank import Reranker
from reasonrank.core.backends import make_backend
from reasonrank.core.backends.transformers import TransformersBackend, generation_config_for
from reasonrank.core.passages import prepare_passages
from reasonrank.core.prompts import build_messages
from reasonrank.core.types import ChatRequest, SamplingParams

QUERY = "Why does ice float on water?"
# peft reads a deprecated transformers property when it wraps a model; harmless.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

PASSAGES = [
    "Glaciers carve U-shaped valleys as they move downhill.",
    "Ice is less dense than liquid water because of its open hydrogen-bonded lattice, so it floats.",
    "Salt lowers the \u2018freezing point\u2019 of water & so roads are salted.",  # curly quotes; a bare '&'
    {"title": "Icebergs", "text": "Icebergs are pieces of freshwater ice broken off glaciers. AT&amp;T [3]"},
]


def _request(text: str, **sampling) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": text}], SamplingParams(**{"max_new_tokens": 10, **sampling}))


def _spy_generate(monkeypatch, backend) -> list[list[ChatRequest]]:
    calls: list[list[ChatRequest]] = []
    real = backend.generate

    def spy(requests):
        calls.append(list(requests))
        return real(requests)

    monkeypatch.setattr(backend, "generate", spy)
    return calls


# ---------------------------------------------------------------- SmolLM2-135M-Instruct, end to end
def test_smollm2_rerank_end_to_end(smollm2_backend, monkeypatch):
    calls = _spy_generate(monkeypatch, smollm2_backend)
    rr = Reranker(backend=smollm2_backend, max_new_tokens=16)
    res = rr.rerank(QUERY, PASSAGES)

    assert sorted(res.order) == list(range(len(PASSAGES)))
    assert res.scores == sorted(res.scores, reverse=True) and len(set(res.scores)) == len(PASSAGES)
    assert len(res.windows) == 1 and len(calls) == 1
    window = res.windows[0]
    assert window.passages == [0, 1, 2, 3]
    assert sorted(window.order) == [0, 1, 2, 3]
    assert window.raw_output.strip(), "the model said nothing"
    assert window.completion_tokens is not None and 1 <= window.completion_tokens <= 16
    assert window.finish_reason in ("stop", "length")
    # A 135M model does not follow the format: the parser repairs, and the trace says so.
    if window.answer is None:
        assert "kept_window_order" in window.repairs and window.order == [0, 1, 2, 3]

    # The prompt is the model's own chat template over build_messages, then ftfy over the whole string.
    tokenizer = smollm2_backend.tokenizer
    contents = prepare_passages(PASSAGES, smollm2_backend.truncate, 512)
    messages = build_messages(QUERY, contents)
    expected = ftfy.fix_text(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    (request,) = calls[0]
    assert request.messages == messages
    rendered = smollm2_backend.render(request)
    assert rendered == expected
    assert rendered.startswith("<|im_start|>system\nYou are RankLLM") and rendered.endswith("<|im_start|>assistant\n")
    # ftfy straightened the quotes and (per passage, as the authors) unescaped the entity; [3] became (3).
    assert "'freezing point'" in rendered and "AT&T (3)" in rendered
    assert window.prompt_tokens == smollm2_backend.count_tokens(expected)


async def test_smollm2_async_matches_sync(smollm2_backend):
    rr = Reranker(backend=smollm2_backend, max_new_tokens=8)
    sync = rr.rerank(QUERY, PASSAGES[:3])
    res = await rr.arerank(QUERY, PASSAGES[:3])
    assert res.order == sync.order
    assert res.windows[0].raw_output == sync.windows[0].raw_output  # greedy: deterministic


def test_default_model_name_resolves_to_the_cached_conversion(smollm2_path):
    from reasonrank.core.models import DEFAULT_MODEL, default_model_path, default_model_ready

    assert default_model_ready() and default_model_path() == smollm2_path  # reused, not converted again
    assert TransformersBackend._resolve_model(DEFAULT_MODEL) == smollm2_path


# ---------------------------------------------------------------- tiny random model
def test_batched_left_padded_generation_equals_one_at_a_time(tiny_backend, monkeypatch):
    requests = [_request("rank passage " * k + word, max_new_tokens=12)
                for k, word in ((1, "ice"), (5, "git"), (2, "sun"), (9, "water"), (3, "tilt"))]  # fmt: skip
    batched = tiny_backend.generate(requests)  # batches of 4 + 1, different prompt lengths
    monkeypatch.setattr(tiny_backend, "batch_size", 1)
    single = tiny_backend.generate(requests)
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in single]
    assert [c.prompt_tokens for c in batched] == [c.prompt_tokens for c in single]
    assert len({c.text for c in single}) > 1, "outputs should depend on the prompt"
    assert tiny_backend.tokenizer.padding_side == "left"
    for request, completion in zip(requests, batched):
        assert completion.error is None
        assert completion.prompt_tokens == tiny_backend.count_tokens(tiny_backend.render(request))
        assert completion.finish_reason in ("stop", "length")
        if completion.finish_reason == "length":
            assert completion.completion_tokens == 12


def test_stops_on_eos_and_decodes_only_new_tokens(tiny_backend, monkeypatch):
    request = _request("rank passage ice", max_new_tokens=6)
    (free,) = tiny_backend.generate([request])
    assert free.finish_reason == "length" and free.completion_tokens == 6
    assert "rank passage" not in free.text  # the prompt is not echoed back
    first = tiny_backend.tokenizer(free.text, add_special_tokens=False)["input_ids"][0]
    # Make the model's first greedy token an end token: it stops at once and returns no text.
    monkeypatch.setattr(tiny_backend, "eos_token_ids", [first, *tiny_backend.eos_token_ids])
    (stopped,) = tiny_backend.generate([request])
    assert (stopped.text, stopped.finish_reason, stopped.completion_tokens) == ("", "stop", 1)


def test_requests_with_different_sampling_are_not_mixed(tiny_backend, monkeypatch):
    configs = []
    real = tiny_backend.torch_model.generate

    def spy(*args, **kwargs):
        configs.append((kwargs["input_ids"].shape[0], kwargs["generation_config"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny_backend.torch_model, "generate", spy)
    greedy = _request("rank ice")
    sampled = _request("rank ice", temperature=0.8, top_p=0.9, top_k=5, seed=3)
    out = tiny_backend.generate([greedy, sampled, greedy, sampled])
    assert all(c.error is None for c in out)
    # Greedy requests share a batch; seeded sampled ones run one by one (a seed is per request).
    assert sorted((n, c.do_sample) for n, c in configs) == [(1, True), (1, True), (2, False)]
    assert out[0].text == out[2].text
    assert out[1].text == out[3].text  # same seed, same prompt
    assert tiny_backend.generate([sampled])[0].text == out[1].text
    unseeded = _request("rank ice", temperature=0.8)
    configs.clear()
    tiny_backend.generate([unseeded, unseeded, greedy])
    assert sorted((n, c.do_sample) for n, c in configs) == [(1, False), (2, True)]


def test_sampling_params_mapping():
    greedy = generation_config_for(SamplingParams(max_new_tokens=7), eos_token_id=[2], pad_token_id=0)
    assert (greedy.do_sample, greedy.max_new_tokens, greedy.repetition_penalty) == (False, 7, 1.0)
    assert greedy.eos_token_id == [2] and greedy.pad_token_id == 0
    qwen3 = SamplingParams(max_new_tokens=9, temperature=0.6, top_p=0.95, top_k=20, min_p=0.0)
    sampled = generation_config_for(qwen3, eos_token_id=[2], pad_token_id=0)
    assert (sampled.do_sample, sampled.temperature, sampled.top_p, sampled.top_k, sampled.min_p) == (
        True, 0.6, 0.95, 20, 0.0)  # fmt: skip
    no_top_k = generation_config_for(SamplingParams(temperature=1.0, top_k=-1), eos_token_id=[2], pad_token_id=0)
    assert no_top_k.top_k == 0  # transformers' "off" (its default would be 50)


def test_truncation_keeps_the_first_tokens(tiny_backend):
    tokenizer = tiny_backend.tokenizer
    long = "the glacier season earth tilt because the sun is relevant " * 10
    short = "ice floats"
    cut, kept = tiny_backend.truncate([long, short], 12)
    ids = tokenizer(long, add_special_tokens=False)["input_ids"]
    assert len(ids) > 12
    assert cut == tokenizer.convert_tokens_to_string(tokenizer.convert_ids_to_tokens(ids[:12]))
    assert long.startswith(cut) and len(cut) < len(long)
    assert tiny_backend.count_tokens(cut) <= 12
    assert kept == short
    assert tiny_backend.truncate([], 5) == []


def test_prompt_longer_than_the_context_fails_only_that_window(tiny_backend):
    too_long = _request("passage " * 1200)
    fine = _request("rank ice")
    bad, good = tiny_backend.generate([too_long, fine])
    assert bad.error and "context of 1024" in bad.error and bad.text == ""
    assert good.error is None and good.completion_tokens


def test_peft_adapter_loads_and_changes_outputs(tiny_model_dir, tiny_adapter_dir, tiny_backend):
    from peft import PeftModel

    request = _request("rank passage water tilt", max_new_tokens=8)
    with_adapter = TransformersBackend(str(tiny_model_dir), device="cpu", adapter_path=str(tiny_adapter_dir))
    assert isinstance(with_adapter.torch_model, PeftModel)
    merged = TransformersBackend(str(tiny_model_dir), device="cpu", adapter_path=str(tiny_adapter_dir),
                                 merge_adapter=True)  # fmt: skip
    assert not isinstance(merged.torch_model, PeftModel)
    base_text = tiny_backend.generate([request])[0].text
    adapter_text = with_adapter.generate([request])[0].text
    assert adapter_text != base_text
    assert merged.generate([request])[0].text == adapter_text


def test_bad_inputs_give_clear_errors(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        TransformersBackend(str(tiny_model_dir), device="cpu", adapter_path=str(tmp_path))
    with pytest.raises(ValueError, match="batch_size"):
        TransformersBackend(str(tiny_model_dir), batch_size=0)
    with pytest.raises(ValueError, match="unknown dtype"):
        TransformersBackend(str(tiny_model_dir), device="cpu", dtype="float8")
    no_template = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, no_template)
    (no_template / "chat_template.jinja").unlink()
    with pytest.raises(ValueError, match="no chat template"):
        TransformersBackend(str(no_template), device="cpu")


def test_make_backend_and_reranker_by_name(tiny_model_dir):
    backend = make_backend("transformers", str(tiny_model_dir), device="cpu", batch_size=2)
    assert isinstance(backend, TransformersBackend) and backend.batch_size == 2
    # the default follows the measurement in docs/performance.md: no batching on CPU, batches on a GPU
    assert make_backend("transformers", str(tiny_model_dir), device="cpu").batch_size == 1
    from reasonrank.core.backends.transformers import default_batch_size

    assert default_batch_size("cuda:0") == 8 and default_batch_size("cpu") == 1
    assert backend.name == f"transformers:{tiny_model_dir}"
    rr = Reranker(str(tiny_model_dir), backend="transformers", device="cpu", max_new_tokens=4, window_size=4, step=2)
    passages = [f"passage {i} about ice" for i in range(7)]
    res = rr.rerank("ice", passages)
    assert sorted(res.order) == list(range(7)) and len(res.windows) == 3


def test_missing_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "reasonrank.core.backends.transformers")
    with pytest.raises(ImportError, match=r"reasonrank\[transformers\]"):
        importlib.import_module("reasonrank.core.backends.transformers")


def test_each_prompt_is_tokenized_once_and_batches_are_sorted_by_length(tiny_backend, monkeypatch):
    requests = [_request("rank passage " * k, max_new_tokens=2) for k in (9, 1, 5, 2, 7)]
    encoded, padded = [], []
    real_encode, real_pad = tiny_backend._encode, tiny_backend.tokenizer.pad

    def counting_encode(prompts):
        encoded.extend(prompts)
        return real_encode(prompts)

    def recording_pad(batch, **kwargs):
        padded.append([len(ids) for ids in batch["input_ids"]])
        return real_pad(batch, **kwargs)

    monkeypatch.setattr(tiny_backend, "_encode", counting_encode)
    monkeypatch.setattr(tiny_backend.tokenizer, "pad", recording_pad)
    out = tiny_backend.generate(requests)
    assert sorted(encoded) == sorted(tiny_backend.render(r) for r in requests)  # once each
    lengths = [length for batch in padded for length in batch]
    assert lengths == sorted(lengths) and [len(b) for b in padded] == [4, 1]
    assert [c.prompt_tokens for c in out] == [tiny_backend.count_tokens(tiny_backend.render(r)) for r in requests]


def test_deadline_sets_max_time_and_skips_batches_not_started(tiny_backend, monkeypatch):
    import time

    configs = []
    real = tiny_backend.torch_model.generate

    def spy(**kwargs):
        configs.append(kwargs["generation_config"])
        return real(**kwargs)

    monkeypatch.setattr(tiny_backend.torch_model, "generate", spy)
    requests = [_request("rank passage " * k, max_new_tokens=3) for k in range(1, 7)]
    skipped = tiny_backend.generate(requests, deadline=time.monotonic() - 1)
    assert configs == []
    assert all(c.status == "skipped" and c.error.startswith("deadline exceeded") for c in skipped)
    done = tiny_backend.generate(requests, deadline=time.monotonic() + 120)
    assert all(c.error is None for c in done)
    assert len(configs) == 2 and all(0 < c.max_time <= 120 for c in configs)
    assert tiny_backend.generate(requests[:1])[0].text == done[0].text  # no deadline: no max_time
    assert configs[-1].max_time is None
