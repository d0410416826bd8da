"""Drift monitoring over stored turns: windows from the store, results kept, exported and alerted.

The reference window is the first ``drift_reference_size`` turns of a tenant since its baseline
(the tenant's first turn, or the time an operator last reset it with :meth:`reset_baseline`);
the rolling window is the newest ``drift_window_size`` turns after the reference. Each check
stores one :class:`DriftResult` per detector, sets the ``ragd_drift_*`` gauges and posts to the
alert webhook when a detector's alarm starts or ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from ragd.config import EvalSettings
from ragd.db.engine import session_scope
from ragd.db.models import DriftBaseline, DriftResult, Feedback, MonitorTurn, utcnow
from ragd.evals.alerts import WebhookAlerter
from ragd.evals.drift import DetectorResult, WindowData, detect
from ragd.evals.monitoring import decode_embedding


def _window(turns: Sequence[MonitorTurn], ratings: dict[str, int]) -> WindowData:
    emb = [decode_embedding(t.query_embedding) for t in turns if t.query_embedding]
    dims = {e.shape[0] for e in emb}
    matrix = np.vstack(emb) if emb and len(dims) == 1 else np.zeros((0, 0), dtype=np.float32)
    return WindowData(
        embeddings=matrix,
        top_scores=[t.top_score for t in turns if t.top_score is not None],
        grounding=[t.grounding_score for t in turns if t.grounding_score is not None],
        abstained=[t.abstained for t in turns if not t.blocked],
        blocked=[t.blocked for t in turns],
        feedback=[ratings[t.message_id] for t in turns if t.message_id and t.message_id in ratings],
    )


class DriftMonitor:
    """Runs the drift detectors for a tenant and keeps, exports and alerts on their results."""

    def __init__(
        self, engine: Engine, settings: EvalSettings, registry: CollectorRegistry | None = None
    ) -> None:
        self.engine = engine
        self.settings = settings
        registry = registry or CollectorRegistry()
        labels = ["tenant", "detector"]
        self.p_value = Gauge(
            "ragd_drift_p_value", "p-value of the latest drift test.", labels, registry=registry
        )
        self.statistic = Gauge(
            "ragd_drift_statistic", "Statistic of the latest drift test.", labels, registry=registry
        )
        self.alarm = Gauge("ragd_drift_alarm", "1 while a drift detector alarms.", labels, registry=registry)
        self.checks = Counter("ragd_drift_checks", "Drift checks run.", ["tenant"], registry=registry)
        self.alerter = (
            WebhookAlerter(settings.alert_webhook_url, timeout_s=settings.alert_timeout_s, registry=registry)
            if settings.alert_webhook_url
            else None
        )

    def close(self) -> None:
        """Release the webhook client."""
        if self.alerter is not None:
            self.alerter.close()

    def reset_baseline(self, tenant: str, set_by: str = "") -> datetime:
        """Start a new reference window at the next turn (after a deliberate change)."""
        now = utcnow()
        with session_scope(self.engine) as session:
            row = session.get(DriftBaseline, tenant) or DriftBaseline(tenant=tenant)
            row.since, row.set_by = now, set_by[:128]
            session.add(row)
        return now

    def _windows(self, session: Session, tenant: str) -> tuple[list[MonitorTurn], list[MonitorTurn]]:
        baseline = session.get(DriftBaseline, tenant)
        ref_q = select(MonitorTurn).where(MonitorTurn.tenant == tenant)
        if baseline is not None:
            ref_q = ref_q.where(col(MonitorTurn.ts) >= baseline.since)
        ref_q = ref_q.order_by(col(MonitorTurn.ts), col(MonitorTurn.id)).limit(
            self.settings.drift_reference_size
        )
        reference = list(session.exec(ref_q).all())
        if len(reference) < self.settings.drift_reference_size:
            return reference, []  # the reference window is still filling
        last = reference[-1]
        win_q = (
            select(MonitorTurn)
            .where(MonitorTurn.tenant == tenant, col(MonitorTurn.ts) >= last.ts)
            .order_by(col(MonitorTurn.ts).desc(), col(MonitorTurn.id).desc())
            .limit(self.settings.drift_window_size + len(reference))
        )
        ref_ids = {t.id for t in reference}
        window = [t for t in session.exec(win_q).all() if t.id not in ref_ids][
            : self.settings.drift_window_size
        ]
        return reference, window

    @staticmethod
    def _ratings(session: Session, turns: Sequence[MonitorTurn]) -> dict[str, int]:
        ids = [t.message_id for t in turns if t.message_id]
        ratings: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            rows = session.exec(
                select(Feedback.message_id, func.min(Feedback.rating))
                .where(col(Feedback.message_id).in_(ids[start : start + 500]))
                .group_by(col(Feedback.message_id))
            ).all()
            ratings.update({m: int(r) for m, r in rows})
        return ratings

    def check(self, tenant: str, *, only_if_new: bool = False) -> list[DriftResult]:
        """Test the current window against the reference; store, export and alert.

        ``only_if_new`` (the periodic checker) skips tenants with no turn since their last check,
        so an idle tenant does not fill ``drift_results`` with copies of one result.
        """
        with Session(self.engine) as session:
            if only_if_new and not self._has_new_turns(session, tenant):
                return []
            reference, window = self._windows(session, tenant)
            ratings = self._ratings(session, [*reference, *window])
            previous = self._latest(session, tenant)
        if not window:
            return []
        results = detect(
            _window(reference, ratings),
            _window(window, ratings),
            alpha=self.settings.drift_alpha,
            permutations=self.settings.drift_permutations,
        )
        now = utcnow()
        rows = [
            DriftResult(
                tenant=tenant,
                ts=now,
                detector=r.detector,
                statistic=r.statistic,
                p_value=r.p_value,
                alarm=r.alarm,
                reference_n=r.reference_n,
                window_n=r.window_n,
                detail=r.detail,
            )
            for r in results
        ]
        with session_scope(self.engine) as session:
            session.add_all(rows)
        self.checks.labels(tenant).inc()
        for r in results:
            self._export(tenant, r)
            was = previous.get(r.detector)
            if r.p_value is not None and was is not None and was.alarm != r.alarm:
                self._alert(tenant, r, now)
            elif r.alarm and was is None:
                self._alert(tenant, r, now)
        return rows

    def _export(self, tenant: str, r: DetectorResult) -> None:
        if r.p_value is None:
            return
        self.p_value.labels(tenant, r.detector).set(r.p_value)
        self.statistic.labels(tenant, r.detector).set(r.statistic or 0.0)
        self.alarm.labels(tenant, r.detector).set(1.0 if r.alarm else 0.0)

    def _alert(self, tenant: str, r: DetectorResult, ts: datetime) -> None:
        if self.alerter is None:
            return
        self.alerter.send(
            {
                "status": "firing" if r.alarm else "resolved",
                "tenant": tenant,
                "detector": r.detector,
                "statistic": r.statistic,
                "p_value": r.p_value,
                "alpha": self.settings.drift_alpha,
                "reference_n": r.reference_n,
                "window_n": r.window_n,
                "ts": ts.astimezone(UTC).isoformat(),
            }
        )

    @staticmethod
    def _has_new_turns(session: Session, tenant: str) -> bool:
        last_check = session.exec(select(func.max(DriftResult.ts)).where(DriftResult.tenant == tenant)).one()
        newest = session.exec(select(func.max(MonitorTurn.ts)).where(MonitorTurn.tenant == tenant)).one()
        if newest is None:
            return False
        if last_check is None:
            return True
        aware = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in (newest, last_check)]
        return aware[0] > aware[1]

    @staticmethod
    def _latest(session: Session, tenant: str) -> dict[str, DriftResult]:
        latest: dict[str, DriftResult] = {}
        rows = session.exec(
            select(DriftResult)
            .where(DriftResult.tenant == tenant, col(DriftResult.p_value).is_not(None))
            .order_by(col(DriftResult.id).desc())
            .limit(200)
        ).all()
        for row in rows:
            latest.setdefault(row.detector, row)
        return latest

    def status(self, tenant: str) -> dict[str, Any]:
        """The latest result of every detector and the reference window's start."""
        with Session(self.engine) as session:
            latest = self._latest(session, tenant)
            baseline = session.get(DriftBaseline, tenant)
            turns = session.exec(select(func.count()).where(MonitorTurn.tenant == tenant)).one()
        return {
            "tenant": tenant,
            "turns": int(turns),
            "baseline_since": baseline.since if baseline else None,
            "alpha": self.settings.drift_alpha,
            "reference_size": self.settings.drift_reference_size,
            "window_size": self.settings.drift_window_size,
            "alarm": any(r.alarm for r in latest.values()),
            "detectors": sorted(latest.values(), key=lambda r: r.detector),
        }

    def tenants(self) -> list[str]:
        """Tenants with recorded turns (the background checker visits each)."""
        with Session(self.engine) as session:
            return [t for t in session.exec(select(MonitorTurn.tenant).distinct()).all()]
