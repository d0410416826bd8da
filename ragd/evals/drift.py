"""Drift detectors: a rolling window of recent turns against a reference window.

Two-sample tests, each giving a statistic and a p-value; a detector alarms when ``p < alpha``:

- ``query_embedding``: maximum mean discrepancy (RBF kernel, median-distance bandwidth) between
  the query embeddings of the two windows, p-value by permutation. Hand-written (about 30 lines
  of numpy) because the libraries that ship it (alibi-detect, frouros) pull in TensorFlow or
  PyTorch-specific stacks for one test.
- ``retrieval_top_score`` and ``grounding_score``: Kolmogorov-Smirnov (``scipy.stats.ks_2samp``).
- ``abstention_rate``, ``block_rate`` and ``negative_feedback_rate``: Fisher's exact test on the
  2x2 table of counts.

:func:`detect` works on plain arrays (benchmarks use it directly); ``DriftMonitor`` in
:mod:`ragd.evals.drift_monitor` reads the windows from the store, keeps results and alerts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

#: Each side needs at least this many observations for a detector to run.
MIN_SAMPLES = 20

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DetectorResult:
    """One detector's verdict on one window."""

    detector: str
    statistic: float | None
    p_value: float | None
    alarm: bool
    reference_n: int
    window_n: int
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class WindowData:
    """What the detectors read from one window of turns."""

    embeddings: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    top_scores: list[float] = field(default_factory=list)
    grounding: list[float] = field(default_factory=list)
    abstained: list[bool] = field(default_factory=list)
    blocked: list[bool] = field(default_factory=list)
    feedback: list[int] = field(default_factory=list)  # +1 / -1 per rated turn


def mmd_permutation_test(
    x: npt.ArrayLike, y: npt.ArrayLike, *, permutations: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """Biased MMD² between samples ``x`` (n, d) and ``y`` (m, d) and its permutation p-value.

    Returns ``(mmd2, p_value, bandwidth)``. The kernel matrix is computed once; each permutation
    is a quadratic form ``a' K a`` with ``a = 1/n`` on one side and ``-1/m`` on the other, so a
    thousand permutations of a few hundred points cost one matrix product.
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    n, m = len(xa), len(ya)
    pooled = np.vstack([xa, ya])
    sq = np.sum(pooled**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0.0)
    off_diag = d2[np.triu_indices(n + m, k=1)]
    median = float(np.median(off_diag)) if off_diag.size else 1.0
    bandwidth = math.sqrt(median / 2) if median > 0 else 1.0
    kernel = np.exp(-d2 / (2 * bandwidth**2))

    def weights(labels: npt.NDArray[np.bool_]) -> FloatArray:
        return np.where(labels, 1.0 / n, -1.0 / m)

    base = np.zeros(n + m, dtype=bool)
    base[:n] = True
    a0 = weights(base)
    observed = float(a0 @ kernel @ a0)
    rng = np.random.default_rng(seed)
    exceed = 0
    done = 0
    while done < permutations:
        size = min(500, permutations - done)
        labels = np.stack([rng.permutation(base) for _ in range(size)], axis=1)  # (n+m, size)
        a = np.where(labels, 1.0 / n, -1.0 / m)
        values = np.einsum("ij,ij->j", a, kernel @ a)
        exceed += int(np.sum(values >= observed - 1e-12))
        done += size
    return observed, (exceed + 1) / (permutations + 1), bandwidth


def _ks(name: str, ref: list[float], win: list[float], alpha: float) -> DetectorResult:
    if len(ref) < MIN_SAMPLES or len(win) < MIN_SAMPLES:
        return DetectorResult(name, None, None, False, len(ref), len(win), {"status": "insufficient data"})
    res = stats.ks_2samp(ref, win)
    p = float(res.pvalue)
    detail = {"reference_mean": float(np.mean(ref)), "window_mean": float(np.mean(win))}
    return DetectorResult(name, float(res.statistic), p, p < alpha, len(ref), len(win), detail)


def _rate(name: str, ref: list[bool], win: list[bool], alpha: float) -> DetectorResult:
    if len(ref) < MIN_SAMPLES or len(win) < MIN_SAMPLES:
        return DetectorResult(name, None, None, False, len(ref), len(win), {"status": "insufficient data"})
    a, b = sum(ref), sum(win)
    table = [[a, len(ref) - a], [b, len(win) - b]]
    p = float(stats.fisher_exact(table).pvalue)
    r0, r1 = a / len(ref), b / len(win)
    return DetectorResult(
        name, r1 - r0, p, p < alpha, len(ref), len(win), {"reference_rate": r0, "window_rate": r1}
    )


def detect(
    reference: WindowData, window: WindowData, *, alpha: float, permutations: int = 1000, seed: int = 0
) -> list[DetectorResult]:
    """Run every detector on two windows."""
    results: list[DetectorResult] = []
    ne, me = len(reference.embeddings), len(window.embeddings)
    if ne >= MIN_SAMPLES and me >= MIN_SAMPLES:
        mmd2, p, bw = mmd_permutation_test(
            reference.embeddings, window.embeddings, permutations=permutations, seed=seed
        )
        results.append(
            DetectorResult(
                "query_embedding", mmd2, p, p < alpha, ne, me, {"bandwidth": bw, "permutations": permutations}
            )
        )
    else:
        results.append(
            DetectorResult("query_embedding", None, None, False, ne, me, {"status": "insufficient data"})
        )
    results.append(_ks("retrieval_top_score", reference.top_scores, window.top_scores, alpha))
    results.append(_ks("grounding_score", reference.grounding, window.grounding, alpha))
    results.append(_rate("abstention_rate", reference.abstained, window.abstained, alpha))
    results.append(_rate("block_rate", reference.blocked, window.blocked, alpha))
    results.append(
        _rate(
            "negative_feedback_rate",
            [f < 0 for f in reference.feedback],
            [f < 0 for f in window.feedback],
            alpha,
        )
    )
    return results
