"""Window schedules: the authors' back-to-front loop exactly, and the tournament's guarantees."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonrank.core.windows import SlidingWindow, Tournament, make_strategy, sliding_windows


def test_100_candidates_give_the_authors_nine_windows():
    assert sliding_windows(100, 20, 10) == [
        (80, 100), (70, 90), (60, 80), (50, 70), (40, 60), (30, 50), (20, 40), (10, 30), (0, 20),
    ]  # fmt: skip


def test_short_lists_follow_the_recipe():
    assert sliding_windows(57, 20, 10) == [(37, 57), (27, 47), (17, 37), (7, 27), (0, 17)]
    assert sliding_windows(25, 20, 10) == [(5, 25), (0, 15)]
    assert sliding_windows(20, 20, 10) == [(0, 20)]
    assert len(sliding_windows(100, 10, 5)) == 19  # the paper's w10/s5 variant
    assert sliding_windows(0, 20, 10) == []


def test_window_minus_step_candidates_are_ranked_unlike_the_original():
    # The authors' guard stops before the first window when n == window_size - step (10 with 20/10).
    assert sliding_windows(10, 20, 10) == [(0, 10)]
    assert sliding_windows(3, 5, 2) == [(0, 3)]
    for n in range(2, 60):
        covered = {i for start, end in sliding_windows(n, 20, 10) for i in range(start, end)}
        assert covered == set(range(n)), n


@pytest.mark.parametrize(("window_size", "step"), [(1, 1), (20, 0), (20, 20), (20, 25), (10, -1)])
def test_bad_window_settings_are_rejected(window_size, step):
    with pytest.raises(ValueError, match="window_size|step"):
        sliding_windows(100, window_size, step)
    with pytest.raises(ValueError):
        SlidingWindow(window_size, step)


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="unknown strategy 'bubble'"):
        make_strategy("bubble")
    assert isinstance(make_strategy("Tournament"), Tournament)


def run_plan(strategy, relevance):
    """Drive a plan with a perfect window ranker (best = highest relevance)."""
    plan = strategy.plan(len(relevance))
    while windows := plan.pending():
        plan.apply([sorted(range(len(w)), key=lambda i: -relevance[w[i]]) for w in windows])
    return plan


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 150).flatmap(lambda n: st.permutations(range(n))), st.sampled_from([SlidingWindow, Tournament]))
def test_a_perfect_ranker_gives_the_exact_top_10(relevance, strategy_cls):
    plan = run_plan(strategy_cls(20, 10), list(relevance))
    n = len(relevance)
    assert sorted(plan.order) == list(range(n))
    best = sorted(range(n), key=lambda i: -relevance[i])
    assert plan.order[: min(10, n)] == best[:10]


def test_call_and_round_counts_on_100_candidates():
    relevance = list(range(100))
    sliding = run_plan(SlidingWindow(20, 10), relevance)
    assert (sliding.calls, sliding.rounds) == (9, 9)
    tournament = run_plan(Tournament(20, 10), relevance)
    assert tournament.rounds <= 4
    assert tournament.order[:10] == sorted(range(100), key=lambda i: -i)[:10]
    assert (tournament.calls, tournament.rounds) == (9, 4)  # 5 + 2 + 1 + 1 windows


def test_plan_rejects_a_ranking_that_is_not_a_permutation():
    plan = SlidingWindow(20, 10).plan(30)
    with pytest.raises(ValueError, match="not a permutation"):
        plan.apply([[0] * 20])
    with pytest.raises(ValueError, match="expected 1 rankings"):
        plan.apply([])


@pytest.mark.parametrize("strategy_cls", [SlidingWindow, Tournament])
@pytest.mark.parametrize(("window_size", "step"), [(20, 10), (10, 5), (5, 2)])
def test_planned_windows_are_known_up_front(strategy_cls, window_size, step):
    for n in range(0, 130):
        plan = run_plan(strategy_cls(window_size, step), list(range(n)))
        assert strategy_cls(window_size, step).plan(n).planned == plan.calls, n


def test_stop_applies_the_ranked_windows_in_place_and_keeps_the_rest():
    plan = Tournament(20, 10).plan(100)
    first_round = plan.pending()
    assert len(first_round) == 5
    reverse = list(range(19, -1, -1))
    plan.stop([reverse, None, reverse, None, None])  # two of five windows came back
    assert plan.done and plan.pending() == [] and plan.calls == 2
    assert plan.order[:20] == list(range(19, -1, -1)) and plan.order[20:40] == list(range(20, 40))
    assert plan.order[40:60] == list(range(59, 39, -1)) and plan.order[60:] == list(range(60, 100))


def test_stop_with_a_whole_round_applies_it_as_usual():
    whole, usual = Tournament(20, 10).plan(100), Tournament(20, 10).plan(100)
    rankings = [list(range(len(w)))[::-1] for w in whole.pending()]
    whole.stop(rankings)
    usual.apply(rankings)
    assert whole.order == usual.order and whole.done and not usual.done
    sliding = SlidingWindow(20, 10).plan(100)
    sliding.stop()
    assert sliding.done and sliding.order == list(range(100)) and sliding.calls == 0
