"""The async requests of the openai backend behave the same over httpx and aiohttp (issue 13).

``http_client="aiohttp"`` only changes who carries a request: every test here runs through both
clients against a real server on 127.0.0.1 and asserts the same outcome: answers, the failure
table of docs/reliability.md, redirects, credentials, proxies, deadlines and connection reuse.
"""

import asyncio
import gc
import json
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reasonrank import Reranker
from reasonrank.core.backends.openai import OpenAIBackend
from reasonrank.core.prompts import build_messages
from reasonrank.core.reranker import default_sampling
from reasonrank.core.types import ChatRequest
from reasonrank.testing import Fault, RankingServer

pytest.importorskip("aiohttp")

FAST = {"backoff": 0.001, "timeout": 5.0, "connect_timeout": 1.0, "max_retries": 0}
CLIENTS = ["httpx", "aiohttp"]


def request(tag="w0", passages=("cats purr", "dogs bark", "cats sleep")):
    return ChatRequest(build_messages("cats", list(passages)), default_sampling("reasoning"), tag)


@pytest.fixture(params=CLIENTS)
def client(request):
    return request.param


@pytest.fixture
def server():
    with RankingServer() as srv:
        yield srv


def backend_for(url, client, **kwargs):
    return OpenAIBackend("m", base_url=url, http_client=client, **{**FAST, **kwargs})


def dead_url():
    with RankingServer() as srv:
        return srv.base_url


async def one(backend, **kwargs):
    [done] = await backend.agenerate([request()], **kwargs)
    return done


# ---------------------------------------------------------------- answers and bodies
async def test_the_same_answers_and_request_bodies(server):
    sent = {}
    for client in CLIENTS:
        before = len(server.chat_requests)
        async with backend_for(server.base_url, client) as backend:
            results = await backend.agenerate([request(f"w{i}", ("é x", f"doc {i}")) for i in range(5)])
        assert [r.error for r in results] == [None] * 5 and all(r.text.startswith("<think>") for r in results)
        assert [r.text for r in results] == [results[0].text] * 5 and results[0].prompt_tokens
        sent[client] = sorted(json.dumps(body, sort_keys=True) for body in server.chat_requests[before:])
    assert sent["httpx"] == sent["aiohttp"] and len(sent["httpx"]) == 5  # the same JSON bodies
    assert server.request_headers[-1]["content-type"] == "application/json"


def test_the_reranker_ranks_the_same_over_both_clients(server):
    docs = [f"passage {i} about {'cats' if i % 3 else 'dogs'}" for i in range(30)]
    rankings = {}
    for client in CLIENTS:
        with Reranker("m", base_url=server.base_url, window_size=10, step=5, http_client=client) as reranker:
            batch = reranker.rerank_batch(["cats", "dogs"], [docs, docs])
            alone = asyncio.run(reranker.arerank("cats", docs))
        assert [r.order for r in batch][0] == alone.order and batch[0].usage.failed_calls == 0
        rankings[client] = [r.order for r in batch]
    assert rankings["httpx"] == rankings["aiohttp"]


# ---------------------------------------------------------------- the failure table
@pytest.mark.parametrize(
    ("fault", "retried", "message"),
    [
        (Fault("status", status=500), True, "HTTP 500: injected 500"),
        (Fault("status", status=429, headers={"Retry-After": "0"}), True, "HTTP 429"),
        (Fault("drop"), True, "RemoteProtocolError"),
        (Fault("malformed_json"), True, "not valid JSON"),
        (Fault("status", status=400), False, "HTTP 400: injected 400"),
        (Fault("huge", size=200_000), False, "over max_response_bytes=100000"),
    ],
    ids=["500", "429", "drop", "bad-json", "400", "huge"],
)
async def test_failures_are_read_and_retried_the_same(server, client, fault, retried, message):
    server.faults.append(fault)
    async with backend_for(server.base_url, client, max_retries=1, max_response_bytes=100_000) as backend:
        done = await one(backend)
    assert len(server.chat_requests) == (2 if retried else 1)
    if retried:
        assert done.error is None  # the retry got the answer
    else:
        assert message in done.error and not done.fatal
    if retried:
        server.faults.extend([fault, fault])
        async with backend_for(server.base_url, client, max_retries=1, max_response_bytes=100_000) as backend:
            done = await one(backend)
        assert message in done.error and "after 2 attempts" in done.error


