"""The rerank HTTP service: Cohere ``/v2/rerank`` and ``/v1/rerank`` (Jina-compatible), TEI ``/rerank``.

>>> from reasonrank.serve import create_app
>>> app = create_app({"backend": "openai", "base_url": "http://gpu-host:8000/v1"})   # run with uvicorn

Concurrent requests share the reranker's rounds through a :class:`~reasonrank.serve.MicroBatcher`;
``/health``, ``/v1/models`` and ``/metrics`` (Prometheus) complete the set.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from reasonrank.core.passages import passage_text
from reasonrank.core.types import BackendError
from reasonrank.serve.batcher import MicroBatcher, QueueFull
from reasonrank.serve.errors import (
    TEI_PATH,
    ServiceError,
    error_response,
    key_matches,
    load_api_keys,
    log_access,
    validation_message,
)
from reasonrank.serve.metrics import ServiceMetrics
from reasonrank.serve.schemas import (
    CohereRerankRequest,
    TEIRerankRequest,
    cohere_response,
    tei_response,
    usage_of,
)

__all__ = ["ServeOptions", "create_app", "build_service_reranker"]

ENDPOINTS = ("/v2/rerank", "/v1/rerank", TEI_PATH, "/health", "/v1/models", "/metrics")
OPEN_PATHS = frozenset({"/health", "/metrics"})


@dataclass(frozen=True)
class ServeOptions:
    """Limits and batching of the service.

    ``max_documents``/``max_chars`` bound one request (documents; characters of query + documents);
    ``default_deadline`` (seconds) applies to requests that give none; ``max_queue`` bounds requests
    waiting or running (then 429 with ``Retry-After: retry_after``); ``max_batch`` requests arriving
    within ``batch_wait_ms`` share one ``arerank_batch``; ``max_running_batches`` (None: 4 for the
    openai backend, 1 for a local model) bounds the batches in flight.
    """

    max_documents: int = 1000
    max_chars: int = 2_000_000
    default_deadline: float | None = None
    max_queue: int = 256
    max_batch: int = 32
    batch_wait_ms: float = 5.0
    max_running_batches: int | None = None
    retry_after: int = 1

    def __post_init__(self) -> None:
        for name in ("max_documents", "max_chars", "max_queue", "max_batch", "retry_after"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.default_deadline is not None and self.default_deadline <= 0:
            raise ValueError(f"default_deadline must be > 0 seconds, got {self.default_deadline}")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")


def build_service_reranker(reranker_or_settings: Any) -> tuple[Any, bool]:
    """``(reranker, owned)``: a ready reranker as is, or one built from a ``RerankerConfig`` or a mapping."""
    from reasonrank import Reranker
    from reasonrank.core.config import RerankerConfig

    if isinstance(reranker_or_settings, RerankerConfig):
        settings = reranker_or_settings.to_dict(secrets=True)
        backend_kwargs = settings.pop("backend_kwargs", None) or {}
        return Reranker(**settings, **backend_kwargs), True
    if isinstance(reranker_or_settings, Mapping):
        return Reranker(**reranker_or_settings), True
    if not hasattr(reranker_or_settings, "arerank_batch"):
        raise TypeError(f"expected a Reranker, a RerankerConfig or a dict of settings, got {reranker_or_settings!r}")
    return reranker_or_settings, False


class _Service:
    """What the routes share: the reranker, its batcher, limits and metrics."""

    def __init__(self, reranker: Any, options: ServeOptions, model_name: str, metrics: ServiceMetrics) -> None:
        local = getattr(reranker, "backend_name", "openai") != "openai"
        self.options = options
        self.model_name = model_name
        self.metrics = metrics
        self.batcher = MicroBatcher(
            reranker,
            max_batch=options.max_batch,
            max_wait=options.batch_wait_ms / 1000,
            max_queue=options.max_queue,
            max_running=options.max_running_batches or (1 if local else 4),
            retry_after=options.retry_after,
            on_batch=metrics.observe_batch,
        )
        metrics.queue.set_function(lambda: self.batcher.admitted)

    def check_limits(self, query: str, passages: Sequence[Any], status_too_many: int = 400) -> None:
        """Validate one request's size and documents before it joins a batch (one bad request fails alone)."""
        if not query.strip():
            raise ServiceError(400, "invalid request: query must be a non-empty string")
        limit = self.options.max_documents
        if len(passages) > limit:
            raise ServiceError(
                status_too_many, f"too many documents: {len(passages)} (this service's limit is {limit})"
            )
        chars = len(query)
        for i, passage in enumerate(passages):
            try:
                chars += len(passage_text(passage))
            except (TypeError, ValueError) as err:
                raise ServiceError(400, f"invalid request: documents[{i}]: {err}") from None
        if chars > self.options.max_chars:
            raise ServiceError(
                413,
                f"request too large: {chars} characters of query and documents (this service's limit is {self.options.max_chars})",
            )

    async def rerank(self, request: Request, query: str, passages: Sequence[Any], deadline: float | None) -> tuple[Any, float | None, list[str]]:  # fmt: skip
        """Rerank through the batcher: ``(result, deadline applied, warnings)``."""
        deadline = deadline if deadline is not None else self.options.default_deadline
        warnings = []
        if deadline is not None and not self.batcher.deadline_supported:
            warnings.append("deadline ignored: this reasonrank version has no deadline support")
            deadline = None
        record = request.state.record
        record["documents"] = len(passages)
        try:
            result = await self.batcher.submit(query, passages, deadline)
        except QueueFull as err:
            raise ServiceError(429, str(err), {"Retry-After": str(err.retry_after)}) from None
        except BackendError as err:
            raise ServiceError(502, f"the model backend failed: {err}") from None
        except (ValueError, TypeError) as err:
            raise ServiceError(400, f"invalid request: {err}") from None
        usage = usage_of(result)
        complete = bool(getattr(result, "complete", True))
        self.metrics.observe_usage(len(passages), usage, complete)
        record.update(
            windows=usage["calls"],
            cached_windows=usage["cached_calls"],
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            complete=complete,
        )
        return result, deadline, warnings


