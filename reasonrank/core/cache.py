"""The window cache: a model's answer to one exact window prompt, stored so that a repeat costs no call.

A cache is any object with ``get(key) -> str | None`` and ``set(key, value)`` (keys and values are
strings). :func:`make_cache` builds one from a setting:

- ``"memory"`` / ``"memory:<max entries>"``: an in-process LRU (:class:`MemoryCache`, thread-safe);
- ``"sqlite:///path/to/cache.db"``: a SQLite file (:class:`SQLiteCache`, WAL, one connection per
  thread; shared safely by threads and processes). Three slashes then the path, as in SQLAlchemy:
  ``sqlite:///cache.db`` is relative, ``sqlite:////var/cache/rr.db`` absolute;
- ``"redis://host:port/db"`` (or ``rediss://``): a Redis server shared by the replicas of a service
  (:class:`RedisCache`; ``pip install "reasonrank[redis]"``).

The key (:func:`window_key`) is the sha256 of the backend's model identity, the exact prompt messages
and the sampling settings; the value (:func:`encode_completion`) is the raw output and its token
counts, so a hit returns exactly what the model said. The reranker never stores a failed window, and
caches sampled decoding (temperature > 0) only with ``cache_sampled=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from reasonrank.core.types import ChatRequest, Completion

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "Cache",
    "MemoryCache",
    "RedisCache",
    "SQLiteCache",
    "check_cache_spec",
    "decode_completion",
    "encode_completion",
    "make_cache",
    "window_key",
]

log = logging.getLogger(__name__)

DEFAULT_MEMORY_ENTRIES = 10_000
KEY_PREFIX = "reasonrank:window:"  # Redis key namespace
_CACHE_FORMAT = 1  # bump when the stored value's shape changes


@runtime_checkable
class Cache(Protocol):
    """The cache interface: string keys to string values."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...


# ---------------------------------------------------------------------- keys and values
def window_key(model: str, request: ChatRequest) -> str:
    """sha256 (hex) of the model identity, the exact messages and the sampling settings."""
    payload = {"v": _CACHE_FORMAT, "model": model, "messages": request.messages, "sampling": asdict(request.sampling)}
    data = json.dumps(payload, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(data.encode("ascii")).hexdigest()


def encode_completion(completion: Completion) -> str:
    """What is stored for a successful window: the raw text, token counts, finish reason and seconds."""
    return json.dumps(
        {
            "text": completion.text,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "finish_reason": completion.finish_reason,
            "seconds": completion.seconds,
        },
        ensure_ascii=True,  # lone surrogates in model output survive the round trip
    )


def decode_completion(value: str) -> Completion | None:
    """The cached completion (``cached=True``), or None for a value that is not one."""
    try:
        data = json.loads(value)
        text = data["text"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(text, str):
        return None
    return Completion(
        text=text,
        prompt_tokens=data.get("prompt_tokens"),
        completion_tokens=data.get("completion_tokens"),
        seconds=float(data.get("seconds") or 0.0),
        finish_reason=data.get("finish_reason"),
        cached=True,
    )


# ---------------------------------------------------------------------- stores
class MemoryCache:
    """A bounded in-process LRU; thread-safe."""

    def __init__(self, max_entries: int = DEFAULT_MEMORY_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError(f"a memory cache holds at least 1 entry, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def set(self, key: str, value: str) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"MemoryCache(max_entries={self.max_entries}, entries={len(self)})"


class SQLiteCache:
    """A SQLite file in WAL mode; one connection per thread, so threads and processes can share it."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            import sqlite3

            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            with self._lock:  # one thread at a time sets the file up: SQLite's busy timeout does not cover journal_mode
                self._set_up(conn)
                self._connections.append(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def _set_up(self, conn: sqlite3.Connection) -> None:
        """WAL mode (kept in the file) and the table, retried while another process holds the file."""
        import sqlite3

        give_up = time.monotonic() + self.timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("CREATE TABLE IF NOT EXISTS windows (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > give_up:
                    raise
                time.sleep(0.01)

    def get(self, key: str) -> str | None:
        row = self._connection().execute("SELECT value FROM windows WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set(self, key: str, value: str) -> None:
        self._connection().execute("INSERT OR REPLACE INTO windows (key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"SQLiteCache({self.path!r})"


class RedisCache:
    """A Redis server (``redis://host:port/db``); the ``redis`` package is imported when it is built."""

    def __init__(self, url: str, prefix: str = KEY_PREFIX, ttl: int | None = None) -> None:
        try:
            import redis
        except ImportError as err:
            raise ImportError('cache="redis://..." needs the redis package: pip install "reasonrank[redis]"') from err
        self.url = url
        self.prefix = prefix
        self.ttl = ttl
        self.client = redis.Redis.from_url(url)

    def get(self, key: str) -> str | None:
        value = self.client.get(self.prefix + key)
        return value.decode("utf-8") if isinstance(value, bytes) else value

    def set(self, key: str, value: str) -> None:
        self.client.set(self.prefix + key, value, ex=self.ttl)

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"RedisCache({_redact(self.url)!r})"


def _redact(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://***@host``."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


# ---------------------------------------------------------------------- from a setting
def check_cache_spec(spec: Any) -> None:
    """``ValueError``/``TypeError`` for a cache setting that :func:`make_cache` would refuse (nothing opened)."""
    if spec is None or isinstance(spec, Cache):
        return
    if not isinstance(spec, str):
        raise TypeError(f"cache must be a string or an object with get(key) and set(key, value), got {spec!r}")
    _parse(spec)


def _parse(spec: str) -> tuple[str, Any]:
    kind, _, rest = spec.partition(":")
    if kind == "memory":
        if not rest:
            return "memory", DEFAULT_MEMORY_ENTRIES
        if rest.isdigit() and int(rest) >= 1:
            return "memory", int(rest)
        raise ValueError(f"cache {spec!r}: write memory:<max entries>, e.g. memory:10000")
    if kind == "sqlite":
        if rest.startswith("///") and len(rest) > 3:
            return "sqlite", rest[3:]
        raise ValueError(f"cache {spec!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db")
    if kind in ("redis", "rediss"):
        if rest.startswith("//") and len(rest) > 2:
            return "redis", spec
        raise ValueError(f"cache {spec!r}: write redis://host:port/db")
    raise ValueError(
        f"unknown cache {_redact(spec)!r}: use 'memory', 'memory:<max entries>', 'sqlite:///path', "
        "'redis://host:port/db', or an object with get(key) and set(key, value)"
    )


def make_cache(spec: Any) -> Cache | None:
    """A cache from a setting (see the module docstring); an object with ``get``/``set`` is returned as is."""
    if spec is None or isinstance(spec, Cache):
        return spec
    check_cache_spec(spec)
    kind, arg = _parse(spec)
    if kind == "memory":
        return MemoryCache(arg)
    if kind == "sqlite":
        return SQLiteCache(arg)
    return RedisCache(arg)
