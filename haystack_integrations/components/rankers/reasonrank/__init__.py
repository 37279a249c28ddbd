"""Haystack integration of reasonrank: ``ReasonRankRanker``, a ReasonRank listwise LLM ranker component."""

from haystack_integrations.components.rankers.reasonrank.ranker import ReasonRankRanker

__all__ = ["ReasonRankRanker"]
