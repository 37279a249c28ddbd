"""``reasonrank serve``: the reranker as a Cohere-, Jina- and TEI-compatible HTTP service.

    pip install "reasonrank[serve]"
    reasonrank serve --base-url http://gpu-host:8000/v1 --model liuwenhan/reasonrank-7B --port 8080

or, as an ASGI app: ``uvicorn --factory`` on a function returning :func:`create_app` (see docs/serving.md).
"""

from reasonrank.serve.app import ServeOptions, create_app
from reasonrank.serve.batcher import MicroBatcher, QueueFull, supports_deadline
from reasonrank.serve.errors import API_KEYS_ENV

__all__ = ["API_KEYS_ENV", "MicroBatcher", "QueueFull", "ServeOptions", "create_app", "supports_deadline"]
