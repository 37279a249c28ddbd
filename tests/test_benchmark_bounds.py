"""The bounds ``benchmarks/client_efficiency.py`` divides by: the figures of issue 13 rest on them."""

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "client_efficiency.py"
_SPEC = importlib.util.spec_from_file_location("client_efficiency", _PATH)
ce = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ce)

CANDIDATES = [[f"q{q} p{p}" for p in range(100)] for q in range(43)]  # DL19's shape: 43 x top-100
ARRIVED = [0.001 * (i + 1) for i in range(400)]  # a client putting out one request a millisecond


@pytest.mark.parametrize(
    ("strategy", "concurrency", "bound"),
    [("sliding", 8, 9.8), ("sliding", 32, 2.6), ("sliding", 128, 1.8), ("tournament", 128, 1.0)],
)
def test_lower_bound_counts_waves_round_by_round(strategy, concurrency, bound):
    assert ce.lower_bound(strategy, CANDIDATES, concurrency, 0.2) == pytest.approx(bound)


def test_tournament_first_wave_bound_waits_for_the_slots_of_its_first_87_requests():
    # 215 first-round windows, 128 slots: the 87 beyond wait for the first 87 requests (+ 0.2 s each),
    # then a latency to return and 3 more rounds
    assert ce.round_sizes("tournament", 100) == [5, 2, 1, 1]
    assert ce.first_wave_bound("tournament", CANDIDATES, 128, 0.2, ARRIVED) == pytest.approx(0.087 + 1.0)


def test_sliding_first_wave_adds_the_last_querys_first_window():
    # 43 first windows fit 128 slots: the last query's 9 rounds start when its first window arrives
    assert ce.first_wave_bound("sliding", CANDIDATES, 128, 0.2, ARRIVED) == pytest.approx(0.043 + 1.8)


@pytest.mark.parametrize(("strategy", "concurrency"), [("sliding", 32), ("sliding", 8), ("tournament", 32)])
def test_no_first_wave_bound_where_later_rounds_or_more_waves_set_the_bound(strategy, concurrency):
    assert ce.first_wave_bound(strategy, CANDIDATES, concurrency, 0.2, ARRIVED) is None


def test_no_first_wave_bound_without_enough_arrivals():
    assert ce.first_wave_bound("tournament", CANDIDATES, 128, 0.2, ARRIVED[:10]) is None