async def test_a_declared_length_over_the_cap_fails_before_reading(server, client):
    async with backend_for(server.base_url, client, max_response_bytes=64) as backend:
        done = await one(backend)
    assert "response body of" in done.error and "over max_response_bytes=64" in done.error


async def test_timeout_bounds_the_whole_request(server, client):
    server.faults.append(Fault("trickle", seconds=0.04))  # one byte every 40 ms: each read is quick
    async with backend_for(server.base_url, client, timeout=1) as backend:
        done = await one(backend)
    assert "ReadTimeout: no complete response within 1 s" in done.error and not done.fatal


async def test_the_deadline_cuts_a_request_in_flight(server, client):
    server.faults.append(Fault("delay", seconds=3.0))
    async with backend_for(server.base_url, client, timeout=60) as backend:
        done = await one(backend, deadline=time.monotonic() + 0.3)
    assert done.status == "skipped" and done.error.startswith("deadline exceeded: w0 after 1 attempts")


async def test_connection_refused_is_fatal_names_the_reason_and_opens_the_circuit(client):
    async with backend_for(dead_url(), client, max_retries=1) as backend:
        done = await one(backend)
        rest = await backend.agenerate([request(f"w{i}") for i in range(3)])
    assert done.fatal and "ConnectError" in done.error and "Connection refused" in done.error
    assert "after 2 attempts" in done.error
    assert all(r.fatal and "circuit open: POST" in r.error for r in rest)


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_failures_every_window_would_get_are_fatal(server, client, status):
    server.faults.append(Fault("status", status=status))
    async with backend_for(server.base_url, client, max_retries=2) as backend:
        done = await one(backend)
    assert done.fatal and f"HTTP {status}" in done.error and len(server.chat_requests) == 1


async def test_an_unusable_url_is_permanent_and_fatal(client):
    async with backend_for("ftp://127.0.0.1:9/v1", client, max_retries=2) as backend:
        done = await one(backend)
    assert done.fatal and "UnsupportedProtocol" in done.error


# ---------------------------------------------------------------- redirects and credentials
@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("http://bob:PASSWORD@elsewhere.test/v1/chat/completions", "http://***@elsewhere.test/v1/chat/completions"),
        ("/v2/chat/completions", "/v2/chat/completions"),
    ],
)
async def test_redirects_are_not_followed(server, client, location, shown):
    server.faults.append(Fault("status", status=302, headers={"Location": location}))
    async with backend_for(server.base_url, client, max_retries=3) as backend:
        done = await one(backend)
    assert "HTTP 302 redirect to" in done.error and shown in done.error and "not followed" in done.error
    assert "PASSWORD" not in done.error and done.fatal and len(server.chat_requests) == 1


async def test_url_credentials_are_sent_to_their_host_and_never_shown(server, client):
    url = server.base_url.replace("http://", "http://alice:SECRET@")
    server.faults.append(Fault("status", status=500))
    async with backend_for(url, client) as backend:
        done = await one(backend)
    assert server.request_headers[-1]["authorization"].startswith("Basic ")
    assert "SECRET" not in done.error and "http://***@127.0.0.1" in done.error
    async with backend_for(dead_url().replace("http://", "http://alice:SECRET@"), client) as backend:
        done = await one(backend)
    assert done.fatal and "SECRET" not in done.error


