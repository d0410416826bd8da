"""A/B experiments: variants with a traffic split, sticky assignment per user, per-variant metrics,
a significance test against the control, and stopping that routes all traffic to the winner.

The chat service asks for the caller's variant once per turn and passes it to monitoring::

    a = experiments.assignment_for(engine, tenant=principal.tenant, subject=principal.id)
    if a is not None:
        settings_for_turn = a.config        # e.g. {"model": "...", "adapter": "...", "top_k": 8}
    monitor.record_turn(..., experiment_id=a and a.experiment_id, variant=a and a.variant)

Assignment hashes ``experiment id + user`` onto the weights, so it is stable without any state,
and is also stored on first use, so later weight changes never move users already assigned.
The first variant is the control. The unit of randomisation is the user, so the tests compare
per-user means (Welch's t-test; Bonferroni across variants): turns of one user are not
independent, and a turn-level test would overstate significance.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import stats
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ragd.db.engine import session_scope
from ragd.db.models import Experiment, ExperimentAssignment, ExperimentVariant, Feedback, MonitorTurn, utcnow
from ragd.errors import BadRequest, Conflict, NotFound

MetricName = Literal["feedback_positive", "grounding_score", "abstention_rate", "latency_ms"]
LOWER_IS_BETTER = {"abstention_rate", "latency_ms"}


class VariantSpec(BaseModel):
    """One arm: its name, share of traffic and what it changes."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    weight: float = Field(default=1.0, gt=0, le=1000)
    config: dict[str, Any] = Field(
        default_factory=dict, description="Model/adapter, retrieval settings, prompt."
    )


class ExperimentSpec(BaseModel):
    """A new experiment."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=2000)
    metric: MetricName = "feedback_positive"
    variants: list[VariantSpec] = Field(min_length=2, max_length=10)

    @model_validator(mode="after")
    def _unique(self) -> ExperimentSpec:
        if len({v.name for v in self.variants}) != len(self.variants):
            raise ValueError("variant names must be unique")
        if len(str([v.config for v in self.variants])) > 64_000:
            raise ValueError("variant configs are too large")
        return self


@dataclass(frozen=True)
class Assignment:
    """The variant a user gets for an experiment (the winner once it is stopped)."""

    experiment_id: str
    variant: str
    config: dict[str, Any]


@dataclass
class VariantStats:
    """Per-variant metrics and the test against the control."""

    name: str
    weight: float
    users: int = 0
    turns: int = 0
    rated: int = 0
    feedback_positive: float | None = None
    grounding_score: float | None = None
    abstention_rate: float | None = None
    latency_ms: float | None = None
    primary_users: int = 0  # users contributing to the primary metric
    lift: float | None = None  # primary metric minus the control's
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None  # Bonferroni-adjusted
    significant: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def create_experiment(engine: Engine, tenant: str, spec: ExperimentSpec, created_by: str = "") -> Experiment:
    """Store an experiment and its variants (names are unique per tenant)."""
    exp = Experiment(
        tenant=tenant,
        name=spec.name,
        description=spec.description,
        metric=spec.metric,
        created_by=created_by[:128],
    )
    try:
        with session_scope(engine) as session:
            session.add(exp)
            session.flush()
            for i, v in enumerate(spec.variants):
                config = {**v.config, "_order": i}
                session.add(
                    ExperimentVariant(experiment_id=exp.id, name=v.name, weight=v.weight, config=config)
                )
    except IntegrityError as exc:
        raise Conflict(f"an experiment named {spec.name!r} already exists") from exc
    return exp


def get_experiment(
    engine: Engine, tenant: str, experiment_id: str
) -> tuple[Experiment, list[ExperimentVariant]]:
    """An experiment of ``tenant`` and its variants in creation order (control first)."""
    with Session(engine) as session:
        exp = session.get(Experiment, experiment_id) if len(experiment_id) <= 32 else None
        if exp is None or exp.tenant != tenant:
            raise NotFound("experiment not found")
        variants = list(
            session.exec(select(ExperimentVariant).where(ExperimentVariant.experiment_id == exp.id)).all()
        )
        # Variant ids are random: the spec order (control first) is kept under a private config key.
        variants.sort(key=lambda v: int(v.config.get("_order", 0)))
        return exp, variants


def list_experiments(engine: Engine, tenant: str) -> list[Experiment]:
    """Experiments of ``tenant``, newest first."""
    with Session(engine) as session:
        return list(
            session.exec(
                select(Experiment)
                .where(Experiment.tenant == tenant)
                .order_by(col(Experiment.created_at).desc())
            ).all()
        )


def bucket(experiment_id: str, subject: str) -> float:
    """A uniform number in [0, 1) fixed by experiment and user."""
    digest = hashlib.sha256(f"{experiment_id}:{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _pick(variants: list[ExperimentVariant], u: float) -> ExperimentVariant:
    total = sum(v.weight for v in variants)
    acc = 0.0
    for v in variants:
        acc += v.weight / total
        if u < acc:
            return v
    return variants[-1]


def assign(engine: Engine, tenant: str, experiment_id: str, subject: str) -> Assignment:
    """The user's variant: stored on first use, the winner once the experiment is stopped."""
    if not subject or len(subject) > 128:
        raise BadRequest("subject must be 1-128 characters")
    exp, variants = get_experiment(engine, tenant, experiment_id)
    by_name = {v.name: v for v in variants}
    if exp.status == "stopped" and exp.winner in by_name:
        return Assignment(exp.id, exp.winner, _public(by_name[exp.winner].config))
    with Session(engine) as session:
        stored = session.exec(
            select(ExperimentAssignment).where(
                ExperimentAssignment.experiment_id == exp.id, ExperimentAssignment.subject == subject
            )
        ).first()
    if stored is not None and stored.variant in by_name:
        return Assignment(exp.id, stored.variant, _public(by_name[stored.variant].config))
    chosen = _pick(variants, bucket(exp.id, subject))
    try:
        with session_scope(engine) as session:
            session.add(ExperimentAssignment(experiment_id=exp.id, subject=subject, variant=chosen.name))
    except IntegrityError:
        pass  # a concurrent request stored the same (deterministic) choice first
    return Assignment(exp.id, chosen.name, _public(chosen.config))


