"""The shared reranker core: settings, prompts, passages, parsing, window schedules, backends. Imports no framework."""

from reasonrank.core.backends import Backend, make_backend
from reasonrank.core.config import RerankerConfig, default_sampling
from reasonrank.core.parsing import ParsedAnswer, parse_ranking, parse_response
from reasonrank.core.passages import prepare_passages
from reasonrank.core.prompts import PromptMode, build_messages
from reasonrank.core.reranker import Reranker
from reasonrank.core.types import (
    BackendError,
    ChatRequest,
    Completion,
    RerankResult,
    SamplingParams,
    WindowTrace,
)
from reasonrank.core.windows import SlidingWindow, Strategy, Tournament, sliding_windows

__all__ = [
    "Backend",
    "BackendError",
    "ChatRequest",
    "Completion",
    "ParsedAnswer",
    "PromptMode",
    "RerankResult",
    "Reranker",
    "RerankerConfig",
    "SamplingParams",
    "SlidingWindow",
    "Strategy",
    "Tournament",
    "WindowTrace",
    "build_messages",
    "default_sampling",
    "make_backend",
    "parse_ranking",
    "parse_response",
    "prepare_passages",
    "prepare_passages",
    "sliding_windows",
]