def create_app(
    reranker_or_settings: Any,
    options: ServeOptions | None = None,
    *,
    api_keys: Iterable[str] | None = None,
    model_name: str | None = None,
    close_reranker: bool | None = None,
) -> FastAPI:
    """The ASGI app serving ``reranker_or_settings`` (a Reranker, a RerankerConfig or a dict of settings).

    ``api_keys`` (None: ``$REASONRANK_SERVE_API_KEYS``, comma-separated; empty: open) are the client
    keys, sent as ``Authorization: Bearer <key>``; ``/health`` and ``/metrics`` stay open. The reranker
    is closed when the app shuts down, after the requests in flight have finished, if it was built
    here or ``close_reranker=True``.
    """
    reranker, owned = build_service_reranker(reranker_or_settings)
    owned = owned if close_reranker is None else close_reranker
    options = options or ServeOptions()
    keys = load_api_keys(api_keys)
    metrics = ServiceMetrics()
    service = _Service(reranker, options, model_name or getattr(reranker, "model", None) or "reasonrank", metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await service.batcher.close()
        if owned:
            await reranker.aclose()

    app = FastAPI(title="reasonrank serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    app.state.reranker = reranker
    app.state.metrics = metrics
    _add_middleware(app, service, keys)
    _add_error_handlers(app)
    _add_routes(app, service)
    return app


def _add_middleware(app: FastAPI, service: _Service, keys: tuple[bytes, ...]) -> None:
    @app.middleware("http")
    async def auth_metrics_and_access_log(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        path = request.url.path
        endpoint = path if path in ENDPOINTS else "other"
        record: dict[str, Any] = {}
        request.state.record = record
        if keys and path not in OPEN_PATHS and not key_matches(request.headers.get("authorization"), keys):
            response: Response = error_response(path, 401, "invalid api token", {"WWW-Authenticate": "Bearer"})
        else:
            try:
                response = await call_next(request)
            except Exception as err:  # noqa: BLE001 - an unexpected failure still gets a body and a log line
                record["error"] = type(err).__name__
                response = error_response(path, 500, "internal server error")
        seconds = time.perf_counter() - started
        if endpoint != "/metrics":
            service.metrics.requests.labels(endpoint, str(response.status_code)).inc()
            service.metrics.latency.labels(endpoint).observe(seconds)
        log_access(
            endpoint=endpoint,
            method=request.method,
            status=response.status_code,
            latency_ms=round(seconds * 1000, 1),
            client=request.client.host if request.client else None,
            **record,
        )
        return response


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, err: ServiceError) -> JSONResponse:
        return error_response(request.url.path, err.status, err.message, err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, err: RequestValidationError) -> JSONResponse:
        status = 422 if request.url.path.rstrip("/") == TEI_PATH else 400
        return error_response(request.url.path, status, validation_message(err))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return error_response(request.url.path, err.status_code, str(err.detail), getattr(err, "headers", None))


def _add_routes(app: FastAPI, service: _Service) -> None:
    async def cohere(request: Request, body: CohereRerankRequest, api_version: str) -> dict[str, Any]:
        if body.top_n is not None and body.top_n < 1:
            raise ServiceError(400, f"invalid request: top_n must be at least 1, got {body.top_n}")
        passages = body.passages()
        service.check_limits(body.query, passages)
        result, deadline, warnings = await service.rerank(request, body.query, passages, body.deadline)
        request_id = str(uuid.uuid4())
        request.state.record["id"] = request_id
        return cohere_response(
            body,
            result,
            request_id=request_id,
            api_version=api_version,
            model=service.model_name,
            deadline=deadline,
            warnings=warnings,
        )

    @app.post("/v2/rerank")
    async def rerank_v2(request: Request, body: CohereRerankRequest) -> dict[str, Any]:
        """Cohere's v2 rerank."""
        return await cohere(request, body, "2")

    @app.post("/v1/rerank")
    async def rerank_v1(request: Request, body: CohereRerankRequest) -> dict[str, Any]:
        """Cohere's v1 rerank; also Jina's ``/v1/rerank`` (``model`` and ``usage.total_tokens`` included)."""
        return await cohere(request, body, "1")

    @app.post(TEI_PATH)
    async def rerank_tei(request: Request, body: TEIRerankRequest) -> list[dict[str, Any]]:
        """Hugging Face text-embeddings-inference's rerank."""
        service.check_limits(body.query, body.texts, status_too_many=413)
        result, _, _ = await service.rerank(request, body.query, body.texts, body.deadline)
        return tei_response(body, result)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": service.model_name, "object": "model", "owned_by": "reasonrank"}]}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)
