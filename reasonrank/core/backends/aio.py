"""The async requests of the openai backend over aiohttp (``OpenAIBackend(http_client="aiohttp")``).

The package's httpx path costs ~0.63 ms of client CPU per request, its aiohttp path ~0.18 ms
(``benchmarks/http_client_cost.py``): at hundreds of windows per second that is most of what one client
process can drive. The exchanges of :mod:`reasonrank.core.backends.http` stay the same: each request's
outcome comes back as the ``httpx.Response`` or httpx exception they read, so the retry policy, the
failure table and the error texts are those of httpx. As there: a request is bounded in total time and
body size, redirects are never followed, proxies come from the environment (``HTTPS_PROXY``, ...;
an HTTP one: a SOCKS one fails the request at once, naming ``http_client="httpx"``),
and a request cut mid-flight closes its connection (aiohttp never reuses it). ``.netrc`` is not read
(nor by httpx): the only credentials sent are the API key and those in ``base_url``, to its host.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from functools import lru_cache

import aiohttp
import httpx

from reasonrank.core.backends.http import Call, ResponseTooLarge, redact
from reasonrank.core.backends.runners import Body, Reply, check_length, close_at_loop_shutdown, late, timed_out

__all__ = ["AiohttpLoopClient", "env_proxy"]


@dataclass
class AiohttpLoopClient:
    """One event loop's aiohttp session (a pool of ``concurrency`` connections) and its limit."""

    session: aiohttp.ClientSession
    limit: asyncio.Semaphore
    keeper: AsyncGenerator[None, None]
    proxies: dict[str, str | None] = field(default_factory=dict)  # URL -> its proxy, read once

    @classmethod
    def open(
        cls, headers: dict[str, str], concurrency: int, connect_timeout: float | None, ssl_context: ssl.SSLContext
    ) -> AiohttpLoopClient:
        """A session for the running loop: ``headers`` on every request, ``concurrency`` connections at most."""
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0, ssl=ssl_context)
        session = aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
            trust_env=False,  # it would read the environment on a thread per request: env_proxy reads it once
        )
        return cls(session, asyncio.Semaphore(concurrency), close_at_loop_shutdown([session]))

    @property
    def client(self) -> aiohttp.ClientSession:
        return self.session

    async def send(self, call: Call) -> Reply:
        """Make one request, holding the loop's limit while it is in flight; never raises for its outcome."""
        # the JSON httpx would send, encoded before the request as there (an unencodable body raises)
        data = None if call.json is None else _encode(call.json)
        async with self.limit:
            body = Body.for_call(call)
            if body is None:
                return late(), 0.0
            try:
                async with asyncio.timeout(body.seconds):
                    result: httpx.Response | Exception = await self._read(call, data, body)
            except aiohttp.ClientError as err:  # (before TimeoutError: aiohttp's own timeouts are TimeoutErrors too)
                result = _as_httpx(err)
            except TimeoutError:  # the whole request's time is up
                result = timed_out(body.seconds)
            except ValueError as err:  # a header aiohttp refuses to send (a key and URL credentials), a SOCKS proxy
                result = httpx.LocalProtocolError(str(err))
                result.__cause__ = err
            except ResponseTooLarge as err:
                result = err
            return result, body.elapsed()

    async def _read(self, call: Call, data: bytes | None, body: Body) -> httpx.Response:
        proxy = self._proxy(call.url)
        async with self.session.request(
            call.method, call.url, data=data, allow_redirects=False, proxy=proxy
        ) as response:
            check_length(response.headers, body.max_bytes)
            async for chunk in response.content.iter_any():
                body.add(chunk)
            return body.response(response.status, response.headers.items(), _request(call.method, call.url))

    def _proxy(self, url: str) -> str | None:
        """The environment's proxy for ``url``, read on its first request; a SOCKS one is refused
        (aiohttp would speak HTTP to it): the request then fails at once, naming the way out."""
        try:
            return self.proxies[url]
        except KeyError:
            proxy = env_proxy(url)
            if proxy is not None and urllib.parse.urlsplit(proxy).scheme.lower().startswith("socks"):
                raise ValueError(
                    f"the environment's proxy for {urllib.parse.urlsplit(url).scheme} URLs is a SOCKS proxy"
                    f" ({redact(proxy)}), which http_client='aiohttp' cannot use: pass http_client='httpx'"
                    " (with `pip install httpx[socks]`), or name the host in NO_PROXY"
                ) from None
            self.proxies[url] = proxy
            return proxy


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url``, as httpx reads it: ``<scheme>_proxy`` (upper or lower
    case), else ``all_proxy``; none for a host that ``no_proxy`` lists."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")


def _encode(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


@lru_cache(maxsize=64)
def _request(method: str, url: str) -> httpx.Request:
    """The request a response names (read for a redirect's absolute Location); the URLs of a backend are few."""
    return httpx.Request(method, url)


def _as_httpx(err: aiohttp.ClientError) -> httpx.HTTPError:
    """The httpx exception of the same kind, so the exchanges read aiohttp's failures as they read httpx's."""
    kind: type[httpx.HTTPError]
    if isinstance(err, aiohttp.ConnectionTimeoutError):
        kind = httpx.ConnectTimeout
    elif isinstance(err, aiohttp.ServerTimeoutError):
        kind = httpx.ReadTimeout
    elif isinstance(err, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        kind = httpx.UnsupportedProtocol
    elif isinstance(err, (aiohttp.ClientConnectorError, aiohttp.ClientProxyConnectionError)):
        kind = httpx.ConnectError  # nothing listens there (its OSError names why)
    elif isinstance(err, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError)):
        kind = httpx.RemoteProtocolError  # dropped, or not HTTP
    elif isinstance(err, aiohttp.ClientOSError):
        kind = httpx.ReadError
    else:
        kind = httpx.TransportError
    converted = kind(str(err) or type(err).__name__)
    converted.__cause__ = err
    return converted
