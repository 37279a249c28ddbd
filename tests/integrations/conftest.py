"""Shared by the adapter tests: the token usage a RankingServer reported for the chat requests it answered."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reasonrank.testing import RankingServer


def reported_usage(server: RankingServer) -> dict[str, int]:
    """Sum of the ``usage`` the server put in its replies (it answers each request deterministically)."""
    replies = [server.complete(body)["usage"] for body in server.chat_requests]
    prompt = sum(r["prompt_tokens"] for r in replies)
    completion = sum(r["completion_tokens"] for r in replies)
    return {"calls": len(replies), "prompt_tokens": prompt, "completion_tokens": completion}


@pytest.fixture
def served_usage() -> Callable[[RankingServer], dict[str, int]]:
    return reported_usage
