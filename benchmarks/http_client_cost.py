"""Client CPU per HTTP request, by HTTP stack: where the client's time per window goes (issue 13).

The openai backend's async requests go through one aiohttp session (``http_client="aiohttp"``, the
default), or an ``httpx.AsyncClient`` per connection (``http_client="httpx"``). This measures both of the package's paths
and the HTTP stacks under them on the same requests: a window-sized chat request (~8 KB of JSON)
to the stand-in server of ``client_efficiency.py`` (its own process, answering at once), ``--requests``
requests over ``--concurrency`` connections, the client pinned to one CPU. Per stack: client CPU
milliseconds per request (JSON encoding of the request and decoding of the answer included), the
median of ``--runs`` runs.

- reasonrank with each ``http_client``: a loop client's ``send`` (time and size bounds, the answer read
  into the ``httpx.Response`` the retry policy reads).
- ``httpx.AsyncClient.stream``: what ``http_client="httpx"`` uses.
- ``httpx.AsyncHTTPTransport``: the same connection pool without the client layer (URL and header
  merging, auth, redirects, cookies, proxies from the environment).
- ``httpcore.AsyncConnectionPool``: the pool alone.
- ``aiohttp.ClientSession``: what ``http_client="aiohttp"`` (the default) uses.

    python benchmarks/http_client_cost.py [--requests 2000] [--concurrency 32] [--runs 3]

It prints numbers; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

import httpcore
import httpx
from client_efficiency import StandInServer

BODY = {
    "model": "stand-in",
    "messages": [{"role": "user", "content": "I will provide you with 20 passages. " + "word " * 1600}],
    "max_tokens": 2048,
}


async def _timed(worker, connections: list, requests: int) -> float:
    """Client CPU ms per request, ``requests`` spread over ``connections``."""
    each = requests // len(connections)
    cpu = time.process_time()
    await asyncio.gather(*(worker(connection, each) for connection in connections))
    return 1000 * (time.process_time() - cpu) / (each * len(connections))


async def httpx_client(url: str, requests: int, concurrency: int) -> float:
    clients = [httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) for _ in range(concurrency)]

    async def worker(client: httpx.AsyncClient, n: int) -> None:
        for _ in range(n):
            async with client.stream("POST", url, json=BODY) as response:
                json.loads(b"".join([chunk async for chunk in response.aiter_bytes()]))

    try:
        return await _timed(worker, clients, requests)
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))


async def httpx_transport(url: str, requests: int, concurrency: int) -> float:
    transports = [httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1)) for _ in range(concurrency)]
    timeout = httpx.Timeout(60.0).as_dict()

    async def worker(transport: httpx.AsyncHTTPTransport, n: int) -> None:
        for _ in range(n):
            request = httpx.Request("POST", url, json=BODY, extensions={"timeout": timeout})
            response = await transport.handle_async_request(request)
            try:
                json.loads(b"".join([chunk async for chunk in response.aiter_raw()]))
            finally:
                await response.aclose()

    try:
        return await _timed(worker, transports, requests)
    finally:
        await asyncio.gather(*(transport.aclose() for transport in transports))


async def httpcore_pool(url: str, requests: int, concurrency: int) -> float:
    pools = [httpcore.AsyncConnectionPool(max_connections=1) for _ in range(concurrency)]

    async def worker(pool: httpcore.AsyncConnectionPool, n: int) -> None:
        for _ in range(n):
            raw = json.dumps(BODY).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
            response = await pool.request("POST", url, headers=headers, content=raw)
            json.loads(response.content)

    try:
        return await _timed(worker, pools, requests)
    finally:
        await asyncio.gather(*(pool.aclose() for pool in pools))


def package(http_client: str):
    """The openai backend's own request path with ``http_client``: a loop client's ``send`` of a ``Call``
    (bounded in time and size, the answer read into the ``httpx.Response`` the exchanges read)."""

    async def measure(url: str, requests: int, concurrency: int) -> float:
        from reasonrank.core.backends.openai import OpenAIBackend

        backend = OpenAIBackend(
            "stand-in", base_url=url.rsplit("/chat/", 1)[0], concurrency=concurrency, http_client=http_client
        )
        async with backend:
            state = await backend._loop_client()
            call = backend.policy.call("POST", url, BODY)

            async def worker(_: int, n: int) -> None:
                for _ in range(n):
                    response, _seconds = await state.send(call)
                    response.json()

            return await _timed(worker, list(range(concurrency)), requests)

    return measure


async def aiohttp_session(url: str, requests: int, concurrency: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker(_: int, n: int) -> None:
            for _ in range(n):
                async with session.post(url, json=BODY) as response:
                    json.loads(await response.read())

        return await _timed(worker, list(range(concurrency)), requests)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    stacks = {
        'reasonrank, `http_client="httpx"`': package("httpx"),
        "httpx.AsyncClient.stream": httpx_client,
        "httpx.AsyncHTTPTransport (no client layer)": httpx_transport,
        "httpcore.AsyncConnectionPool": httpcore_pool,
    }
    try:
        import aiohttp  # noqa: F401

        stacks['reasonrank, `http_client="aiohttp"` (the default)'] = package("aiohttp")
        stacks["aiohttp.ClientSession"] = aiohttp_session
    except ImportError:
        print("(aiohttp is not installed: its rows are left out)\n")
    print(f"| HTTP stack | client CPU ms/request ({args.requests} requests, {args.concurrency} connections) |")
    print("|---|---:|")
    with StandInServer(0.0) as server:
        url = f"{server.base_url}/chat/completions"
        for stack in stacks.values():  # warm up: connections, imports
            asyncio.run(stack(url, args.concurrency * 4, args.concurrency))
        measured: dict[str, list[float]] = {name: [] for name in stacks}
        for _ in range(args.runs):  # interleaved, so a slow moment of the VM hits every stack
            for name, stack in stacks.items():
                measured[name].append(asyncio.run(stack(url, args.requests, args.concurrency)))
    for name, values in measured.items():
        print(f"| {name} | {statistics.median(values):.3f} |")


if __name__ == "__main__":
    main()
