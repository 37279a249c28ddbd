"""Throughput of ``reasonrank serve`` at 1, 8 and 64 concurrent clients, over a slow simulated upstream.

    .venv/bin/python benchmarks/serve_throughput.py [--latency 0.2] [--documents 20] [--requests-per-client 4]

The upstream is :class:`reasonrank.testing.RankingServer` (a real OpenAI-compatible server on
127.0.0.1) answering every window after ``--latency`` seconds; the service runs in uvicorn on
127.0.0.1 and the clients are httpx. Printed per level: requests/s, p50/p99 latency, and per request
the backend rounds (``arerank_batch`` calls: concurrent requests share them, so this falls as
concurrency grows) and the upstream HTTP calls (one per window: a vLLM server batches those itself).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import socketserver
import statistics
import threading
import time
from typing import Any

import httpx
import uvicorn

from reasonrank.serve import ServeOptions, create_app
from reasonrank.testing import RankingServer

WORDS = "solar wind tide moon orbit gravity ocean planet comet star light heat energy river rock".split()


def _documents(n: int, seed: int) -> list[str]:
    return [" ".join(WORDS[(seed + i * k) % len(WORDS)] for k in range(1, 9)) for i in range(n)]


class _Service:
    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> _Service:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join()


async def _level(url: str, clients: int, per_client: int, documents: int) -> tuple[list[float], float]:
    """Latencies of ``clients * per_client`` requests sent by ``clients`` concurrent clients, and the wall time."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as http:

        async def client(c: int) -> None:
            for r in range(per_client):
                body = {
                    "model": "bench",
                    "query": f"{WORDS[c % 7]} {WORDS[r % 5]}",
                    "documents": _documents(documents, c + r),
                }
                started = time.perf_counter()
                response = await http.post("/v2/rerank", json=body)
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
    return latencies, time.perf_counter() - started


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per upstream window (default 0.2)")
    parser.add_argument("--documents", type=int, default=20, help="documents per request (default 20: one window)")
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--levels", default="1,8,64", help="concurrent clients (default 1,8,64)")
    args = parser.parse_args()
    # A real upstream (vLLM) accepts a burst of connections; the stdlib test server's backlog of 5 would
    # drop SYNs under 64 clients and add the kernel's 1 s retry to the upstream's latency.
    socketserver.TCPServer.request_queue_size = 1024

    with RankingServer(latency=args.latency) as upstream:
        settings = {"backend": "openai", "base_url": upstream.base_url, "max_passage_tokens": None, "concurrency": 64}
        app = create_app(settings, ServeOptions(max_batch=64), api_keys=())
        batches = app.state.metrics.batches
        print(f"upstream latency {args.latency:.2f} s per window, {args.documents} documents per request\n")
        print("clients  requests  req/s   p50 s   p99 s   rounds/request  upstream calls/request  mean batch")
        with _Service(app) as service:
            for clients in (int(x) for x in args.levels.split(",")):
                upstream.reset_stats()
                before = batches._value.get()
                latencies, wall = asyncio.run(_level(service.url, clients, args.requests_per_client, args.documents))
                n = len(latencies)
                rounds = batches._value.get() - before
                print(
                    f"{clients:>7}  {n:>8}  {n / wall:>5.1f}  {_p(latencies, 50):>6.3f}  {_p(latencies, 99):>6.3f}  "
                    f"{rounds / n:>14.3f}  {len(upstream.chat_requests) / n:>22.2f}  {n / rounds:>10.1f}"
                )


if __name__ == "__main__":
    main()
