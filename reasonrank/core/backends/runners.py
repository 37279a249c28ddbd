"""The I/O of :mod:`reasonrank.core.backends.http`: runners that make an exchange's requests, and async clients per loop.

:func:`run` and :func:`arun` bound every request by wall-clock time (``Call.timeout``, cut to
``Call.deadline``), not per read, and read the body as a stream that stops at ``Call.max_bytes``.
An async client belongs to one event loop; :class:`LoopClient` keeps that loop's clients with its
concurrency limit and closes them when the loop shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from reasonrank.core.backends.http import Call, DeadlineExceeded, ResponseTooLarge, Sleep, Steps

__all__ = [
    "Body",
    "Lease",
    "LoopClient",
    "Reply",
    "arun",
    "check_length",
    "close_at_loop_shutdown",
    "close_on_its_loop",
    "late",
    "request",
    "run",
    "timed_out",
]

T = TypeVar("T")
Reply = tuple[httpx.Response | Exception, float]  # what an exchange receives for a Call: the outcome, seconds taken


# ---------------------------------------------------------------------- runners (the only I/O)
def _timeouts(call: Call, seconds: float | None) -> httpx.Timeout:
    connect = call.connect_timeout if seconds is None else min(call.connect_timeout or seconds, seconds)
    return httpx.Timeout(seconds, connect=connect)


def timed_out(seconds: float | None) -> httpx.ReadTimeout:
    return httpx.ReadTimeout(f"no complete response within {seconds:.3g} s (the total time allowed per request)")


def late() -> DeadlineExceeded:
    return DeadlineExceeded("the deadline passed before the request could start")


def check_length(headers: Mapping[str, str], max_bytes: int) -> None:
    """Fail before reading a body whose declared (unencoded) length is over ``max_bytes``."""
    declared = headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes and not headers.get("Content-Encoding"):
        raise ResponseTooLarge(f"response body of {declared} bytes is over max_response_bytes={max_bytes}")


_BODY_HEADERS = frozenset(("content-encoding", "content-length", "transfer-encoding"))


class Body:
    """A body read as a stream: stops past ``max_bytes`` or once ``seconds`` since ``started`` are gone."""

    def __init__(self, max_bytes: int, started: float, seconds: float | None) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.max_bytes = max_bytes
        self.started = started
        self.ends = None if seconds is None else started + seconds
        self.seconds = seconds

    @classmethod
    def for_call(cls, call: Call) -> Body | None:
        """The body reader of a request starting now; None when the call's deadline has already passed."""
        seconds = call.seconds()
        if seconds is not None and seconds <= 0:
            return None
        return cls(call.max_bytes, time.perf_counter(), seconds)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise ResponseTooLarge(f"response body over max_response_bytes={self.max_bytes}")
        self.chunks.append(chunk)
        if self.ends is not None and time.perf_counter() > self.ends:
            raise timed_out(self.seconds)

    def response(self, status: int, headers: Iterable[tuple[str, str]], request: httpx.Request) -> httpx.Response:
        """A complete response with the (decoded) body read; the headers that described the encoded body are dropped."""
        kept = [(k, v) for k, v in headers if k.lower() not in _BODY_HEADERS]
        return httpx.Response(status, headers=kept, content=b"".join(self.chunks), request=request)


class _Watchdog:
    """Shuts a response's socket down when its time is up, so that a stalled body read returns (sync path)."""

    def __init__(self, response: httpx.Response, ends: float | None) -> None:
        stream = response.extensions.get("network_stream")
        self._socket = stream.get_extra_info("socket") if stream is not None else None
        self._ends = ends
        self._lock = threading.Lock()
        self._done = False
        self.fired = False
        self._timer: threading.Timer | None = None

    def __enter__(self) -> _Watchdog:
        if self._socket is not None and self._ends is not None:
            self._timer = threading.Timer(max(self._ends - time.perf_counter(), 0.0), self._fire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)


def _read_sync(response: httpx.Response, body: Body) -> None:
    check_length(response.headers, body.max_bytes)
    with _Watchdog(response, body.ends) as watchdog:
        try:
            for chunk in response.iter_bytes():
                body.add(chunk)
        except httpx.HTTPError:
            if watchdog.fired:
                raise timed_out(body.seconds) from None
            raise


def request(client: httpx.Client, call: Call) -> Reply:
    """Make one request with a sync client: bounded in time and size, never raising for its outcome."""
    body = Body.for_call(call)
    if body is None:
        return late(), 0.0
    try:
        with client.stream(call.method, call.url, json=call.json, timeout=_timeouts(call, body.seconds)) as response:
            _read_sync(response, body)
        result: httpx.Response | Exception = body.response(
            response.status_code, response.headers.multi_items(), response.request
        )
    except (httpx.HTTPError, ResponseTooLarge) as err:
        result = err
    return result, body.elapsed()


