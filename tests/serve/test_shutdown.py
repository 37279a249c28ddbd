"""``reasonrank serve`` as a real process: SIGTERM lets the request in flight finish with a 200."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from reasonrank.testing import RankingServer, lexical_ranking

from .conftest import wait_until

QUERY = "graceful shutdown of a web server"
DOCS = ["a server that stops gracefully on shutdown", "bread recipes", "web pages"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _health(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_sigterm_finishes_the_request_in_flight():
    gate = threading.Event()

    def held_ranking(query: str, passages: list[str]) -> list[int]:
        gate.wait(60)
        return lexical_ranking(query, passages)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with RankingServer(held_ranking) as upstream:
        command = [sys.executable, "-m", "reasonrank.cli.main", "serve", "--port", str(port),
                   "--backend", "openai", "--base-url", upstream.base_url, "--model", "reasonrank-test",
                   "--max-passage-tokens", "0"]  # fmt: skip
        env = {**os.environ, "REASONRANK_SERVE_API_KEYS": "shutdown-key"}
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: process.poll() is not None or _health(url), "the service to start", timeout=120)
            assert process.poll() is None, process.communicate()[1]
            with ThreadPoolExecutor(1) as pool:
                in_flight = pool.submit(
                    httpx.post,
                    url + "/v2/rerank",
                    json={"query": QUERY, "documents": DOCS},
                    headers={"Authorization": "Bearer shutdown-key"},
                    timeout=60,
                )
                wait_until(lambda: upstream.in_flight >= 1, "the request to reach the upstream")
                process.send_signal(signal.SIGTERM)
                wait_until(lambda: not _health(url), "the service to stop accepting new connections")
                gate.set()
                response = in_flight.result()
            assert response.status_code == 200
            assert [r["index"] for r in response.json()["results"]] == lexical_ranking(QUERY, DOCS)
            _, stderr = process.communicate(timeout=60)
            assert process.returncode in (0, -signal.SIGTERM), stderr  # uvicorn re-raises the signal once done
            assert "Application shutdown complete" in stderr
            access = [line for line in stderr.splitlines() if line.startswith("{")]
            assert any('"status":200' in line and '"endpoint":"/v2/rerank"' in line for line in access)
            assert "shutdown-key" not in stderr
        finally:
            gate.set()
            if process.poll() is None:
                process.kill()
                process.communicate()
