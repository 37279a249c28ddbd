"""Backends: where window prompts become text. Heavy ones are imported only when asked for."""

from __future__ import annotations

import importlib
from typing import Any

from reasonrank.core.backends.base import Backend

__all__ = ["Backend", "make_backend", "backend_class", "BACKENDS"]

# name -> (module, class); the module is imported on first use
_CLASSES = {
    "openai": ("reasonrank.core.backends.openai", "OpenAIBackend"),
    "transformers": ("reasonrank.core.backends.transformers", "TransformersBackend"),
    "vllm": ("reasonrank.core.backends.vllm", "VLLMBackend"),
}
BACKENDS = tuple(_CLASSES)


def backend_class(backend: str) -> type[Backend]:
    """The class of a backend by name (imports its module: ``ImportError`` without its extra)."""
    name = str(backend).lower()
    if name not in _CLASSES:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)} (or pass a Backend)")
    module, cls = _CLASSES[name]
    return getattr(importlib.import_module(module), cls)


def make_backend(backend: str, model: str | None, **kwargs: Any) -> Backend:
    """Build a backend by name. Keyword arguments go to the backend's constructor."""
    name = str(backend).lower()
    if model is None and name in ("transformers", "vllm"):
        raise ValueError(f"the {name} backend needs a model (a local path or a Hugging Face model id)")
    return backend_class(name)(model, **kwargs)
