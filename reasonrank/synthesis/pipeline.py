"""The synthesis pipeline: candidate lists -> teacher positive mining -> teacher listwise ranking with
reasoning -> self-consistency filter -> released-format records, appended as each query finishes.

Per query (recipe section 3):

1. **Pool.** The first ``pool_size`` first-stage candidates (BM25 or a run), plus any qrels positive
   the first stage missed.
2. **Positives.** ``"teacher"``: the teacher sees query + gold answer + pool and names the relevant
   passages (the paper's mining with R1). ``"qrels"``: the judged positives (the paper's MS MARCO
   domain). ``"auto"``: the teacher when the query has a gold answer, else the qrels when it has any,
   else the teacher from the query alone.
3. **List.** Up to ``list_size`` passages: positives, hard negatives (top first-stage ranks not
   positive) and sampled negatives, seeded per query (:mod:`.candidates`).
4. **Ranking.** The teacher ranks the list without the gold answer (RankGPT multi-turn, Fig. 8); its
   reasoning becomes ``reasoning`` and its permutation ``final_list``.
5. **Filter.** nDCG@10 of ``final_list`` with ``relevant_docids`` as binary qrels; kept when
   ``>= threshold`` (0.4 in the paper), otherwise written to ``dropped.jsonl``.

A request that fails (after the backend's retries) fails its query: nothing is written for it and the
next run retries it. Any other error (a tokenizer that cannot load, a bug) stops the run; what
finished before is kept. A malformed answer is re-asked ``malformed_retries`` times, then the query is
dropped with the reason recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from reasonrank.core.backends.base import Backend
from reasonrank.core.passages import passage_contents
from reasonrank.core.types import ChatRequest, SamplingParams
from reasonrank.synthesis.candidates import ListConfig, build_candidate_list, query_rng
from reasonrank.synthesis.inputs import Corpus, SynthesisQuery
from reasonrank.synthesis.report import DomainReport, SynthesisReport, TokenUsage
from reasonrank.synthesis.store import SynthesisStore, SyntheticSample
from reasonrank.synthesis.teacher_prompts import (
    NO_RANKING,
    MiningAnswer,
    TeacherRanking,
    mining_messages,
    parse_mining_answer,
    parse_teacher_ranking,
    ranking_messages,
)
from reasonrank.training.ranking_metrics import ndcg_at_k

__all__ = ["SynthesisConfig", "Synthesizer", "SynthesisReport", "DomainReport", "TokenUsage", "synthesize"]

logger = logging.getLogger(__name__)

PositiveSource = Literal["auto", "teacher", "qrels"]

# DeepSeek-R1's recommended sampling; a generous budget for its reasoning.
TEACHER_SAMPLING = SamplingParams(max_new_tokens=8192, temperature=0.6, top_p=0.95)


@dataclass(frozen=True)
class SynthesisConfig:
    """Settings of one synthesis run (defaults follow the paper where it says)."""

    lists: ListConfig = field(default_factory=ListConfig)
    pool_size: int = 40  # first-stage candidates considered (the paper's top-K = 40 for mining)
    positives: PositiveSource = "auto"
    min_grade: int = 1  # qrels grade that counts as positive
    threshold: float = 0.4  # self-consistency filter: keep when nDCG@10 >= threshold
    max_passage_tokens: int | None = 512  # per passage in the teacher prompts (backend.truncate)
    mining_sampling: SamplingParams = TEACHER_SAMPLING
    ranking_sampling: SamplingParams = TEACHER_SAMPLING
    malformed_retries: int = 1  # re-ask the teacher this many times when an answer cannot be read
    require_reasoning: bool = True  # drop a ranking that comes without a reasoning chain
    concurrency: int = 8  # queries in flight (each has one request in flight at a time)
    seed: int = 0
    price_in: float | None = None  # $ per 1M prompt tokens
    price_out: float | None = None  # $ per 1M completion tokens

    def __post_init__(self) -> None:
        if self.positives not in ("auto", "teacher", "qrels"):
            raise ValueError(f"positives must be 'auto', 'teacher' or 'qrels', got {self.positives!r}")
        if self.pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {self.pool_size}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.malformed_retries < 0:
            raise ValueError(f"malformed_retries must be >= 0, got {self.malformed_retries}")
        if self.max_passage_tokens is not None and self.max_passage_tokens < 1:
            raise ValueError(f"max_passage_tokens must be >= 1 or None, got {self.max_passage_tokens}")
        for name in ("price_in", "price_out"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")


# ------------------------------------------------------------------------------------------ pipeline
class _QueryFailed(Exception):
    """A teacher request failed after the backend's retries."""


