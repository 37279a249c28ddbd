"""Offline batched generation with vLLM (GPU only), as the authors ran ReasonRank.

Install with ``pip install "reasonrank[vllm]"`` on a CUDA machine. The engine is built once; every
call to :meth:`VLLMBackend.generate` is one ``llm.generate`` over all the windows the reranker has
ready (with ``rerank_batch``: the same window position of every query), so a 100-candidate sliding
window costs 9 sequential engine calls however many queries there are.

Request building lives in pure functions (:func:`build_sampling_kwargs`, :func:`render_prompts`,
:func:`completion_from_output`) so it is tested without a GPU.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from typing import Any

from reasonrank.core.backends.base import Backend, skipped_completion
from reasonrank.core.prompts import render_prompt
from reasonrank.core.truncation import truncate_with_tokenizer
from reasonrank.core.types import ChatRequest, Completion, SamplingParams

__all__ = ["VLLMBackend", "LORA_NAME", "build_sampling_kwargs", "render_prompts", "completion_from_output"]

#: the name under which the adapter is registered with the engine (the authors used "R1adapter")
LORA_NAME = "reasonrank-adapter"


def build_sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for one window's decoding settings.

    ``temperature == 0`` is greedy (vLLM then ignores top-p/top-k); ``top_k=-1`` means off. Nothing
    else is set: the authors passed no stop strings and no repetition penalty.
    """
    kwargs: dict[str, Any] = {"n": 1, "max_tokens": params.max_new_tokens}
    if params.greedy:
        kwargs.update(temperature=0.0, top_p=1.0, top_k=-1, min_p=0.0)
    else:
        kwargs.update(
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else -1,
            min_p=params.min_p,
        )
    if params.seed is not None:
        kwargs["seed"] = params.seed
    return kwargs


def render_prompts(tokenizer: Any, requests: Sequence[ChatRequest], **chat_template_kwargs: Any) -> list[str]:
    """Prompt strings for the engine: the model's chat template, then ftfy over the whole string."""
    return [render_prompt(tokenizer, r.messages, **chat_template_kwargs) for r in requests]


def completion_from_output(output: Any, seconds: float) -> Completion:
    """A :class:`Completion` from one ``vllm.RequestOutput``."""
    if not output.outputs:
        return Completion(error="vLLM returned no output for this prompt", seconds=seconds)
    first = output.outputs[0]
    prompt_ids = getattr(output, "prompt_token_ids", None)
    token_ids = getattr(first, "token_ids", None)
    return Completion(
        text=first.text,
        prompt_tokens=len(prompt_ids) if prompt_ids is not None else None,
        completion_tokens=len(token_ids) if token_ids is not None else None,
        seconds=seconds,
        finish_reason=first.finish_reason,
    )


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as err:
        raise ImportError(
            f"the vllm backend needs vLLM ({err}); it runs on CUDA GPUs only. Install it with: "
            'pip install "reasonrank[vllm]"  (or serve the model with `vllm serve` and use backend="openai")'
        ) from err
    return vllm


class VLLMBackend(Backend):
    """An offline ``vllm.LLM`` engine, built once in the constructor.

    The defaults follow the authors' engine settings (``gpu_memory_utilization=0.9``,
    ``enforce_eager=False``, ``max_lora_rank=32``, model's own ``max_model_len``). ``lora_path``
    attaches a LoRA adapter to every generate call; ``engine_kwargs`` go to ``vllm.LLM``.
    """

    kind = "vllm"

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        lora_path: str | None = None,
        max_lora_rank: int = 32,
        dtype: str = "auto",
        seed: int = 0,
        enforce_eager: bool = False,
        trust_remote_code: bool = False,
        chat_template_kwargs: dict[str, Any] | None = None,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        vllm = _import_vllm()
        from vllm.lora.request import LoRARequest

        self.model_name = model
        self.lora_path = lora_path
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self._sampling_params_cls = vllm.SamplingParams
        args: dict[str, Any] = dict(
            model=model,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype,
            seed=seed,
            enforce_eager=enforce_eager,
            trust_remote_code=trust_remote_code,
            enable_lora=lora_path is not None,
        )
        if lora_path is not None:
            args["max_lora_rank"] = max_lora_rank
        if max_model_len is not None:
            args["max_model_len"] = max_model_len
        args.update(engine_kwargs or {})
        self.llm = vllm.LLM(**args)
        self.tokenizer = self.llm.get_tokenizer()
        self.lora_request = LoRARequest(LORA_NAME, 1, lora_path) if lora_path is not None else None
        self.max_model_len = max_model_len or self._engine_max_model_len()

    def _engine_max_model_len(self) -> int | None:
        try:
            return int(self.llm.llm_engine.model_config.max_model_len)
        except (AttributeError, TypeError, ValueError):
            return None

    # ------------------------------------------------------------------ Backend API
    def generate(self, requests: Sequence[ChatRequest], *, deadline: float | None = None) -> list[Completion]:
        """One ``llm.generate`` for all requests (each with its own sampling parameters).

        The offline engine cannot stop inside a call, so ``deadline`` only skips the call when it has
        already passed (every request comes back as a skipped completion); a call that starts in time runs
        to its end. Bound the time of one call with ``max_new_tokens`` and the number of windows per round.
        """
        if self.llm is None:
            raise RuntimeError("the backend is closed")
        if deadline is not None and time.monotonic() >= deadline:
            return [skipped_completion(f"{self.name} did not start the batch in time") for _ in requests]
        prompts = [self.render(r) for r in requests]
        out: list[Completion | None] = [None] * len(requests)
        runnable: list[int] = []
        for i, prompt in enumerate(prompts):
            error = self._context_error(prompt)
            if error:
                out[i] = Completion(error=error)
            else:
                runnable.append(i)
        if runnable:
            params = [self._sampling_params_cls(**build_sampling_kwargs(requests[i].sampling)) for i in runnable]
            started = time.perf_counter()
            outputs = self.llm.generate(
                [prompts[i] for i in runnable], params, lora_request=self.lora_request, use_tqdm=False
            )
            seconds = time.perf_counter() - started
            if len(outputs) != len(runnable):
                raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(runnable)} prompts")
            for i, output in zip(runnable, outputs):
                out[i] = completion_from_output(output, seconds)
        return [c if c is not None else Completion(error="not generated") for c in out]

    def render(self, request: ChatRequest) -> str:
        """The prompt text for one request: chat template + ftfy over the whole string."""
        return render_prompt(self.tokenizer, request.messages, **self.chat_template_kwargs)

    def _context_error(self, prompt: str) -> str | None:
        # vLLM rejects the whole generate call when one prompt is longer than the context; fail that window only.
        if not self.max_model_len:
            return None
        n = self.count_tokens(prompt)
        if n >= self.max_model_len:
            return (
                f"prompt has {n} tokens but max_model_len is {self.max_model_len}; "
                "lower max_passage_tokens or window_size, or raise max_model_len"
            )
        return None

    def truncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        return truncate_with_tokenizer(self.tokenizer, texts, max_tokens)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def close(self) -> None:
        """Drop the engine and free GPU memory where possible."""
        self.llm = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass

    def __repr__(self) -> str:
        lora = f", lora_path={self.lora_path!r}" if self.lora_path else ""
        return f"VLLMBackend({self.model_name!r}{lora})"