async def _aread(client: httpx.AsyncClient, call: Call, body: Body, seconds: float | None) -> httpx.Response:
    async with client.stream(call.method, call.url, json=call.json, timeout=_timeouts(call, seconds)) as response:
        check_length(response.headers, body.max_bytes)
        async for chunk in response.aiter_bytes():
            body.add(chunk)
    return body.response(response.status_code, response.headers.multi_items(), response.request)


async def _arequest(client: httpx.AsyncClient, call: Call, lease: Lease | None = None) -> Reply:
    body = Body.for_call(call)
    if body is None:
        return late(), 0.0
    try:
        async with asyncio.timeout(body.seconds):
            result: httpx.Response | Exception = await _aread(client, call, body, body.seconds)
    except TimeoutError:  # the request was cancelled inside httpx
        result = timed_out(body.seconds)
        if lease is not None:
            lease.interrupted = True
    except (httpx.HTTPError, ResponseTooLarge) as err:
        result = err
    return result, body.elapsed()


def run(steps: Steps[T], client: httpx.Client) -> T:
    """Run an exchange with a sync client."""
    reply = None
    try:
        while True:
            action = steps.send(reply)
            if isinstance(action, Sleep):
                time.sleep(action.seconds)
                reply = None
            else:
                reply = request(client, action)
    except StopIteration as done:
        return done.value


async def arun(steps: Steps[T], send: Callable[[Call], Awaitable[Reply]]) -> T:
    """Run an exchange with an async transport: ``send`` makes one request (a loop client's :meth:`~LoopClient.send`)."""
    reply = None
    try:
        while True:
            action = steps.send(reply)
            if isinstance(action, Sleep):
                await asyncio.sleep(action.seconds)
                reply = None
            else:
                reply = await send(action)
    except StopIteration as done:
        return done.value


# ---------------------------------------------------------------------- async clients per event loop
@dataclass
class LoopClient:
    """The async clients and the concurrency limit of one event loop: one client per connection.

    Why one each: httpcore's pool does CPU work quadratic in its connections on every request (it lists
    every connection once per idle one); a pool of 128 cost ~15 ms per request, pools of 8 still 0.67
    ms against 0.54 ms for pools of one (``benchmarks/client_efficiency.py``). And a request cancelled
    mid-flight (a deadline, a timeout) can leave httpcore's connection marked active for good; its
    client is then replaced (:meth:`lease`), so a lost connection never blocks the requests after it.
    """

    make: Callable[[], httpx.AsyncClient]
    clients: list[httpx.AsyncClient]
    limit: asyncio.Semaphore
    keeper: AsyncGenerator[None, None]
    in_flight: list[int] = field(default_factory=list)
    _closing: set[asyncio.Task] = field(default_factory=set)

    @classmethod
    def open(cls, make: Callable[[], httpx.AsyncClient], concurrency: int) -> LoopClient:
        """``concurrency`` clients from ``make()`` (each with one connection) and their limit."""
        clients = [make() for _ in range(concurrency)]
        return cls(make, clients, asyncio.Semaphore(concurrency), close_at_loop_shutdown(clients), [0] * concurrency)

    @property
    def client(self) -> httpx.AsyncClient:
        """The first client (every client has the same settings)."""
        return self.clients[0]

    async def send(self, call: Call) -> Reply:
        """Make one request with the least busy client, holding the loop's limit while it is in flight."""
        async with self.limit:
            with self.lease() as lease:
                return await _arequest(lease.client, call, lease)

    @contextlib.contextmanager
    def lease(self) -> Iterator[Lease]:
        """The least busy client, for one request; replaced afterwards if that request was interrupted."""
        i = min(range(len(self.clients)), key=self.in_flight.__getitem__)
        self.in_flight[i] += 1
        lease = Lease(self.clients[i])
        try:
            yield lease
        except BaseException:  # cancelled (deadline, caller) inside httpx
            lease.interrupted = True
            raise
        finally:
            self.in_flight[i] -= 1
            if lease.interrupted and self.clients[i] is lease.client:
                self.clients[i] = self.make()
                task = asyncio.get_running_loop().create_task(lease.client.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)


@dataclass
class Lease:
    """A client lent for one request; ``interrupted`` when the request was cut inside httpx."""

    client: httpx.AsyncClient
    interrupted: bool = False


async def close_at_loop_shutdown(clients: list[Any]) -> AsyncGenerator[None, None]:
    """Started once on its loop, this generator is closed by ``loop.shutdown_asyncgens()`` (``asyncio.run``).

    It closes ``clients`` as they are then: httpx clients (``aclose``) or aiohttp sessions (``close``).
    """
    try:
        yield
    finally:
        for client in clients:
            await (client.aclose() if hasattr(client, "aclose") else client.close())


def close_on_its_loop(loop: asyncio.AbstractEventLoop, keeper: AsyncGenerator[None, None]) -> None:
    """Close a loop's client from outside it, where that loop still allows it."""
    if loop.is_closed():
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        task = loop.create_task(keeper.aclose())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)
    elif loop.is_running():
        loop.call_soon_threadsafe(lambda: close_on_its_loop(loop, keeper))
    else:
        loop.run_until_complete(keeper.aclose())


_CLOSING: set[asyncio.Task] = set()
