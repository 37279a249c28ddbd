"""Local generation with Hugging Face transformers (CPU or GPU), optionally with a PEFT adapter.

Install with ``pip install "reasonrank[transformers]"``. Prompts are rendered exactly as the authors
do (the model's chat template, then ftfy over the whole string), generation is batched with left
padding, and requests with different decoding settings never share a ``generate`` call.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from reasonrank.core.backends.base import Backend, skipped_completion
from reasonrank.core.prompts import render_prompt
from reasonrank.core.truncation import truncate_with_tokenizer
from reasonrank.core.types import ChatRequest, Completion, SamplingParams

try:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"the transformers backend needs torch and transformers ({_err}); "
        'install them with: pip install "reasonrank[transformers]"'
    ) from _err

__all__ = ["TransformersBackend", "generation_config_for", "resolve_device", "resolve_dtype"]

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}  # fmt: skip


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; anything else is returned as is."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    """``"auto"``: float32 on CPU (bf16 matmuls are slow there), bfloat16 on GPUs that support it, else float16."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto, {', '.join(_DTYPES)}") from None


def generation_config_for(params: SamplingParams, *, eos_token_id: list[int], pad_token_id: int) -> GenerationConfig:
    """A complete ``GenerationConfig`` for one set of decoding settings.

    Every knob is set explicitly so nothing is inherited from the checkpoint's ``generation_config.json``
    (Qwen2.5's sets ``repetition_penalty=1.05`` and sampling defaults): vLLM, which the authors used,
    ignores that file when given explicit ``SamplingParams``. ``temperature == 0`` is greedy;
    ``top_k == -1`` is off.
    """
    common = dict(
        max_new_tokens=params.max_new_tokens,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        num_beams=1,
        typical_p=1.0,
    )
    if params.greedy:
        # The neutral values, so transformers does not warn about unused sampling flags.
        return GenerationConfig(do_sample=False, temperature=1.0, top_p=1.0, top_k=50, **common)
    return GenerationConfig(
        do_sample=True,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k if params.top_k > 0 else 0,  # 0 disables top-k in transformers
        min_p=params.min_p,
        **common,
    )


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


#: windows per ``generate`` on CPU, where a batch buys nothing: SmolLM2-135M on one thread ran batches of
#: 2/4/8 at 0.99x/0.94x/0.94x the windows/s of batch 1, with more memory (``docs/performance.md``)
CPU_BATCH_SIZE = 1
#: on an accelerator a batch is how decoding gets throughput; 8 fits a 7B model's 20-passage windows
#: (~6k prompt tokens each) on one 80 GB GPU (not measured here: no GPU)
ACCELERATOR_BATCH_SIZE = 8


def default_batch_size(device: str) -> int:
    """``batch_size=None``: :data:`CPU_BATCH_SIZE` on CPU, :data:`ACCELERATOR_BATCH_SIZE` elsewhere."""
    return CPU_BATCH_SIZE if str(device).startswith("cpu") else ACCELERATOR_BATCH_SIZE


