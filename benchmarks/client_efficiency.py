"""How well one client process keeps a model server busy (issue 13): efficiency and windows/s.

The stand-in model server runs in its own process (uvicorn with uvloop and httptools, from the
``dev`` extra; a bare ASGI app, pinned to the last CPU when there are two or more): it answers each
window after ``--latency`` seconds with a valid ranking
(passages reversed) and reports token usage. The client is the real openai backend in this process
(pinned to CPU 0, so "one core" is literal), over DL19's 43 queries x BM25 top-100.

1. **Efficiency** at a simulated ``--latency`` (0.2 s): for sliding and tournament, through
   ``rerank_batch`` and through ``asyncio.gather`` of ``arerank``, at concurrency 8, 32 and 128, with
   each ``--http-client``. Efficiency is the concurrency-bound lower bound of the wall time over the
   measured wall time (1.0: the client adds nothing). The bound: ``concurrency`` slots finish at most
   ``concurrency`` windows per ``latency``, counted round by round, and no query's chain of rounds is
   shorter than its rounds (see ``lower_bound``; the simple ``max(rounds, ceil(windows /
   concurrency))`` is printed beside it). Where the first round sets that bound, a second table adds
   the client's own time to send the windows that open the schedule, read from when the requests
   reached the server (``first_wave_bound``): what no schedule on this client beats.
2. **Client throughput at 0 latency**: windows/s the client sustains when the server answers at once
   (the client's own cost per window, HTTP included), for both strategies and both APIs at concurrency
   32, over ``--repeat`` copies of the queries in one call (each copy's passages end with its number, so
   no cache serves a copy; a new reranker each: start-up included). At a few windows/s per GPU for a
   7B reasoning model, N windows/s of client drives ~N/3 GPUs.

    python benchmarks/client_efficiency.py [--latency 0.2] [--concurrency 8 32 128] [--queries 43]

``--warm`` keeps ftfy's caches between runs and repeats the same candidates: what the client costs
when passages come back (ftfy, the price of byte-identical prompts, is then mostly cached). Each
figure is the median of ``--runs`` runs (this VM's timings vary by ~30% from run to run). It
prints numbers; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

from reasonrank import Reranker
from reasonrank.core import prompts
from reasonrank.core.windows import make_strategy

_COUNT = re.compile(rb"provide you with (\d+) passages")


# ------------------------------------------------------------------ the stand-in server (its own process)
def make_app(latency: float):
    """A bare ASGI app: POST /v1/chat/completions answers the window reversed after ``latency`` s.

    GET /arrivals returns (and forgets) when each chat request so far had reached the server, whole
    (``time.monotonic()``, the clock of every process on the machine).
    """
    arrivals: list[float] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"].endswith("/models"):
            payload = {"object": "list", "data": [{"id": "stand-in", "object": "model"}]}
        elif scope["path"].endswith("/arrivals"):
            payload, arrivals[:] = list(arrivals), []
        else:
            arrivals.append(time.monotonic())
            if latency:
                await asyncio.sleep(latency)
            match = _COUNT.search(body)
            n = int(match.group(1)) if match else 1
            answer = " > ".join(f"[{i}]" for i in range(n, 0, -1))
            text = f"<think>Reversed.</think>\n<answer>{answer}</answer>"
            payload = {
                "id": "x",
                "object": "chat.completion",
                "model": "stand-in",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": len(body) // 4,
                    "completion_tokens": 60,
                    "total_tokens": len(body) // 4 + 60,
                },
            }
        raw = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": raw})

    return app


def serve(port: int, latency: float) -> None:
    import uvicorn

    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {os.cpu_count() - 1})
    uvicorn.run(make_app(latency), host="127.0.0.1", port=port, log_level="error", access_log=False, backlog=4096)


class StandInServer:
    """The stand-in server in a subprocess, for a ``with`` block; ``base_url`` ends in ``/v1``."""

    def __init__(self, latency: float) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.latency = latency
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> StandInServer:
        cmd = [sys.executable, __file__, "--serve", str(self.port), "--latency", str(self.latency)]
        self.process = subprocess.Popen(cmd)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the stand-in server did not start")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(10)

    def arrivals(self) -> list[float]:
        """When each chat request since the last call reached the server (``time.monotonic()``), in order."""
        with urllib.request.urlopen(f"{self.base_url}/arrivals", timeout=10) as response:
            return sorted(json.load(response))


# ------------------------------------------------------------------ the client
WARM = False  # --warm: keep ftfy's caches (passages seen before)


def run(base_url: str, strategy: str, api: str, concurrency: int, queries, candidates, http_client: str = "httpx"):
    """(wall seconds, results, start) of one configuration on a fresh Reranker, ftfy's caches cleared.

    ``start`` is the ``time.monotonic()`` of its start, to read the server's arrivals against.
    """
    if not WARM:
        prompts._fix_segment.cache_clear()
        prompts._fixed_passage_line.cache_clear()
    rr = Reranker(
        "stand-in",
        base_url=base_url,
        strategy=strategy,
        concurrency=concurrency,
        truncation="words",
        http_client=http_client,
    )
    with rr:
        started = time.monotonic()
        start = time.perf_counter()
        if api == "rerank_batch":
            results = rr.rerank_batch(queries, candidates)
        else:

            async def together():
                return await asyncio.gather(*(rr.arerank(q, c) for q, c in zip(queries, candidates)))

            results = asyncio.run(together())
        wall = time.perf_counter() - start
    failed = sum(r.usage.failed_calls + r.usage.skipped_windows for r in results)
    if failed:
        raise RuntimeError(f"{failed} windows failed or were skipped: the figures would be wrong")
    return wall, results, started


def warm_up(server: StandInServer, http_clients, queries, candidates) -> None:
    """Two queries through each HTTP client first: the lazy imports (ftfy, aiohttp) are not timed."""
    for http_client in http_clients:
        run(server.base_url, "sliding", "rerank_batch", 32, queries[:2], candidates[:2], http_client)
    server.arrivals()  # (forget them)


def round_sizes(strategy: str, n: int) -> list[int]:
    """The windows of each round of one query of ``n`` passages."""
    plan = make_strategy(strategy).plan(n)
    sizes = []
    while step := plan.pending():
        sizes.append(len(step))
        plan.apply([list(range(len(w))) for w in step])
    return sizes


def lower_bound(strategy: str, candidates, concurrency: int, latency: float) -> float:
    """No schedule's wall time is shorter: ``latency x max over j of (ceil(W_j / c) + rounds left after j)``.

    ``W_j``: the windows of every query's first ``j`` rounds. ``concurrency`` slots finish at most ``c``
    windows per ``latency``, so the last of them ends after ``ceil(W_j / c)`` latencies, and its query
    still has its rounds after ``j`` to run one by one (at least the fewest any query has left). ``j = 0``
    is a query's chain of rounds, the last ``j`` all windows over ``c``: the simple bound. The two
    differ for tournament at c=128: its first rounds have 5 and 2 windows a query, 215 and 301 for 43
    queries, two and three waves of 128.
    """
    rounds = [round_sizes(strategy, len(passages)) for passages in candidates]
    best = 0
    for j in range(max(len(r) for r in rounds) + 1):
        done = sum(sum(r[:j]) for r in rounds)
        left = min(max(len(r) - j, 0) for r in rounds)
        best = max(best, -(-done // concurrency) + left)
    return latency * best


def first_wave_bound(strategy: str, candidates, concurrency: int, latency: float, arrived: list[float]) -> float | None:
    """A lower bound that counts when the client's requests reached the server (``arrived``: seconds
    from the start, sorted), where it is the same bound as ``lower_bound`` plus the client's first wave;
    else None.

    The last of the first round's ``W`` windows reaches the server no sooner than ``arrived[W - 1]``
    when they fit the ``c`` slots, and when they fill them once over, no sooner than ``arrived[W - c
    - 1] + latency`` (those beyond the first ``c`` leave only as slots free, and a slot frees no sooner
    than ``latency`` after its request arrived). Its query still has all its rounds to run from then
    (at least the fewest any query has). So the client's time to send the windows that open the
    schedule (one core: ftfy on new passages, a new connection each, the request) is added to the wall
    time whatever the schedule; what remains of the difference is the engine's.
    """
    rounds = [round_sizes(strategy, len(passages)) for passages in candidates]
    first, chain = sum(r[0] for r in rounds), min(len(r) for r in rounds)
    if first <= concurrency:
        last_index, waited = first, chain  # the last query's chain starts when its first window arrives
    elif first <= 2 * concurrency:
        last_index, waited = first - concurrency, chain + 1
    else:
        return None
    if latency * waited < lower_bound(strategy, candidates, concurrency, latency) or len(arrived) < last_index:
        return None  # the bound is set by later rounds: this one says less
    return arrived[last_index - 1] + latency * waited


def simple_bound(strategy: str, candidates, concurrency: int, latency: float) -> float:
    """``latency x max(rounds, ceil(windows / concurrency))``: the bound without counting round by round."""
    rounds = [round_sizes(strategy, len(passages)) for passages in candidates]
    return latency * max(max(len(r) for r in rounds), -(-sum(map(sum, rounds)) // concurrency))


def efficiency(args, queries, candidates, combos) -> None:
    """Print the efficiency table, and the first-wave table where a first round overflows the slots once."""
    print(f"## Efficiency at {args.latency:g} s per window (lower bound / wall)\n")
    print("| strategy | API | HTTP client | " + " | ".join(f"c={c}" for c in args.concurrency) + " |")
    print("|---|---|---|" + "---:|" * len(args.concurrency))
    first_waves = []
    with StandInServer(args.latency) as server:
        warm_up(server, args.http_client, queries, candidates)
        for strategy, api, http_client in combos:
            cells = []
            for c in args.concurrency:
                walls, floors = [], []
                for _ in range(args.runs):
                    server.arrivals()  # (forget earlier runs')
                    wall, _, started = run(server.base_url, strategy, api, c, queries, candidates, http_client)
                    walls.append(wall)
                    arrived = [t - started for t in server.arrivals()]
                    floors.append(first_wave_bound(strategy, candidates, c, args.latency, arrived))
                wall = statistics.median(walls)
                bound = lower_bound(strategy, candidates, c, args.latency)
                simple = simple_bound(strategy, candidates, c, args.latency)
                shown = f"{bound:.2f} s" if simple == bound else f"{bound:.2f} s; simple bound {simple:.2f} s"
                cells.append(f"{bound / wall:.2f} ({wall:.2f} s vs {shown})")
                if None not in floors:
                    first_waves.append((strategy, api, http_client, c, bound, walls, floors))
            print(f"| {strategy} | `{api}` | {http_client} | " + " | ".join(cells) + " |")
    if first_waves:
        print(
            "\nWhere the first round sets the bound, the client's time to send the windows that open the"
            " schedule is added whatever the schedule (`first_wave_bound`):\n"
        )
        print(
            "| strategy | API | HTTP client | c | lower bound | + client's first wave | wall | efficiency against it |"
        )
        print("|---|---|---|---:|---:|---:|---:|---:|")
        for strategy, api, http_client, c, bound, walls, floors in first_waves:
            wall, floor = statistics.median(walls), statistics.median(floors)
            ratio = statistics.median(f / w for f, w in zip(floors, walls))
            print(
                f"| {strategy} | `{api}` | {http_client} | {c} | {bound:.2f} s | {floor:.2f} s"
                f" (+{floor - bound:.3f}) | {wall:.2f} s | {ratio:.2f} |"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="dl19")
    p.add_argument("--queries", type=int, default=None, help="first N queries (default: all 43)")
    p.add_argument("--latency", type=float, default=0.2, help="seconds per window at the stand-in server")
    p.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--throughput-concurrency", type=int, default=32)
    p.add_argument("--runs", type=int, default=3, help="runs of each configuration; the median is printed")
    p.add_argument("--repeat", type=int, default=5, help="the queries repeated in one call for the throughput")
    p.add_argument("--warm", action="store_true", help="keep ftfy's caches: the cost when passages repeat")
    p.add_argument(
        "--http-client",
        nargs="+",
        choices=("httpx", "aiohttp"),
        default=["httpx", "aiohttp"],
        help="the openai backend's async HTTP client(s) to measure side by side (default: both)",
    )
    p.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    global WARM
    WARM = args.warm
    if args.serve is not None:
        return serve(args.serve, args.latency)

    from reasonrank.evaluation import load_dataset

    logging.getLogger("reasonrank").setLevel(logging.ERROR)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    ds = load_dataset(args.dataset).limit(args.queries)
    queries = [ds.queries[q] for q in ds.qids]
    candidates = [[c.passage() for c in ds.candidates[q]] for q in ds.qids]
    combos = [
        (s, a, h)
        for s in ("sliding", "tournament")
        for a in ("rerank_batch", "gather(arerank)")
        for h in args.http_client
    ]
    print(
        f"{ds.name}: {len(queries)} queries x {len(candidates[0])} passages; client on one core, server in its own process\n"
    )

    efficiency(args, queries, candidates, combos)

    c = args.throughput_concurrency
    print(f"\n## Client throughput at 0 s per window (concurrency {c}, one client core, queries x {args.repeat})\n")
    print("| strategy | API | HTTP client | windows | wall s | windows/s | client ms/window |")
    print("|---|---|---|---:|---:|---:|---:|")
    reps = args.repeat
    # each copy's passages end with the copy's number: no cache (ftfy's included) serves a copy
    copies = [[{**p, "text": f"{p['text']} {k}"} for p in passages] for k in range(reps) for passages in candidates]
    if WARM:  # the same candidates again and again: ftfy's fixes are cached
        copies = candidates * reps
    with StandInServer(0.0) as server:
        warm_up(server, args.http_client, queries, candidates)
        for strategy, api, http_client in combos:
            measured = []
            for _ in range(args.runs):
                cpu = time.process_time()
                wall, results, _ = run(server.base_url, strategy, api, c, queries * reps, copies, http_client)
                measured.append((wall, time.process_time() - cpu))
            wall, cpu = statistics.median(w for w, _ in measured), statistics.median(c for _, c in measured)
            windows = sum(r.usage.calls for r in results)
            print(
                f"| {strategy} | `{api}` | {http_client} | {windows} | {wall:.2f} | {windows / wall:,.0f} "
                f"| {1000 * cpu / windows:.2f} |"
            )


if __name__ == "__main__":
    main()
