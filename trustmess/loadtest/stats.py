"""Latency samples and their percentiles.

Samples are kept exactly (microsecond integers in an ``array``, 8 bytes each) and sorted once at
the end: nearest-rank percentiles over every sample, merged across processes by concatenation.
A run of a few million samples costs tens of MiB, which a load-test client can afford.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_samples() -> array[int]:
    return array("q")


def merge(parts: Iterable[array[int]]) -> array[int]:
    merged = new_samples()
    for part in parts:
        merged.extend(part)
    return merged


def percentile(ordered: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of an ascending sequence (0 when empty)."""
    if not ordered:
        return 0
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(samples: Iterable[int]) -> dict[str, float]:
    """Count, mean, min, max and the standard percentiles, in microseconds."""
    ordered = sorted(samples)
    if not ordered:
        return {"count": 0}
    summary: dict[str, float] = {
        "count": len(ordered),
        "mean": round(sum(ordered) / len(ordered), 1),
        "min": ordered[0],
        "max": ordered[-1],
    }
    for q in PERCENTILES:
        summary[f"p{q:g}"] = percentile(ordered, q)
    return summary
