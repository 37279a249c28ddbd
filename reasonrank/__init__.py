"""reasonrank: reasoning-intensive listwise reranking (ReasonRank, arXiv 2508.07050) for RAG frameworks."""

from reasonrank.core import (
    Backend,
    BackendError,
    PromptMode,
    Reranker,
    RerankerConfig,
    RerankResult,
    SlidingWindow,
    Tournament,
    WindowTrace,
    build_messages,
    parse_ranking,
)

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendError",
    "PromptMode",
    "RerankResult",
    "Reranker",
    "RerankerConfig",
    "SlidingWindow",
    "Tournament",
    "WindowTrace",
    "build_messages",
    "parse_ranking",
    "__version__",
]
