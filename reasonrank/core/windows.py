"""Window schedules that turn window-sized rankings into a ranking of the whole candidate list.

A strategy makes a :class:`Plan` per query. A plan hands out the windows that are ready
(:meth:`Plan.pending`), takes their rankings back (:meth:`Plan.apply`) and repeats until done, so a
driver can batch the ready windows of many queries into one backend call per round. :meth:`Plan.stop`
ends a plan early (a deadline, a fatal error) with the rankings that did arrive applied in place.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

__all__ = [
    "Plan",
    "SlidingWindow",
    "Tournament",
    "Strategy",
    "sliding_windows",
    "tournament_windows",
    "make_strategy",
]


def sliding_windows(n: int, window_size: int = 20, step: int = 10) -> list[tuple[int, int]]:
    """Windows ``[start, end)`` in the order the authors' back-to-front loop visits them.

    100 candidates, window 20, step 10 -> [80,100), [70,90), ..., [0,20) (9 windows); 57 -> [37,57),
    [27,47), [17,37), [7,27), [0,17). The clamp of ``start`` at 0 is what ends the loop, as in the original.

    Deliberate fix: the authors' guard ``start + step != rank_start`` also holds before the first
    window when ``n == window_size - step`` (10 candidates with 20/10), so their loop ranks nothing
    and returns the list unchanged. Here the first window is always ranked: 10 -> [0,10).
    """
    _check(window_size, step)
    rank_start, end, start = 0, n, n - window_size
    windows: list[tuple[int, int]] = []
    while end > rank_start and (not windows or start + step != rank_start):
        start = max(start, rank_start)
        windows.append((start, end))
        end -= step
        start -= step
    return windows


def _check(window_size: int, step: int) -> None:
    if window_size < 2:
        raise ValueError(f"window_size must be >= 2, got {window_size}")
    if not 1 <= step < window_size:
        raise ValueError(f"step must satisfy 1 <= step < window_size ({window_size}), got {step}")


class Plan(ABC):
    """The ranking state of one query's candidates ``0..n-1``."""

    #: windows the whole plan runs (known up front: it depends on ``n`` only)
    planned: int = 0

    def __init__(self, n: int) -> None:
        self.n = n
        self.order: list[int] = list(range(n))  # current best-first order of candidate ids
        self.rounds = 0
        self.calls = 0
        self.stopped = False

    @abstractmethod
    def pending(self) -> list[list[int]]:
        """Windows to rank now: each a list of candidate ids in the order they are shown. Empty when done."""

    @abstractmethod
    def apply(self, rankings: Sequence[Sequence[int]]) -> None:
        """Take one ranking per pending window: a 0-based permutation of that window's positions."""

    @property
    @abstractmethod
    def done(self) -> bool: ...

    def stop(self, rankings: Sequence[Sequence[int] | None] = ()) -> None:
        """End the plan now, applying the rankings that arrived for the pending windows (None: not ranked).

        A round whose windows were all ranked is applied as usual; otherwise each ranked window reorders
        its own positions in the current order and every other candidate keeps its place.
        """
        windows = self.pending()
        given = list(rankings) + [None] * (len(windows) - len(rankings))
        if windows and all(r is not None for r in given):
            self.apply(given)  # type: ignore[arg-type]
        elif any(r is not None for r in given):
            ranked = [(w, r) for w, r in zip(windows, given) if r is not None]
            self._counted([w for w, _ in ranked], [r for _, r in ranked])
            for window, ranking in ranked:
                start = self.order.index(window[0])
                assert self.order[start : start + len(window)] == window, "a window is a slice of the order"
                self.order[start : start + len(window)] = [window[i] for i in ranking]
        self.stopped = True

    def _counted(self, windows: list[list[int]], rankings: Sequence[Sequence[int]]) -> None:
        if len(rankings) != len(windows):
            raise ValueError(f"expected {len(windows)} rankings, got {len(rankings)}")
        for window, ranking in zip(windows, rankings):
            if sorted(ranking) != list(range(len(window))):
                raise ValueError(f"ranking {list(ranking)} is not a permutation of a window of {len(window)}")
        self.rounds += 1
        self.calls += len(windows)


