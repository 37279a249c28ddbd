"""Haystack adapter: ``ReasonRankRanker`` (needs ``pip install "reasonrank[haystack]"``).

The component is defined in ``haystack_integrations.components.rankers.reasonrank`` so that Haystack 3's
deserialization allowlist accepts it in ``Pipeline.load``; this module re-exports it.
"""

from haystack_integrations.components.rankers.reasonrank import ReasonRankRanker

__all__ = ["ReasonRankRanker"]
