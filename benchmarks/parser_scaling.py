"""Parsing time as the model output doubles in size, for adversarial shapes (issue 10: parsing is linear).

Each row is one output size (16 kB .. 4 MB); each column one shape repeated to that size; each cell the
median parse time and, after the first row, the ratio to the row above (about 2 when linear, 4 when
quadratic). Before the rewrite ``"<think>" * 14000`` (98 kB) took ~27 s. Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/parser_scaling.py [--max-kb 4096] [--repeat 3]

It prints numbers; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from reasonrank.core.parsing import parse_response

SHAPES = {
    "<think>*": "<think>",
    "</think> *": "</think> ",
    "<answer>*": "<answer>",
    "think/answer nest": "<think><answer></think>",
    "[1] > * (chain)": "[1] > ",
    "huge id [999..": "[" + "9" * 1000,
    "prose + [k]": "Passage [3] from 1990 cites 42 studies; ",
    "surrogates": "\ud800 [2]\udfff > ",
}
WINDOW = 20


def median_seconds(text: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        parse_response(text, WINDOW)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--min-kb", type=int, default=16)
    parser.add_argument("--max-kb", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (median reported)")
    args = parser.parse_args(argv)
    sizes = []
    kb = args.min_kb
    while kb <= args.max_kb:
        sizes.append(kb)
        kb *= 2
    width = 17
    print(f"parse_response(text, {WINDOW}): median ms of {args.repeat} (x: ratio to the size above; linear ~2)")
    print(f"{'size':>8s} " + " ".join(f"{name:>{width}s}" for name in SHAPES))
    previous: dict[str, float] = {}
    for kb in sizes:
        cells = []
        for name, unit in SHAPES.items():
            text = (unit * (kb * 1024 // len(unit) + 1))[: kb * 1024]
            seconds = median_seconds(text, args.repeat)
            ratio = f"x{seconds / previous[name]:.2f}" if name in previous else ""
            cells.append(f"{1000 * seconds:9.2f} {ratio:>6s}".rjust(width))
            previous[name] = seconds
        print(f"{kb:>6d}kB " + " ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
