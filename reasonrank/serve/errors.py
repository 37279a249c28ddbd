"""Errors in the reference APIs' shapes, client API keys, and the JSON access log.

Cohere's endpoints answer ``{"message": ...}`` (a body validation error is a 400, as Cohere's);
TEI's ``/rerank`` answers ``{"error": ..., "error_type": ...}`` (validation errors stay 422, as TEI's).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

__all__ = [
    "API_KEYS_ENV",
    "ServiceError",
    "error_response",
    "validation_message",
    "load_api_keys",
    "key_matches",
    "access_log",
    "log_access",
    "TEI_PATH",
]

API_KEYS_ENV = "REASONRANK_SERVE_API_KEYS"
TEI_PATH = "/rerank"
access_log = logging.getLogger("reasonrank.serve.access")

# TEI's error_type for a status.
_TEI_TYPES = {400: "Validation", 401: "Unauthorized", 413: "Validation", 422: "Validation", 429: "Overloaded"}


class ServiceError(Exception):
    """An error answered in the endpoint's reference shape."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(path: str, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The error body of the API that owns ``path``."""
    if path.rstrip("/") == TEI_PATH:
        body: dict[str, Any] = {"error": message, "error_type": _TEI_TYPES.get(status, "Backend")}
    else:
        body = {"message": message}
    return JSONResponse(body, status_code=status, headers=headers)


def validation_message(err: RequestValidationError) -> str:
    """FastAPI's validation errors as one line: ``invalid request: query: Field required; ...``."""
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        parts.append(f"{where}: {item.get('msg', 'invalid')}" if where else str(item.get("msg", "invalid")))
    return "invalid request: " + "; ".join(parts)


def load_api_keys(keys: Iterable[str] | None = None) -> tuple[bytes, ...]:
    """Client keys: ``keys``, else the comma-separated ``$REASONRANK_SERVE_API_KEYS``; empty: no auth."""
    if keys is None:
        keys = os.environ.get(API_KEYS_ENV, "").split(",")
    return tuple(k.strip().encode() for k in keys if k and k.strip())


def key_matches(authorization: str | None, keys: Sequence[bytes]) -> bool:
    """Whether ``Authorization: Bearer <key>`` holds one of ``keys`` (every key compared, in constant time)."""
    scheme, _, token = (authorization or "").partition(" ")
    presented = token.strip().encode() if scheme.lower() == "bearer" else b""
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented, key)
    return found and bool(presented)


def log_access(**fields: Any) -> None:
    """One JSON line per request (never document text, queries or keys)."""
    access_log.info(json.dumps(fields, separators=(",", ":"), sort_keys=True))
