"""Prometheus metrics of one app, on a private registry (two apps in one process never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServiceMetrics"]

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """Requests by endpoint and status, latency, windows, tokens, cache hits, batches and the queue."""

    def __init__(self, namespace: str = "reasonrank_serve") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r, ns = self.registry, namespace
        self.requests = Counter(
            "requests", "HTTP requests by endpoint and status", ["endpoint", "status"], namespace=ns, registry=r
        )
        self.latency = Histogram("request_seconds", "request latency", ["endpoint"], buckets=_LATENCY_BUCKETS, namespace=ns, registry=r)  # fmt: skip
        self.documents = Counter("documents", "documents reranked", namespace=ns, registry=r)
        self.windows = Counter("windows", "LLM windows (calls) made for requests", namespace=ns, registry=r)
        self.cache_hits = Counter("cache_hits", "windows answered from the window cache", namespace=ns, registry=r)
        self.tokens = Counter("tokens", "LLM tokens by kind (prompt, completion)", ["kind"], namespace=ns, registry=r)
        self.incomplete = Counter("deadline_cut", "results cut short by their deadline", namespace=ns, registry=r)
        self.batches = Counter("batches", "arerank_batch calls (shared rounds)", namespace=ns, registry=r)
        self.batch_size = Histogram("batch_requests", "requests per arerank_batch call", buckets=_BATCH_BUCKETS, namespace=ns, registry=r)  # fmt: skip
        self.batch_latency = Histogram("batch_seconds", "latency of arerank_batch calls", buckets=_LATENCY_BUCKETS, namespace=ns, registry=r)  # fmt: skip
        self.queue = Gauge("queue_requests", "requests waiting or running", namespace=ns, registry=r)

    def observe_batch(self, requests: int, seconds: float) -> None:
        self.batches.inc()
        self.batch_size.observe(requests)
        self.batch_latency.observe(seconds)

    def observe_usage(self, documents: int, usage: dict[str, int], complete: bool) -> None:
        self.documents.inc(documents)
        self.windows.inc(usage["calls"])
        self.cache_hits.inc(usage["cached_calls"])
        self.tokens.labels("prompt").inc(usage["prompt_tokens"])
        self.tokens.labels("completion").inc(usage["completion_tokens"])
        if not complete:
            self.incomplete.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