class TransformersBackend(Backend):
    """A local causal LM. The model and tokenizer are loaded once, in the constructor.

    ``model`` is a local directory or a Hugging Face id (``"SmolLM2-135M-Instruct"`` names the
    embedded default model, see :mod:`reasonrank.core.models`). ``adapter_path`` loads a PEFT
    adapter on top (``merge_adapter=True`` merges it for faster decoding). ``gguf_file`` loads a GGUF
    file inside ``model``. ``model_kwargs`` go to ``from_pretrained`` (with ``device_map`` in them
    the model is not moved to ``device``). Generation runs ``batch_size`` windows at a time (None: 1
    on CPU, 8 on a GPU, see :func:`default_batch_size`).

    ``model_name`` is the loaded directory or id, ``torch_model`` the loaded module, ``tokenizer`` its
    tokenizer.
    """

    kind = "transformers"

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int | None = None,
        adapter_path: str | None = None,
        merge_adapter: bool = False,
        trust_remote_code: bool = False,
        gguf_file: str | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be an int >= 1 or None, got {batch_size!r}")
        model = self._resolve_model(model)
        self.model_name = model
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size or default_batch_size(self.device)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self._lock = threading.Lock()

        load: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        if gguf_file is not None:
            load["gguf_file"] = gguf_file
        self.tokenizer = AutoTokenizer.from_pretrained(model, **load)
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(
                f"{model} has no chat template; ReasonRank prompts are rendered with the model's chat template "
                "(use an instruction-tuned model, or set tokenizer.chat_template)"
            )
        self.tokenizer.padding_side = "left"  # generation continues from the right edge
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

        extra = dict(model_kwargs or {})
        placed = "device_map" in extra
        net = AutoModelForCausalLM.from_pretrained(model, dtype=self.dtype, **load, **extra)
        if adapter_path is not None:
            net = self._load_adapter(net, adapter_path, merge_adapter)
        if not placed:
            net = net.to(self.device)
        net.eval()
        self.torch_model = net
        self.adapter_path = adapter_path
        self.eos_token_ids = self._eos_ids()
        self.max_context = getattr(net.config, "max_position_embeddings", None)

    # ------------------------------------------------------------------ loading
    @staticmethod
    def _resolve_model(model: str) -> str:
        from reasonrank.core.models import DEFAULT_MODEL, default_model_path

        if model == DEFAULT_MODEL and not os.path.exists(model):
            return default_model_path()
        return model

    @staticmethod
    def _load_adapter(net: Any, adapter_path: str, merge: bool) -> Any:
        try:
            from peft import PeftModel
        except ImportError as err:
            raise ImportError(
                f'loading a LoRA adapter needs peft ({err}); install it with: pip install "reasonrank[train]"'
            ) from err
        if not os.path.isfile(os.path.join(adapter_path, "adapter_config.json")):
            raise FileNotFoundError(f"no PEFT adapter at {adapter_path} (adapter_config.json is missing)")
        net = PeftModel.from_pretrained(net, adapter_path)
        return net.merge_and_unload() if merge else net

    def _eos_ids(self) -> list[int]:
        ids: list[int] = []
        configured = self.torch_model.generation_config.eos_token_id
        for value in (configured if isinstance(configured, list) else [configured]) + [self.tokenizer.eos_token_id]:
            if value is not None and value not in ids:
                ids.append(int(value))
        if not ids:
            raise ValueError(f"{self.model_name} defines no end-of-sequence token; generation could not stop")
        return ids

    # ------------------------------------------------------------------ Backend API
    def render(self, request: ChatRequest) -> str:
        """The prompt text for one request: chat template + ftfy over the whole string."""
        return render_prompt(self.tokenizer, request.messages, **self.chat_template_kwargs)

    def generate(self, requests: Sequence[ChatRequest], *, deadline: float | None = None) -> list[Completion]:
        """Generate in batches of similar length; each prompt is tokenized once.

        ``deadline`` (a :func:`time.monotonic` instant): each batch gets the time left as ``max_time``
        (generation stops there, the output so far is kept with ``finish_reason="length"``), and batches
        not started by then come back as skipped completions.
        """
        prompts = [self.render(r) for r in requests]
        out: list[Completion | None] = [None] * len(requests)
        groups: dict[SamplingParams, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.sampling, []).append(i)
        with self._lock, torch.inference_mode():
            for params, members in groups.items():
                encoded = dict(zip(members, self._encode([prompts[i] for i in members])))
                runnable = []
                for i in members:
                    error = self._context_error(len(encoded[i]), params)
                    if error:
                        out[i] = Completion(prompt_tokens=len(encoded[i]), error=error)
                    else:
                        runnable.append(i)
                # Similar lengths together: less padding.
                runnable.sort(key=lambda i: len(encoded[i]))
                # A seed makes each request reproducible on its own (as in vLLM), so seeded sampling runs
                # one request per call: a batch would draw its rows from one shared random stream.
                size = 1 if (not params.greedy and params.seed is not None) else self.batch_size
                for chunk in _chunks(runnable, size):
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        for i in chunk:
                            out[i] = skipped_completion(f"{self.name} did not start this batch in time")
                        continue
                    for i, completion in zip(chunk, self._generate_batch([encoded[i] for i in chunk], params, left)):
                        out[i] = completion
        return [c if c is not None else Completion(error="not generated") for c in out]

    def _encode(self, prompts: list[str]) -> list[list[int]]:
        return self.tokenizer(prompts, add_special_tokens=False)["input_ids"]

    def truncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        return truncate_with_tokenizer(self.tokenizer, texts, max_tokens)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def close(self) -> None:
        """Drop the model; frees GPU memory once nothing else holds it."""
        self.torch_model = None  # type: ignore[assignment]
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def __repr__(self) -> str:
        adapter = f", adapter_path={self.adapter_path!r}" if self.adapter_path else ""
        return f"TransformersBackend({self.model_name!r}, device={self.device!r}, dtype={self.dtype}{adapter})"

    # ------------------------------------------------------------------ generation
    def _context_error(self, prompt_tokens: int, params: SamplingParams) -> str | None:
        if self.max_context and prompt_tokens >= self.max_context:
            return (
                f"prompt has {prompt_tokens} tokens but {self.model_name} has a context of {self.max_context}; "
                "lower max_passage_tokens or window_size"
            )
        return None

    def _generate_batch(
        self, prompts: list[list[int]], params: SamplingParams, max_time: float | None = None
    ) -> list[Completion]:
        """Generate for tokenized prompts (left-padded here, never tokenized again)."""
        if self.torch_model is None:
            raise RuntimeError("the backend is closed")
        inputs = self.tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
        inputs = {k: v.to(self.torch_model.device) for k, v in inputs.items()}
        config = generation_config_for(
            params, eos_token_id=self.eos_token_ids, pad_token_id=self.tokenizer.pad_token_id
        )
        if max_time is not None:
            config.max_time = max_time
        if not params.greedy and params.seed is not None:
            torch.manual_seed(params.seed)
        started = time.perf_counter()
        try:
            output = self.torch_model.generate(**inputs, generation_config=config)
        except (RuntimeError, ValueError) as err:  # e.g. out of memory: fail these windows, not the run
            log.warning("generation failed for %d prompts: %s", len(prompts), err)
            return [Completion(error=f"{type(err).__name__}: {err}") for _ in prompts]
        seconds = time.perf_counter() - started
        width = inputs["input_ids"].shape[1]
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        eos = set(self.eos_token_ids)
        completions = []
        for row, prompt_tokens in zip(output[:, width:].tolist(), prompt_lengths):
            stop = next((k for k, token in enumerate(row) if token in eos), None)
            kept = row if stop is None else row[:stop]
            completions.append(
                Completion(
                    text=self.tokenizer.decode(kept, skip_special_tokens=True),
                    prompt_tokens=int(prompt_tokens),
                    completion_tokens=len(row) if stop is None else stop + 1,  # the end token counts, as in vLLM
                    seconds=seconds,
                    finish_reason="stop" if stop is not None else "length",
                )
            )
        return completions