class SlidingPlan(Plan):
    def __init__(self, n: int, window_size: int, step: int) -> None:
        super().__init__(n)
        self._windows = sliding_windows(n, window_size, step) if n > 1 else []
        self._next = 0
        self.planned = len(self._windows)

    @property
    def done(self) -> bool:
        return self.stopped or self._next >= len(self._windows)

    def pending(self) -> list[list[int]]:
        if self.done:
            return []
        start, end = self._windows[self._next]
        return [self.order[start:end]]

    def apply(self, rankings: Sequence[Sequence[int]]) -> None:
        windows = self.pending()
        self._counted(windows, rankings)
        start, end = self._windows[self._next]
        window = windows[0]
        self.order[start:end] = [window[i] for i in rankings[0]]
        self._next += 1


class TournamentPlan(Plan):
    """Rank disjoint windows in parallel; keep each window's top ``window_size - step``; repeat."""

    def __init__(self, n: int, window_size: int, step: int) -> None:
        super().__init__(n)
        self.window_size = window_size
        self.keep = window_size - step
        self.pool: list[int] = list(range(n))
        self.eliminated: list[list[int]] = []  # one list per round, best first
        self._done = n <= 1
        self._chunks: list[list[int]] = []
        self.planned = 0 if self._done else tournament_windows(n, window_size, step)

    @property
    def done(self) -> bool:
        return self._done or self.stopped

    def _split(self) -> list[list[int]]:
        w = self.window_size
        return [self.pool[i : i + w] for i in range(0, len(self.pool), w)]

    def pending(self) -> list[list[int]]:
        if self.done:
            return []
        self._chunks = self._split()
        if len(self._chunks) == 1:
            return self._chunks
        # A chunk no larger than what survives goes through unranked: no call needed this round.
        return [c for c in self._chunks if len(c) > self.keep]

    def apply(self, rankings: Sequence[Sequence[int]]) -> None:
        windows = self.pending()
        self._counted(windows, rankings)
        ranked = iter(rankings)
        if len(self._chunks) == 1:
            chunk = self._chunks[0]
            final = [chunk[i] for i in next(ranked)]
            self.order = final + [c for rnd in reversed(self.eliminated) for c in rnd]
            self._done = True
            return
        survivors: list[int] = []
        losers: list[list[int]] = []
        for chunk in self._chunks:
            if len(chunk) > self.keep:
                chunk = [chunk[i] for i in next(ranked)]
            survivors.extend(chunk[: self.keep])
            losers.append(chunk[self.keep :])
        # Losers of one round rank by their place in their window, then by window.
        depth = max((len(x) for x in losers), default=0)
        self.eliminated.append([x[i] for i in range(depth) for x in losers if i < len(x)])
        self.pool = survivors
        self.order = survivors + [c for rnd in reversed(self.eliminated) for c in rnd]
        if len(self.pool) <= 1:
            self._done = True


def tournament_windows(n: int, window_size: int, step: int) -> int:
    """Windows a tournament over ``n`` candidates runs (rankings do not change the count)."""
    keep, pool, windows = window_size - step, n, 0
    while pool > 1:
        chunks = [min(window_size, pool - i) for i in range(0, pool, window_size)]
        if len(chunks) == 1:
            return windows + 1
        windows += sum(1 for c in chunks if c > keep)
        pool = sum(min(c, keep) for c in chunks)
    return windows


class Strategy:
    """A window schedule: ``plan(n)`` starts ranking ``n`` candidates."""

    name = "base"

    def __init__(self, window_size: int = 20, step: int = 10) -> None:
        _check(window_size, step)
        self.window_size = window_size
        self.step = step

    def plan(self, n: int) -> Plan:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(window_size={self.window_size}, step={self.step})"


class SlidingWindow(Strategy):
    """The paper's schedule: back to front, one window at a time (9 sequential calls for 100 candidates)."""

    name = "sliding"

    def plan(self, n: int) -> Plan:
        return SlidingPlan(n, self.window_size, self.step)


class Tournament(Strategy):
    """Disjoint windows ranked in parallel, the top ``window_size - step`` of each advancing.

    With a perfect window ranker it returns the same top ``window_size - step`` as the sliding window.
    For 100 candidates (20/10) it needs 4 sequential rounds instead of 9, for 9 calls in all; the order
    below the top is coarser (candidates eliminated in the same round are interleaved by window rank).
    """

    name = "tournament"

    def plan(self, n: int) -> Plan:
        return TournamentPlan(n, self.window_size, self.step)


_STRATEGIES = {cls.name: cls for cls in (SlidingWindow, Tournament)}


def make_strategy(strategy: str | Strategy, window_size: int = 20, step: int = 10) -> Strategy:
    if isinstance(strategy, Strategy):
        return strategy
    try:
        return _STRATEGIES[str(strategy).lower()](window_size, step)
    except KeyError:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of: {', '.join(_STRATEGIES)}") from None
