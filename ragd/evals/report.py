"""Self-contained HTML reports of eval runs: no external assets, plots inlined as SVG.

Sections: the runs and their configuration, metric bars with bootstrap intervals, per-item score
distributions, latency histograms, and deltas of every run against the first one.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from ragd.db.models import EvalRun
from ragd.evals.compare import compare_runs, item_metrics
from ragd.evals.records import lower_is_better

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_METRICS = 12
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #ddd;padding-bottom:.3rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem}
th{background:#f4f4f4;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.better{color:#176f2c;font-weight:600}.worse{color:#b3261e;font-weight:600}code{font-size:.8rem}
figure{margin:1rem 0}svg{max-width:100%;height:auto}.muted{color:#777;font-size:.85rem}
"""


def _is_latency(metric: str) -> bool:
    return metric.endswith(("_ms", "_s")) or "latency" in metric


def _svg(fig: Figure) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.find("<svg") :]  # drop the XML prolog and DOCTYPE: inline SVG needs neither


def _mean_ci(values: Sequence[float], seed: int = 0, n_boot: int = 1000) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size < 2:
        m = float(arr.mean()) if arr.size else float("nan")
        return m, m, m
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(n_boot, arr.size))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(arr.mean()), float(low), float(high)


def _label(run: EvalRun, i: int) -> str:
    return f"{chr(65 + i) if i < 26 else i}: {run.kind} {run.id[:8]}"