def assignment_for(engine: Engine, tenant: str, subject: str) -> Assignment | None:
    """The assignment under the tenant's newest running experiment, else its newest stopped one."""
    with Session(engine) as session:
        exp = session.exec(
            select(Experiment)
            .where(Experiment.tenant == tenant)
            .order_by(col(Experiment.status) == "stopped", col(Experiment.created_at).desc())
            .limit(1)
        ).first()
    if exp is None or (exp.status == "stopped" and not exp.winner):
        return None
    return assign(engine, tenant, exp.id, subject)


def _public(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def _user_values(turns: list[MonitorTurn], ratings: dict[str, int]) -> dict[str, dict[str, list[float]]]:
    """``{metric: {user: [values]}}`` for one variant."""
    out: dict[str, dict[str, list[float]]] = {
        m: {} for m in ("feedback_positive", "grounding_score", "abstention_rate", "latency_ms")
    }
    for t in turns:
        user = t.subject or t.id
        if t.message_id and t.message_id in ratings:
            out["feedback_positive"].setdefault(user, []).append(1.0 if ratings[t.message_id] > 0 else 0.0)
        if t.grounding_score is not None:
            out["grounding_score"].setdefault(user, []).append(t.grounding_score)
        if not t.blocked:
            out["abstention_rate"].setdefault(user, []).append(1.0 if t.abstained else 0.0)
        if t.latency_ms is not None:
            out["latency_ms"].setdefault(user, []).append(t.latency_ms)
    return out


def compare_user_means(
    control: list[float], treatment: list[float], comparisons: int = 1, confidence: float = 0.95
) -> tuple[float, float, float, float]:
    """Welch's t-test on per-user means: (lift, ci_low, ci_high, Bonferroni-adjusted p)."""
    a, b = np.asarray(control, dtype=np.float64), np.asarray(treatment, dtype=np.float64)
    lift = float(b.mean() - a.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return lift, lift, lift, 1.0 if lift == 0 else 0.0
    df = (va + vb) ** 2 / ((va**2) / (a.size - 1) + (vb**2) / (b.size - 1))
    p = float(stats.ttest_ind(b, a, equal_var=False).pvalue)
    half = float(stats.t.ppf(1 - (1 - confidence) / (2 * comparisons), df)) * se
    return lift, lift - half, lift + half, min(1.0, p * comparisons)


def experiment_results(
    engine: Engine, tenant: str, experiment_id: str, alpha: float = 0.05
) -> dict[str, Any]:
    """Per-variant metrics and each variant's test against the control on the primary metric."""
    exp, variants = get_experiment(engine, tenant, experiment_id)
    with Session(engine) as session:
        turns = list(
            session.exec(
                select(MonitorTurn).where(MonitorTurn.tenant == tenant, MonitorTurn.experiment_id == exp.id)
            ).all()
        )
        ids = [t.message_id for t in turns if t.message_id]
        ratings: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            for fb in session.exec(
                select(Feedback).where(col(Feedback.message_id).in_(ids[start : start + 500]))
            ):
                ratings[fb.message_id] = min(ratings.get(fb.message_id, 1), fb.rating)
    per_variant: dict[str, list[MonitorTurn]] = {v.name: [] for v in variants}
    for t in turns:
        if t.variant in per_variant:
            per_variant[t.variant].append(t)
    values = {name: _user_values(ts, ratings) for name, ts in per_variant.items()}
    out: list[VariantStats] = []
    for v in variants:
        s = VariantStats(
            name=v.name,
            weight=v.weight,
            turns=len(per_variant[v.name]),
            users=len({t.subject or t.id for t in per_variant[v.name]}),
            rated=sum(1 for t in per_variant[v.name] if t.message_id in ratings),
        )
        for metric, users in values[v.name].items():
            means = [float(np.mean(x)) for x in users.values()]
            setattr(s, metric, float(np.mean(means)) if means else None)
        s.primary_users = len(values[v.name][exp.metric])
        out.append(s)
    control = variants[0].name
    a_means = [float(np.mean(x)) for x in values[control][exp.metric].values()]
    for s in out[1:]:
        b_means = [float(np.mean(x)) for x in values[s.name][exp.metric].values()]
        if len(a_means) >= 2 and len(b_means) >= 2:
            s.lift, s.ci_low, s.ci_high, s.p_value = compare_user_means(a_means, b_means, len(out) - 1)
            s.significant = s.p_value < alpha
    return {
        "experiment": exp,
        "variants": out,
        "control": control,
        "alpha": alpha,
        "lower_is_better": exp.metric in LOWER_IS_BETTER,
        "recommended": _recommend(exp.metric, out),
    }


def _recommend(metric: str, stats_: list[VariantStats]) -> str | None:
    """The significantly best variant over the control, else None (keep running or stop on control)."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    winners = [s for s in stats_[1:] if s.significant and s.lift is not None and sign * s.lift > 0]
    if not winners:
        return None
    return max(winners, key=lambda s: sign * (s.lift or 0.0)).name


def stop_experiment(
    engine: Engine, tenant: str, experiment_id: str, winner: str | None = None, alpha: float = 0.05
) -> Experiment:
    """Stop; all traffic then goes to ``winner`` (default: the recommended variant, else the control)."""
    exp, variants = get_experiment(engine, tenant, experiment_id)
    if exp.status == "stopped":
        raise Conflict("experiment is already stopped")
    names = [v.name for v in variants]
    if winner is None:
        winner = experiment_results(engine, tenant, experiment_id, alpha)["recommended"] or names[0]
    elif winner not in names:
        raise BadRequest(f"unknown variant {winner[:64]!r}; variants: {', '.join(names)}")
    with session_scope(engine) as session:
        row = session.get(Experiment, exp.id)
        assert row is not None
        row.status, row.winner, row.stopped_at = "stopped", winner, utcnow()
        session.add(row)
    exp.status, exp.winner = "stopped", winner
    return exp
