"""The interface every backend implements."""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from reasonrank.core.types import ChatRequest, Completion

__all__ = ["Backend", "DEADLINE_EXCEEDED", "accepts_deadline", "skipped_completion", "word_truncate"]

#: the error of a request cut by its deadline (a Completion with status "skipped")
DEADLINE_EXCEEDED = "deadline exceeded"


def skipped_completion(detail: str = "") -> Completion:
    """The completion of a request not finished by the deadline."""
    return Completion(error=f"{DEADLINE_EXCEEDED}{': ' + detail if detail else ''}", status="skipped")


def accepts_deadline(method: Callable[..., Any]) -> bool:
    """Whether a ``generate``/``agenerate`` takes ``deadline=`` (backends written before it may not)."""
    return _accepts_deadline(getattr(method, "__func__", method))


@functools.lru_cache(maxsize=256)
def _accepts_deadline(function: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "deadline" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def word_truncate(text: str, max_words: int) -> str:
    """Keep the first ``max_words`` whitespace-separated words (used when no tokenizer is available)."""
    if len(text) <= 2 * max_words:  # more than k words take 2k + 1 characters or more: no split
        return text
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words])


class Backend(ABC):
    """Generates window outputs for batches of chat requests.

    ``generate`` returns one :class:`Completion` per request, in order. A request that fails after the
    backend's own retries comes back with ``error`` set rather than raising, so one bad window does not
    lose the others; the reranker then applies its ``on_error`` policy. A failure that would repeat
    for every request (bad key, dead server) is marked ``fatal=True``, and the reranker stops the
    call's other windows. Failures that affect every request and are known up front (a model that
    cannot load) raise.

    ``deadline`` is an absolute :func:`time.monotonic` instant: return by about then, with requests
    not finished by it as :func:`skipped_completion` (``status="skipped"``); never raise for it.
    Backends that cannot stop mid-request finish the current batch and skip the rest.
    """

    #: what runs the model: "openai", "transformers", "vllm", ...
    kind: str = "backend"
    #: the model it runs (a server's model name, a local path or a Hugging Face id)
    model_name: str = ""
    #: requests it serves at once, each independently (an HTTP client's limit); None: a local backend
    #: that batches, to which the async engine sends one batch at a time
    concurrency: int | None = None

    @property
    def truncation_waits(self) -> bool:
        """Whether ``atruncate`` waits on I/O (a tokenizer server): the async engine then lets other
        queries prepare their windows meanwhile. False: truncation is local CPU work."""
        return False

    @property
    def name(self) -> str:
        """A short label for traces and errors: ``"<kind>:<model_name>"`` unless set explicitly."""
        explicit = self.__dict__.get("_name")
        if explicit is not None:
            return explicit
        return f"{self.kind}:{self.model_name}" if self.model_name else self.kind

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def render(self, request: ChatRequest) -> str | None:
        """The prompt text the model reads for ``request``; ``None``: the chat messages are sent as they are."""
        return None

    @abstractmethod
    def generate(self, requests: Sequence[ChatRequest], *, deadline: float | None = None) -> list[Completion]: ...

    async def agenerate(self, requests: Sequence[ChatRequest], *, deadline: float | None = None) -> list[Completion]:
        """Async generation. Local backends compute in a worker thread; HTTP backends override this."""
        import asyncio

        if deadline is None or not accepts_deadline(self.generate):
            return await asyncio.to_thread(self.generate, requests)
        return await asyncio.to_thread(functools.partial(self.generate, requests, deadline=deadline))

    def truncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Keep the first ``max_tokens`` tokens of each text, by the model's own tokenizer where possible.

        The default approximates tokens with words (about 0.75 words per token).
        """
        max_words = max(1, int(max_tokens * 0.75))
        return [word_truncate(t, max_words) for t in texts]

    async def atruncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        return self.truncate(texts, max_tokens)

    def count_tokens(self, text: str) -> int | None:
        """Tokens in ``text`` by the model's tokenizer, or None when unknown."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections, engines)."""

    async def aclose(self) -> None:
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