def _metric_bars(runs: Sequence[EvalRun], metrics: list[str]) -> str:
    import matplotlib.pyplot as plt

    per_run = [item_metrics(r.items) for r in runs]
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(metrics) * max(1, len(runs)) ** 0.5 + 2), 3.8))
    x = np.arange(len(metrics))
    for i, run in enumerate(runs):
        heights, lows, highs = [], [], []
        for m in metrics:
            values = list(per_run[i].get(m, {}).values())
            agg = run.metrics.get(m)
            if values:
                mean, lo, hi = _mean_ci(values)
                value = float(agg) if isinstance(agg, int | float) else mean
                heights.append(value)
                lows.append(max(0.0, value - lo))
                highs.append(max(0.0, hi - value))
            else:
                heights.append(float(agg) if isinstance(agg, int | float) else 0.0)
                lows.append(0.0)
                highs.append(0.0)
        ax.bar(
            x + i * width - 0.4 + width / 2,
            heights,
            width,
            yerr=[lows, highs],
            capsize=3,
            label=_label(run, i),
        )
    ax.set_xticks(x, metrics, rotation=30, ha="right")
    ax.set_ylabel("value (95% bootstrap interval)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _svg(fig)


def _distributions(runs: Sequence[EvalRun], metrics: list[str]) -> str:
    import matplotlib.pyplot as plt

    per_run = [item_metrics(r.items) for r in runs]
    cols = min(3, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for k, m in enumerate(metrics):
        ax = axes[k // cols][k % cols]
        data = [list(p.get(m, {}).values()) or [float("nan")] for p in per_run]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(runs) + 1), [chr(65 + i) for i in range(len(runs))])
        ax.set_title(m, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for k in range(len(metrics), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.tight_layout()
    return _svg(fig)


def _latency(runs: Sequence[EvalRun], metric: str) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    all_values = [list(item_metrics(r.items).get(metric, {}).values()) for r in runs]
    flat = [v for vs in all_values for v in vs]
    bins: Any = list(np.histogram_bin_edges(flat, bins=30)) if flat else 10
    for i, values in enumerate(all_values):
        if values:
            p50, p95 = np.percentile(values, [50, 95])
            ax.hist(values, bins=bins, alpha=0.5, label=f"{_label(runs[i], i)} p50 {p50:.1f} p95 {p95:.1f}")
    ax.set_xlabel(metric)
    ax.set_ylabel("items")
    ax.legend(fontsize=8)
    return _svg(fig)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _config_rows(run: EvalRun) -> str:
    cfg = run.config
    keys = [
        "code",
        "fingerprint",
        "model",
        "adapter",
        "embedder",
        "index",
        "prompt_hash",
        "dataset",
        "params",
    ]
    cells = "".join(
        f"<tr><th>{k}</th><td><code>{html.escape(str(cfg[k]))[:600]}</code></td></tr>"
        for k in keys
        if k in cfg
    )
    return f"<table>{cells}</table>"


def render_report(runs: Sequence[EvalRun], title: str = "ragd evaluation report") -> str:
    """The HTML document for ``runs`` (the first run is the baseline of the delta tables)."""
    import matplotlib

    matplotlib.use("Agg")  # headless; must precede pyplot's first import
    if not runs:
        raise ValueError("no runs to report")
    names = list(dict.fromkeys(m for r in runs for m, v in r.metrics.items() if isinstance(v, int | float)))
    per_item_names = list(dict.fromkeys(m for r in runs for m in item_metrics(r.items)))
    quality = [m for m in dict.fromkeys([*names, *per_item_names]) if not _is_latency(m)][:MAX_METRICS]
    latency = [m for m in per_item_names if _is_latency(m)][:3]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p class='muted'>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {len(runs)} runs.</p>"
    ]
    parts.append(
        "<h2>Runs</h2><table><tr><th></th><th>run</th><th>kind</th><th>created</th><th>items</th>"
        "<th>code</th><th>fingerprint</th></tr>"
    )
    for i, r in enumerate(runs):
        parts.append(
            f"<tr><td>{chr(65 + i)}</td><td><code>{r.id}</code></td><td>{html.escape(r.kind)}</td>"
            f"<td>{r.created_at:%Y-%m-%d %H:%M}</td><td class='num'>{len(r.items)}</td>"
            f"<td><code>{html.escape(str(r.config.get('code', '')))}</code></td>"
            f"<td><code>{html.escape(str(r.config.get('fingerprint', '')))}</code></td></tr>"
        )
    parts.append("</table>")
    parts.append(
        "<h2>Metrics</h2><table><tr><th>metric</th>"
        + "".join(f"<th>{chr(65 + i)}</th>" for i in range(len(runs)))
        + "</tr>"
    )
    for m in names:
        parts.append(
            f"<tr><td>{html.escape(m)}</td>"
            + "".join(f"<td class='num'>{_fmt(r.metrics.get(m, '-'))}</td>" for r in runs)
            + "</tr>"
        )
    parts.append("</table>")
    if quality:
        parts.append(f"<figure>{_metric_bars(runs, quality)}</figure>")
    dist = [m for m in per_item_names if not _is_latency(m)][:9]
    if dist:
        parts.append(f"<h2>Per-item distributions</h2><figure>{_distributions(runs, dist)}</figure>")
    if latency:
        parts.append("<h2>Latency</h2>")
        parts.extend(f"<figure>{_latency(runs, m)}</figure>" for m in latency)
    if len(runs) > 1:
        parts.append("<h2>Deltas against A (paired bootstrap, 95%)</h2>")
        for i, r in enumerate(runs[1:], start=1):
            parts.append(
                f"<h3>{chr(65 + i)} - A</h3><table><tr><th>metric</th><th>A</th><th>{chr(65 + i)}</th>"
                "<th>delta</th><th>95% CI</th><th>p</th><th>pairs</th><th>verdict</th></tr>"
            )
            for d in compare_runs(runs[0], r):
                ci = "-" if d.ci_low is None else f"[{d.ci_low:+.4f}, {d.ci_high:+.4f}]"
                arrow = " (lower is better)" if lower_is_better(d.metric) else ""
                parts.append(
                    f"<tr><td>{html.escape(d.metric)}{arrow}</td><td class='num'>{_fmt(d.a)}</td>"
                    f"<td class='num'>{_fmt(d.b)}</td><td class='num'>{_fmt(d.delta)}</td>"
                    f"<td class='num'>{ci}</td><td class='num'>{_fmt(d.p_value)}</td>"
                    f"<td class='num'>{d.n_pairs}</td><td class='{d.verdict}'>{d.verdict}</td></tr>"
                )
            parts.append("</table>")
    parts.append("<h2>Configuration</h2>")
    for i, r in enumerate(runs):
        parts.append(f"<h3>{_label(r, i)}</h3>{_config_rows(r)}")
    parts.append("</body></html>")
    return "\n".join(parts)
