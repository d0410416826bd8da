"""Comparing two eval runs: per-metric deltas with paired-bootstrap confidence intervals.

Items are paired by their ``id`` (see :mod:`ragd.evals.records`); the interval is that of the
mean per-item difference ``B - A``, resampling pairs with replacement. Metrics that exist only
as aggregates (no per-item values) get a delta without an interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ragd.db.models import EvalRun
from ragd.evals.records import lower_is_better

#: Per-item fields that are never metrics.
NON_METRIC_FIELDS = frozenset({"id"})


@dataclass(frozen=True)
class MetricDelta:
    """The change of one metric from run A to run B."""

    metric: str
    a: float | None
    b: float | None
    delta: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    n_pairs: int = 0
    lower_is_better: bool = False

    @property
    def verdict(self) -> str:
        """``better``/``worse`` when the interval excludes zero, else ``same`` (or ``n/a``)."""
        if self.ci_low is None or self.ci_high is None:
            return "n/a"
        if self.ci_low > 0 or self.ci_high < 0:
            improved = (self.ci_low > 0) != self.lower_is_better
            return "better" if improved else "worse"
        return "same"

    def as_dict(self) -> dict[str, Any]:
        """Plain data, with the verdict."""
        return {**asdict(self), "verdict": self.verdict}


def item_metrics(items: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """``{metric: {item id: value}}`` for every numeric top-level item field."""
    out: dict[str, dict[str, float]] = {}
    for item in items:
        item_id = str(item.get("id", ""))
        for key, value in item.items():
            if key in NON_METRIC_FIELDS or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                out.setdefault(key, {})[item_id] = float(value)
    return out


def _bootstrap_indices(n: int, n_boot: int, rng: np.random.Generator) -> Iterator[npt.NDArray[np.int64]]:
    # Chunks bound memory: 2,000 resamples of 50,000 pairs would otherwise be 800 MB of indices.
    chunk = max(1, min(n_boot, 4_000_000 // max(n, 1)))
    done = 0
    while done < n_boot:
        size = min(chunk, n_boot - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def paired_bootstrap(
    diffs: npt.NDArray[np.float64], *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile interval of the mean of ``diffs`` and a two-sided bootstrap p-value for 0."""
    if diffs.size == 0:
        return math.nan, math.nan, math.nan
    if np.all(diffs == diffs[0]):
        value = float(diffs[0])
        return value, value, 1.0 if value == 0 else 0.0
    rng = np.random.default_rng(seed)
    means = np.concatenate([diffs[idx].mean(axis=1) for idx in _bootstrap_indices(diffs.size, n_boot, rng)])
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    # Share of resampled means on the other side of zero, both tails, with the +1 correction.
    tail = min((means <= 0).sum(), (means >= 0).sum())
    p = min(1.0, 2 * (tail + 1) / (means.size + 1))
    return float(low), float(high), float(p)


def compare_runs(
    a: EvalRun, b: EvalRun, *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0
) -> list[MetricDelta]:
    """Per-metric deltas ``B - A`` for every metric either run reports."""
    per_a, per_b = item_metrics(a.items), item_metrics(b.items)
    names = list(dict.fromkeys([*a.metrics, *b.metrics, *per_a, *per_b]))
    deltas: list[MetricDelta] = []
    for name in names:
        va, vb = _aggregate(a.metrics, per_a, name), _aggregate(b.metrics, per_b, name)
        ia, ib = per_a.get(name, {}), per_b.get(name, {})
        shared = sorted(ia.keys() & ib.keys())
        low = high = p = None
        if len(shared) >= 2:
            diffs = np.array([ib[k] - ia[k] for k in shared], dtype=np.float64)
            low, high, p = paired_bootstrap(diffs, n_boot=n_boot, confidence=confidence, seed=seed)
        deltas.append(
            MetricDelta(
                metric=name,
                a=va,
                b=vb,
                delta=None if va is None or vb is None else vb - va,
                ci_low=low,
                ci_high=high,
                p_value=p,
                n_pairs=len(shared),
                lower_is_better=lower_is_better(name),
            )
        )
    return deltas


def _aggregate(
    metrics: Mapping[str, Any], per_item: Mapping[str, Mapping[str, float]], name: str
) -> float | None:
    value = metrics.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    values = per_item.get(name)
    return float(np.mean(list(values.values()))) if values else None


def format_comparison(deltas: Sequence[MetricDelta], confidence: float = 0.95) -> str:
    """A fixed-width table for the terminal."""
    pct = f"{round(confidence * 100)}% CI"
    header = f"{'metric':<28} {'A':>10} {'B':>10} {'B-A':>10} {pct:>23} {'p':>7} {'pairs':>6}  verdict"
    lines = [header, "-" * len(header)]

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    for d in deltas:
        ci = "-" if d.ci_low is None else f"[{d.ci_low:+.4f}, {d.ci_high:+.4f}]"
        p = "-" if d.p_value is None else f"{d.p_value:.3f}"
        delta = "-" if d.delta is None else f"{d.delta:+.4f}"
        lines.append(
            f"{d.metric[:28]:<28} {num(d.a):>10} {num(d.b):>10} {delta:>10} {ci:>23} {p:>7} {d.n_pairs:>6}  "
            f"{d.verdict}"
        )
    return "\n".join(lines)