@dataclass
class _Outcome:
    query: SynthesisQuery
    status: Literal["kept", "dropped", "failed"]
    reason: str | None = None
    sample: SyntheticSample | None = None
    ndcg: float | None = None
    docs: dict[str, dict[str, str]] = field(default_factory=dict)
    log: dict[str, Any] = field(default_factory=dict)


class Synthesizer:
    """Runs the pipeline against a teacher :class:`~reasonrank.core.backends.Backend`.

    >>> from reasonrank.core.backends.openai import OpenAIBackend
    >>> teacher = OpenAIBackend("deepseek-reasoner", base_url="https://api.deepseek.com/v1", api_key=...)
    >>> report = Synthesizer(teacher).run(queries, corpus, "out/")
    """

    def __init__(self, teacher: Backend, config: SynthesisConfig | None = None) -> None:
        self.teacher = teacher
        self.config = config or SynthesisConfig()

    # --------------------------------------------------------------- entry points
    def run(
        self,
        queries: Sequence[SynthesisQuery],
        corpus: Corpus,
        out_dir: str | Path,
        *,
        show_progress: bool = True,
    ) -> SynthesisReport:
        """Label ``queries`` into ``out_dir`` (see :meth:`arun`)."""
        return asyncio.run(self.arun(queries, corpus, out_dir, show_progress=show_progress))

    async def arun(
        self,
        queries: Sequence[SynthesisQuery],
        corpus: Corpus,
        out_dir: str | Path,
        *,
        show_progress: bool = True,
    ) -> SynthesisReport:
        """Label every query not finished in ``out_dir`` yet; returns this run's report.

        ``queries`` carry their first-stage pools; ``corpus`` holds the passage texts.
        """
        cfg = self.config
        started = time.perf_counter()
        report = SynthesisReport(str(out_dir), cfg.threshold, price_in=cfg.price_in, price_out=cfg.price_out)
        with SynthesisStore(out_dir) as store:
            todo = self._todo(queries, corpus, store, report)
            if todo and cfg.max_passage_tokens:
                # Settle the backend's truncation method once, before the workers (fails fast when a
                # tokenizer cannot load, and probes the server once instead of once per worker).
                await self.teacher.atruncate(["warm-up"], cfg.max_passage_tokens)
            progress = tqdm(total=len(todo), desc="synthesize", unit="query", disable=not show_progress)
            pending: asyncio.Queue[SynthesisQuery] = asyncio.Queue()
            for q in todo:
                pending.put_nowait(q)

            async def worker() -> None:
                while True:
                    try:
                        q = pending.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    outcome = await self._label(q, corpus, report)
                    self._record(outcome, store, report)
                    progress.update(1)
                    progress.set_postfix(kept=report.kept, dropped=report.dropped, failed=report.failed)

            try:
                await asyncio.gather(*(worker() for _ in range(min(cfg.concurrency, len(todo)) or 1)))
            finally:
                progress.close()
                report.seconds = time.perf_counter() - started
                store.write_summary(report.to_dict())
        return report

    # --------------------------------------------------------------- steps
    def _todo(
        self, queries: Sequence[SynthesisQuery], corpus: Corpus, store: SynthesisStore, report: SynthesisReport
    ) -> list[SynthesisQuery]:
        todo, seen = [], set()
        for q in queries:
            key = (q.dataset, q.qid)
            if key in seen:
                raise ValueError(f"query {q.qid!r} of {q.dataset!r} is given twice")
            seen.add(key)
            if store.finished(*key):
                report.domain(q.dataset).skipped += 1
                continue
            store.check_query(q.qid, q.query)
            for docid in q.pool:
                if docid in corpus:
                    store.check_doc(docid, corpus[docid]["text"])
            todo.append(q)
        return todo

    def _source(self, q: SynthesisQuery) -> Literal["teacher", "qrels"]:
        mode = self.config.positives
        if mode != "auto":
            return mode  # type: ignore[return-value]
        if q.answer and q.answer.strip():
            return "teacher"
        return "qrels" if q.known_positives(self.config.min_grade) else "teacher"

    async def _contents(self, docids: Sequence[str], corpus: Corpus, cache: dict[str, str]) -> list[str]:
        """Prompt contents (title, ftfy, truncation, ``[n]``->``(n)``), computed once per passage."""
        missing = [d for d in dict.fromkeys(docids) if d not in cache]
        if missing:
            max_tokens = self.config.max_passage_tokens or None
            steps = passage_contents([corpus[d] for d in missing], max_tokens)
            try:
                texts = next(steps)
                while True:
                    texts = steps.send(await self.teacher.atruncate(texts, max_tokens))
            except StopIteration as done:
                cache.update(zip(missing, done.value))
        return [cache[d] for d in docids]

    async def _ask(self, messages: list[dict[str, str]], sampling: SamplingParams, tag: str, usage: TokenUsage) -> str:
        [completion] = await self.teacher.agenerate([ChatRequest(messages, sampling, tag)])
        usage.add(completion)
        if completion.error is not None:
            raise _QueryFailed(f"{tag}: {completion.error}")
        return completion.text

    def _sampling(self, base: SamplingParams, attempt: int) -> SamplingParams:
        return base if base.seed is None or attempt == 0 else replace(base, seed=base.seed + attempt)

    async def _mine(
        self, q: SynthesisQuery, pool: list[str], corpus: Corpus, cache: dict[str, str], usage: TokenUsage
    ) -> tuple[MiningAnswer, int]:
        passages = await self._contents(pool, corpus, cache)
        messages = mining_messages(q.query, passages, q.answer)
        for attempt in range(self.config.malformed_retries + 1):
            sampling = self._sampling(self.config.mining_sampling, attempt)
            text = await self._ask(messages, sampling, f"{q.dataset}/{q.qid}/mining#{attempt}", usage)
            mined = parse_mining_answer(text, len(pool))
            if mined.parsed:
                break
        return mined, attempt + 1

    async def _rank(
        self, q: SynthesisQuery, docids: list[str], corpus: Corpus, cache: dict[str, str], usage: TokenUsage
    ) -> tuple[TeacherRanking, int]:
        passages = await self._contents(docids, corpus, cache)
        messages = ranking_messages(q.query, passages)
        for attempt in range(self.config.malformed_retries + 1):
            sampling = self._sampling(self.config.ranking_sampling, attempt)
            text = await self._ask(messages, sampling, f"{q.dataset}/{q.qid}/ranking#{attempt}", usage)
            ranked = parse_teacher_ranking(text, len(docids))
            if self._usable(ranked):
                break
        return ranked, attempt + 1

    def _usable(self, ranked: TeacherRanking) -> bool:
        return ranked.usable if self.config.require_reasoning else NO_RANKING not in ranked.repairs

    async def _label(self, q: SynthesisQuery, corpus: Corpus, report: SynthesisReport) -> _Outcome:
        cfg = self.config
        cache: dict[str, str] = {}  # prompt contents of this query's passages (mining and ranking share them)
        mining_usage, ranking_usage = TokenUsage(), TokenUsage()
        source = self._source(q)
        log: dict[str, Any] = {"dataset": q.dataset, "qid": q.qid, "positives_source": source}
        try:
            pool = list(dict.fromkeys(q.pool[: cfg.pool_size]))
            known = [d for d in q.known_positives(cfg.min_grade) if d in corpus]
            pool += [d for d in known if d not in pool]  # qrels positives the first stage missed
            absent = [d for d in pool if d not in corpus]
            if absent:
                log["missing_texts"] = absent
                pool = [d for d in pool if d in corpus]
            log["pool"] = len(pool)
            if not pool:
                return _Outcome(q, "dropped", "empty_pool", log=log)
            if source == "teacher":
                mined, attempts = await self._mine(q, pool, corpus, cache, mining_usage)
                log["mining"] = {
                    "attempts": attempts,
                    "parsed": mined.parsed,
                    "positives": len(mined.indices),
                    "ignored_ids": mined.ignored,
                    "duplicates": mined.duplicates,
                }
                if not mined.parsed:
                    return _Outcome(q, "dropped", "unparsable_mining", log=log)
                positives = [pool[i] for i in mined.indices]
            else:
                positives = [d for d in pool if d in set(known)]
            exclude = [d for d in known if d not in set(positives)]
            rng = query_rng(cfg.seed, q.dataset, q.qid)
            cands = build_candidate_list(pool, positives, cfg.lists, rng, exclude=exclude)
            docs = {d: corpus[d] for d in cands.docids}
            log["list"] = {
                "size": len(cands.docids),
                "positives": len(cands.positives),
                "hard": len(cands.hard_negatives),
            }
            if not cands.positives:
                sample = SyntheticSample(q.dataset, q.qid, cands.docids, list(cands.docids), "", [])
                return _Outcome(q, "dropped", "no_positives", sample, docs=docs, log=log)
            ranked, attempts = await self._rank(q, cands.docids, corpus, cache, ranking_usage)
            log["ranking"] = {"attempts": attempts, "repairs": ranked.repairs, "reasoning_chars": len(ranked.reasoning)}
            final = [cands.docids[i] for i in ranked.order]
            sample = SyntheticSample(q.dataset, q.qid, cands.docids, final, ranked.reasoning, cands.positives)
            if not self._usable(ranked):
                reason = "unparsable_ranking" if NO_RANKING in ranked.repairs else "no_reasoning"
                return _Outcome(q, "dropped", reason, sample, docs=docs, log=log)
            ndcg = round(float(ndcg_at_k(final, cands.positives, k=10)), 6)
            if ndcg >= cfg.threshold:
                return _Outcome(q, "kept", None, sample, ndcg, docs, log)
            return _Outcome(q, "dropped", "filtered", sample, ndcg, docs, log)
        except _QueryFailed as err:  # anything else (a backend that cannot work at all) aborts the run
            logger.warning("%s/%s failed: %s", q.dataset, q.qid, err)
            return _Outcome(q, "failed", str(err), log=log)
        finally:
            report.mining.merge(mining_usage)
            report.ranking.merge(ranking_usage)
            log["tokens"] = {
                "prompt": mining_usage.prompt_tokens + ranking_usage.prompt_tokens,
                "completion": mining_usage.completion_tokens + ranking_usage.completion_tokens,
            }

    def _record(self, outcome: _Outcome, store: SynthesisStore, report: SynthesisReport) -> None:
        q, domain = outcome.query, report.domain(outcome.query.dataset)
        entry = {**outcome.log, "status": outcome.status, "reason": outcome.reason, "ndcg@10": outcome.ndcg}
        if outcome.status == "failed":
            domain.failed += 1
            store.log(entry)
            return
        if outcome.sample is None:  # dropped before a list existed: remember it as finished all the same
            outcome.sample = SyntheticSample(q.dataset, q.qid, [], [], "", [])
        store.write_texts(q.qid, q.query, outcome.docs)
        if outcome.status == "kept":
            store.write_kept(outcome.sample)
            domain.kept += 1
        else:
            store.write_dropped(outcome.sample, outcome.reason or "dropped", outcome.ndcg)
            domain.dropped[outcome.reason or "dropped"] += 1
        store.log(entry)


def synthesize(
    queries: Sequence[SynthesisQuery],
    corpus: Corpus,
    out_dir: str | Path,
    *,
    base_url: str,
    model: str | None = None,
    api_key: str | None = None,
    config: SynthesisConfig | None = None,
    show_progress: bool = True,
    **backend_kwargs: Any,
) -> SynthesisReport:
    """Run the pipeline with an OpenAI-compatible teacher at ``base_url`` (closed afterwards)."""
    from reasonrank.core.backends.openai import OpenAIBackend

    config = config or SynthesisConfig()
    backend_kwargs.setdefault("concurrency", config.concurrency)
    teacher = OpenAIBackend(model, base_url=base_url, api_key=api_key, **backend_kwargs)

    async def go() -> SynthesisReport:
        try:
            return await Synthesizer(teacher, config).arun(queries, corpus, out_dir, show_progress=show_progress)
        finally:
            await teacher.aclose()

    return asyncio.run(go())
