"""Backends: where window prompts become text. Heavy ones are imported only when asked for."""

from __future__ import annotations

from typing import Any

from reasonrank.core.backends.base import Backend

__all__ = ["Backend", "make_backend", "BACKENDS"]

BACKENDS = ("openai", "transformers", "vllm")


def make_backend(backend: str, model: str | None, **kwargs: Any) -> Backend:
    """Build a backend by name. Keyword arguments go to the backend's constructor."""
    name = str(backend).lower()
    if name == "openai":
        from reasonrank.core.backends.openai import OpenAIBackend

        return OpenAIBackend(model, **kwargs)
    if model is None:
        raise ValueError(f"the {name} backend needs a model (a local path or a Hugging Face model id)")
    if name == "transformers":
        from reasonrank.core.backends.transformers import TransformersBackend

        return TransformersBackend(model, **kwargs)
    if name == "vllm":
        from reasonrank.core.backends.vllm import VLLMBackend

        return VLLMBackend(model, **kwargs)
    raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)} (or pass a Backend)")