async def test_only_the_reasonrank_key_is_sent(server, client, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-another-service")
    monkeypatch.setenv("REASONRANK_API_KEY", "rr-key")
    async with backend_for(server.base_url, client) as backend:
        await one(backend)
    assert server.request_headers[-1]["authorization"] == "Bearer rr-key"


# ---------------------------------------------------------------- proxies from the environment
class ForwardingProxy:
    """A real HTTP forward proxy on 127.0.0.1: it records each absolute-URI request and relays it
    (``upstream.invalid`` is its name for 127.0.0.1)."""

    def __init__(self):
        self.seen = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _relay(self):
                proxy.seen.append(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                target = self.path.replace("upstream.invalid", "127.0.0.1")
                forwarded = urllib.request.Request(target, data=body, method=self.command)
                for key in ("Content-Type", "Authorization"):
                    if self.headers.get(key):
                        forwarded.add_header(key, self.headers[key])
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(forwarded) as answer:
                    payload = answer.read()
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            do_GET = do_POST = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


async def test_requests_go_through_the_environment_proxy(server, client, monkeypatch):
    # the base URL names a host no resolver knows: only the proxy (which knows it is 127.0.0.1) reaches it
    base_url = f"http://upstream.invalid:{server.port}/v1"
    with ForwardingProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        async with backend_for(base_url, client) as backend:
            done = await one(backend)
    assert done.error is None and proxy.seen == [f"{base_url}/chat/completions"]


async def test_no_proxy_hosts_are_reached_directly(server, client, monkeypatch):
    with ForwardingProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with backend_for(server.base_url, client) as backend:
            done = await one(backend)
    assert done.error is None and proxy.seen == [] and len(server.chat_requests) == 1


_PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


@contextmanager
def listener():
    """A TCP port on 127.0.0.1 that records every connection made to it (and answers nothing)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.05)
    seen = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            seen.append(conn.recv(1024))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], seen
    finally:
        stop.set()
        thread.join(5)
        sock.close()


async def test_a_socks_proxy_fails_the_aiohttp_client_at_once_naming_the_way_out(server, monkeypatch):
    """aiohttp speaks only HTTP to a proxy: a SOCKS one in the environment would get an HTTP request."""
    with listener() as (port, seen):
        for name in (*_PROXY_VARS, "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("ALL_PROXY", f"socks5://user:s3cret@127.0.0.1:{port}")
        async with backend_for(server.base_url, "aiohttp", max_retries=2) as backend:
            done = await one(backend)
        time.sleep(0.2)  # (a connection, had one been made, is recorded by now)
    assert done.fatal and "SOCKS proxy" in done.error and "http_client='httpx'" in done.error
    assert "s3cret" not in done.error and "socks5://***@127.0.0.1" in done.error
    assert seen == [] and server.chat_requests == []  # nothing went to the proxy, nor around it


def test_the_httpx_client_names_its_missing_socks_support(server, monkeypatch):
    pytest.importorskip("httpx")
    if __import__("importlib").util.find_spec("socksio") is not None:
        pytest.skip("socksio is installed: httpx then speaks SOCKS")
    for name in (*_PROXY_VARS, "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    with pytest.raises(ImportError, match=r"httpx\[socks\]"):
        Reranker("m", base_url=server.base_url, http_client="httpx", truncation="words").rerank("q", ["a", "b"])


# ---------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (cert.pem, key.pem), made by the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@contextmanager
def tls_ranking_server(cert, key):
    """A RankingServer that speaks HTTPS with ``cert``; yields its https base URL."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with RankingServer() as srv:
        srv._server.socket = context.wrap_socket(srv._server.socket, server_side=True)  # same fd, still unused
        yield f"https://127.0.0.1:{srv.port}/v1"


async def test_https_verifies_the_server_with_the_ca_store(client, certificate, monkeypatch):
    cert, key = certificate
    for name in (*_PROXY_VARS, "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    with tls_ranking_server(cert, key) as url:
        async with backend_for(url, client) as backend:
            refused = await one(backend)  # certifi's CAs do not know this certificate
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # httpx's way to name a CA file: it is trusted now
        async with backend_for(url, client) as backend:
            done = await one(backend)
    assert refused.error is not None and "CERTIFICATE_VERIFY_FAILED" in refused.error and refused.fatal
    assert "Operation not permitted" not in refused.error  # the TLS error's code 1 is not the OS's EPERM
    assert done.error is None and done.text.startswith("<think>")


def test_plain_http_loads_no_ca_store_and_its_context_trusts_nothing(monkeypatch):
    # loading the CA store costs 20-50 ms a backend; an http:// URL without an https proxy needs none
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    context = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1")._ssl_context()
    assert context.cert_store_stats()["x509_ca"] == 0
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname  # could only refuse
    assert OpenAIBackend("m", base_url="HTTPS://fleet.invalid/v1")._ssl_context().cert_store_stats()["x509_ca"] > 0
    backend = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1")
    assert backend._ssl_context().cert_store_stats()["x509_ca"] == 0
    monkeypatch.setenv("HTTP_PROXY", "https://proxy.invalid:3128")  # TLS to the proxy: the CA store again,
    assert backend._ssl_context().cert_store_stats()["x509_ca"] > 0  # for the clients made from now on


# ---------------------------------------------------------------- connections and event loops
async def test_requests_cut_mid_flight_never_block_the_ones_after_them(client):
    # httpcore can leave the connection of a cancelled request marked active for good; with one
    # connection per client that client would hang every later request: it is replaced instead
    # (aiohttp closes a cut request's connection itself)
    with RankingServer(latency=0.2) as srv:
        async with backend_for(srv.base_url, client, concurrency=1) as backend:
            for k in range(12):  # cut by the caller, by the request's deadline, or by both at once
                deadline = time.monotonic() + 0.1 if k % 3 else None
                task = asyncio.ensure_future(backend.agenerate([request()], deadline=deadline))
                await asyncio.sleep(0.1 if k % 3 != 1 else 0.15)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            sent = len(srv.chat_requests)
            done = await asyncio.wait_for(one(backend), 5)  # (a hang guard, not a timing)
        assert done.error is None and len(srv.chat_requests) == sent + 1


async def test_concurrency_bounds_the_requests_in_flight(client):
    with RankingServer(latency=0.05) as srv:
        async with backend_for(srv.base_url, client, concurrency=3) as backend:
            results = await asyncio.gather(*(backend.agenerate([request(f"w{i}")]) for i in range(12)))
    assert all(r.error is None for [r] in results) and srv.max_in_flight == 3


def test_each_event_loop_gets_its_own_client_closed_with_the_loop(server):
    backend = backend_for(server.base_url, "aiohttp")

    async def twice():
        await one(backend)
        first = backend.aclient
        await one(backend)
        return first, backend.aclient

    first, second = asyncio.run(twice())
    assert first is second and first.closed  # reused on its loop, closed when asyncio.run ended it
    [done] = asyncio.run(backend.agenerate([request()]))  # a new loop, a new session
    assert done.error is None and len(backend._aclients) <= 1
    backend.close()


def test_a_reranker_never_closed_closes_its_loop_when_collected(server, client):
    rr = Reranker("m", base_url=server.base_url, http_client=client, truncation="words")
    assert rr.rerank("cats", ["cats purr", "dogs bark"]).order
    loop_thread = rr._loop_thread
    del rr
    gc.collect()
    loop_thread.thread.join(5)
    assert not loop_thread.thread.is_alive() and loop_thread.loop.is_closed()  # no thread left behind


_NEVER_CLOSED = """
import asyncio, sys
from reasonrank import Reranker
rr = Reranker("m", base_url=sys.argv[1], http_client=sys.argv[2], truncation="words")
if sys.argv[3] == "sync":  # on the reranker's own loop thread
    print(rr.rerank("cats", ["cats purr", "dogs bark"]).order)
else:  # on the caller's loop, which is never shut down (no asyncio.run)
    print(asyncio.new_event_loop().run_until_complete(rr.arerank("cats", ["cats purr", "dogs bark"])).order)
"""


@pytest.mark.parametrize("api", ["sync", "run_until_complete"])
def test_a_reranker_never_closed_exits_quietly(server, client, api):
    # aiohttp reports a session still open when the interpreter tears it down ("Unclosed client session")
    done = subprocess.run([sys.executable, "-c", _NEVER_CLOSED, server.base_url, client, api], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() in ("[0, 1]", "[1, 0]")
    assert "Unclosed" not in done.stderr and "Traceback" not in done.stderr, done.stderr


async def test_server_truncation_over_both_clients(client):
    with RankingServer(tokenize=True) as srv:
        async with backend_for(srv.base_url, client) as backend:
            assert await backend.atruncate(["a b c d e", "x y"], 2) == ["a b", "x y"]
            assert backend._resolved_truncation == "server"


def test_the_http_client_option_is_checked():
    with pytest.raises(ValueError, match="http_client must be one of httpx, aiohttp, got 'requests'"):
        OpenAIBackend("m", http_client="requests")
    with pytest.raises(ValueError, match="http_client must be one of"):
        Reranker("m", base_url="http://127.0.0.1:9/v1", http_client="curl")
