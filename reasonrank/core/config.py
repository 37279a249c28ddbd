"""Every reranker setting, declared once.

:class:`RerankerConfig` is the single source of the reranker's settings, their defaults, their
validation and their help text. :class:`~reasonrank.core.reranker.Reranker`, the three framework
adapters, their serialization and the CLI all derive their fields from it: a new setting added here
reaches all of them.

Each field's ``metadata`` says how the others present it:

- ``help``: one line for docstrings, pydantic field descriptions and ``--help``;
- ``secret``: never serialized, echoed or shown in ``repr`` (adapters wrap it in their secret type);
- ``cli``: whether ``reasonrank rerank``/``bench``/``serve`` expose it as a ``--flag``;
- ``choices``: the accepted names, for ``--help`` and error messages.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reasonrank.core.backends import BACKENDS
from reasonrank.core.prompts import PromptMode
from reasonrank.core.types import SamplingParams

__all__ = [
    "BACKENDS",
    "ON_ERROR",
    "PROMPT_MODES",
    "REASONING_MAX_NEW_TOKENS",
    "STRATEGIES",
    "RerankerConfig",
    "default_sampling",
    "check_setting_names",
    "iter_settings",
    "setting_fields",
]

STRATEGIES = ("sliding", "tournament")
PROMPT_MODES = tuple(m.value for m in PromptMode)
ON_ERROR = ("raise", "keep")
SAMPLING_KEYS = ("max_new_tokens", "temperature", "top_p", "top_k", "min_p", "seed")

# Reasoning budget of the published scripts: reasoning_maxlen 3072 + 100.
REASONING_MAX_NEW_TOKENS = 3172


def default_sampling(mode: PromptMode | str, window_size: int = 20) -> SamplingParams:
    """The authors' decoding settings for a prompt mode (recipe section 1.4)."""
    mode = PromptMode.parse(mode)
    if mode is PromptMode.QWEN3:
        return SamplingParams(REASONING_MAX_NEW_TOKENS, temperature=0.6, top_p=0.95, top_k=20, min_p=0.0)
    if mode is PromptMode.DIRECT:
        # Room for "[1] > [2] > ... > [w]": a few tokens per id.
        return SamplingParams(max_new_tokens=6 * window_size + 8, temperature=0.0)
    return SamplingParams(REASONING_MAX_NEW_TOKENS, temperature=0.0)


