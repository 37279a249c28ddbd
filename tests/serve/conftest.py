"""A real uvicorn server on 127.0.0.1 (in a thread) around the app, and a RankingServer upstream."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn

from reasonrank.serve import ServeOptions, create_app
from reasonrank.testing import RankingServer

API_KEY = "serve-test-key"


class ServiceThread:
    """``create_app(...)`` served by uvicorn in a daemon thread; ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> ServiceThread:
        self.thread.start()
        limit = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > limit:
                raise RuntimeError("the service did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def upstream_settings(upstream: RankingServer, **overrides: Any) -> dict[str, Any]:
    """Reranker settings pointing at the test upstream (no truncation: the ranking reads whole passages)."""
    return {"backend": "openai", "base_url": upstream.base_url, "max_passage_tokens": None, **overrides}


@pytest.fixture
def upstream() -> Iterator[RankingServer]:
    with RankingServer() as server:
        yield server


@pytest.fixture
def serve() -> Iterator[Callable[..., ServiceThread]]:
    """``serve(settings_or_reranker, options=None, api_keys=(), **kw) -> ServiceThread`` (stopped after the test)."""
    started: list[ServiceThread] = []

    def start(reranker: Any, options: ServeOptions | None = None, api_keys: Any = (), **kwargs: Any) -> ServiceThread:
        service = ServiceThread(create_app(reranker, options, api_keys=api_keys, **kwargs)).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` (not a timing assertion: only a guard against hanging forever)."""
    limit = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > limit:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)
