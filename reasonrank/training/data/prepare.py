"""Load and filter the training records of a run, as its ``data:`` settings say."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from reasonrank.training.data.filters import decontaminate, self_consistency_filter
from reasonrank.training.data.formats import load_records
from reasonrank.training.data.records import LoadReport, RankingRecord

__all__ = ["prepare_records"]

logger = logging.getLogger(__name__)


def _brief(report: Any, lines: int = 12) -> str:
    text = str(report).splitlines()
    more = f"\n  ... ({len(text) - lines} more lines in data_report.txt)" if len(text) > lines else ""
    return "\n".join(text[:lines]) + more


def prepare_records(settings, *, log: Callable[[str], None] = logger.info) -> tuple[list[RankingRecord], list[Any]]:
    """Load + filter per a :class:`~reasonrank.training.config.DataSettings`; returns (records, reports)."""
    load_report = LoadReport()
    records = load_records(
        settings.train_files,
        format=settings.format,
        id_query=settings.id_query,
        id_doc=settings.id_doc,
        on_error=settings.on_error,
        report=load_report,
    )
    reports: list[Any] = [load_report]
    log(_brief(load_report))
    if settings.self_consistency_threshold is not None:
        records, report = self_consistency_filter(records, settings.self_consistency_threshold)
        reports.append(report)
        log(_brief(report))
    if settings.decontaminate:
        records, report = decontaminate(
            records, settings.decontaminate, near_threshold=settings.decontaminate_near_threshold
        )
        reports.append(report)
        log(_brief(report))
        for note in report.notes:
            if note.startswith("NOT CHECKED"):
                logger.warning("decontamination: %s", note)
    if settings.shuffle_seed is not None:
        random.Random(settings.shuffle_seed).shuffle(records)
    if settings.max_samples is not None:
        records = records[: settings.max_samples]
    if not records:
        raise ValueError("no training records left after loading and filtering")
    return records, reports