def _setting(default: Any = None, help: str = "", *, cli: bool = True, secret: bool = False, choices=None, **kw):
    meta = {"help": help, "cli": cli, "secret": secret, "choices": choices}
    if callable(default) and not isinstance(default, (str, int, float, bool, type(None))):
        return field(default_factory=default, metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass(frozen=True, kw_only=True)
class RerankerConfig:
    """The reranker's settings. ``None`` in a sampling field means the prompt mode's default.

    >>> RerankerConfig(window_size=10, step=5).window_size
    10
    >>> RerankerConfig(window_size=10, step=10)
    Traceback (most recent call last):
    ValueError: step must be smaller than window_size (10), got 10
    """

    model: str | None = _setting(
        None, "model name (openai: the server's model; None asks GET /models) or a local path / Hugging Face id"
    )
    backend: Any = _setting(
        "openai", "where windows are ranked: an OpenAI-compatible server, local transformers, or vLLM",
        choices=BACKENDS,
    )  # fmt: skip
    base_url: str | None = _setting(
        None, "OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (default $REASONRANK_BASE_URL)"
    )
    api_key: str | None = _setting(
        None, "key for the OpenAI-compatible server (default $REASONRANK_API_KEY); never serialized",
        secret=True, repr=False,
    )  # fmt: skip
    prompt_mode: str = _setting(
        "reasoning", "reasoning (reasonrank-7B/32B), qwen3 (reasonrank-8B) or direct (no reasoning)",
        choices=PROMPT_MODES,
    )  # fmt: skip
    window_size: int = _setting(20, "passages per LLM call")
    step: int = _setting(10, "how far the window moves (sliding) or how many drop out per window (tournament)")
    depth: int = _setting(100, "passages reranked; the rest follow in input order")
    strategy: Any = _setting(
        "sliding", "sliding (the paper's, sequential) or tournament (fewer sequential rounds)", choices=STRATEGIES
    )
    max_passage_tokens: int | None = _setting(512, "cut each passage to this many tokens (None: no cut)")
    max_new_tokens: int | None = _setting(None, "generation budget per window (None: the prompt mode's, 3172)")
    temperature: float | None = _setting(None, "sampling temperature (None: the prompt mode's; 0 is greedy)")
    top_p: float | None = _setting(None, "nucleus sampling (None: the prompt mode's)")
    top_k: int | None = _setting(None, "top-k sampling, -1 off (None: the prompt mode's)")
    min_p: float | None = _setting(None, "min-p sampling (None: the prompt mode's)")
    seed: int | None = _setting(None, "sampling seed")
    on_error: str = _setting(
        "raise", "a failed window raises, or keeps its order (flagged in the trace)", choices=ON_ERROR
    )
    deadline: float | None = _setting(
        None, "seconds one rerank call may take; then it returns the best order so far (None: no limit)"
    )
    cache: Any = _setting(
        None, "window cache: memory, memory:<entries>, sqlite:///path.db, redis://host:port/db (None: off)"
    )
    cache_sampled: bool = _setting(False, "also cache windows decoded with temperature > 0")
    show_progress: bool = _setting(False, "a progress bar over windows", cli=False)
    backend_kwargs: Mapping[str, Any] = _setting(
        dict, "extra keywords for the backend's constructor (timeout=, device=, ...)", cli=False
    )

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        self._check_choices()
        self._check_numbers()
        self._check_backend_options()

    def _check_choices(self) -> None:
        from reasonrank.core.backends.base import Backend
        from reasonrank.core.windows import Strategy

        for name in ("backend", "strategy"):  # names are case-insensitive
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, getattr(self, name).lower())
        if not (isinstance(self.backend, Backend) or self.backend in BACKENDS):
            raise ValueError(
                f"unknown backend {self.backend!r}; choose one of: {', '.join(BACKENDS)} (or pass a Backend)"
            )
        if not (isinstance(self.strategy, Strategy) or self.strategy in STRATEGIES):
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of: {', '.join(STRATEGIES)}")
        object.__setattr__(self, "prompt_mode", PromptMode.parse(self.prompt_mode).value)
        _choice("on_error", self.on_error, ON_ERROR)
        for name in ("show_progress", "cache_sampled"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        from reasonrank.core.cache import check_cache_spec

        check_cache_spec(self.cache)

    def _check_numbers(self) -> None:
        _integer("window_size", self.window_size, minimum=2)
        _integer("step", self.step, minimum=1)
        if self.step >= self.window_size:
            raise ValueError(f"step must be smaller than window_size ({self.window_size}), got {self.step}")
        _integer("depth", self.depth, minimum=1)
        _integer("max_passage_tokens", self.max_passage_tokens, minimum=1, optional=True)
        _integer("max_new_tokens", self.max_new_tokens, minimum=1, optional=True)
        _number("temperature", self.temperature, minimum=0.0)
        _number("top_p", self.top_p, minimum=0.0, maximum=1.0, open_minimum=True)
        _integer("top_k", self.top_k, minimum=-1, optional=True)
        if self.top_k == 0:
            raise ValueError("top_k must be -1 (off) or >= 1, got 0")
        _number("min_p", self.min_p, minimum=0.0, maximum=1.0)
        _integer("seed", self.seed, minimum=0, optional=True)
        _number("deadline", self.deadline, minimum=0.0, open_minimum=True)

    def _check_backend_options(self) -> None:
        from reasonrank.core.backends.base import Backend

        if not isinstance(self.backend_kwargs, Mapping):
            raise TypeError(f"backend_kwargs must be a dict, got {type(self.backend_kwargs).__name__}")
        object.__setattr__(self, "backend_kwargs", dict(self.backend_kwargs))
        for name in ("model", "base_url", "api_key"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
        if self.backend_name not in ("openai", "custom") and (self.base_url or self.api_key):
            raise ValueError(f"base_url and api_key apply to the openai backend, not {self.backend_name!r}")
        if isinstance(self.backend, Backend) and (self.backend_kwargs or self.base_url or self.api_key):
            raise ValueError("backend options cannot be combined with a ready Backend instance")

    # ------------------------------------------------------------------ derived values
    @property
    def backend_name(self) -> str:
        """The backend's name (``"custom"`` for a ready :class:`Backend` instance)."""
        return self.backend if isinstance(self.backend, str) else "custom"

    @property
    def sampling(self) -> SamplingParams:
        """Decoding settings: the prompt mode's defaults with this config's overrides."""
        base = default_sampling(self.prompt_mode, self.window_size)
        overrides = {k: getattr(self, k) for k in SAMPLING_KEYS if getattr(self, k) is not None}
        return dataclasses.replace(base, **overrides)

    def replace(self, **changes: Any) -> RerankerConfig:
        """A copy with some settings changed (validated like a new config)."""
        check_setting_names(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        """Settings as plain values; secret fields are left out unless ``secrets=True``."""
        return {f.name: getattr(self, f.name) for f in setting_fields() if secrets or not f.metadata["secret"]}

    @classmethod
    def split(cls, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(settings, other)``: the keywords that are settings, and the rest."""
        names = {f.name for f in setting_fields()}
        return {k: v for k, v in kwargs.items() if k in names}, {k: v for k, v in kwargs.items() if k not in names}


def setting_fields() -> tuple[dataclasses.Field, ...]:
    """The settings in declaration order, each with ``metadata`` (help, cli, secret, choices)."""
    return dataclasses.fields(RerankerConfig)


def iter_settings() -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """``(name, default, metadata)`` of every setting."""
    for f in setting_fields():
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        yield f.name, default, dict(f.metadata)


def check_setting_names(kwargs: Mapping[str, Any], owner: str = "RerankerConfig") -> None:
    """Raise ``TypeError`` naming the first keyword that is not a setting (with a close match, if any)."""
    names = [f.name for f in setting_fields()]
    for key in kwargs:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"{owner} got an unexpected keyword argument {key!r}{hint}")


# ---------------------------------------------------------------------- value checks
def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _integer(name: str, value: Any, *, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _number(name: str, value: Any, *, minimum: float, maximum: float = math.inf, open_minimum: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < minimum or (open_minimum and value == minimum) or value > maximum:
        low = "(" if open_minimum else "["
        raise ValueError(f"{name} must be in {low}{minimum}, {maximum}], got {value}")
