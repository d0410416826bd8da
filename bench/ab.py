"""A/B experiment figures: power when variant B is truly better, false positives of A/A tests.

Simulated users each have their own thumbs-up probability (Beta-distributed around the
variant's true rate) and rate 1-5 answers. Part 1 runs two experiments through the production
path (SQLite; sticky ``assign``, ``Monitor.record_turn``, ``record_feedback``,
``experiment_results``, ``stop_experiment``). Part 2 repeats the user-level test many times on
arrays to estimate the A/A false-positive rate and the power for several effect sizes.

    nice -n 10 .venv/bin/python bench/ab.py [--users 400] [--repeats 500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ragd.config import Settings
from ragd.db import build_engine, migrate
from ragd.db.models import Role
from ragd.evals.experiments import (
    ExperimentSpec,
    VariantSpec,
    assign,
    compare_user_means,
    create_experiment,
    experiment_results,
    stop_experiment,
)
from ragd.evals.monitoring import Monitor
from ragd.security.principal import Principal

CONCENTRATION = 8.0  # Beta(a, b) with a + b = 8: users differ a lot in how often they like answers


def simulate(engine, monitor: Monitor, name: str, rates: dict[str, float], users: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    spec = ExperimentSpec(name=name, variants=[VariantSpec(name=v, config={"prompt": v}) for v in rates])
    exp = create_experiment(engine, "bench", spec)
    for u in range(users):
        subject = f"user-{seed}-{u}"
        a = assign(engine, "bench", exp.id, subject)
        assert assign(engine, "bench", exp.id, subject).variant == a.variant  # sticky
        p = rng.beta(rates[a.variant] * CONCENTRATION, (1 - rates[a.variant]) * CONCENTRATION)
        who = Principal(id=subject, tenant="bench", role=Role.reader)
        for _ in range(int(rng.integers(1, 6))):
            message = f"{seed:04d}{u:06d}{rng.integers(1 << 40):012x}"[:32]
            monitor.record_turn(
                tenant="bench",
                subject=subject,
                message_id=message,
                experiment_id=exp.id,
                variant=a.variant,
                latency_ms=float(rng.lognormal(6, 0.3)),
            )
            monitor.record_feedback(who, message, 1 if rng.random() < p else -1)
    res = experiment_results(engine, "bench", exp.id)
    stopped = stop_experiment(engine, "bench", exp.id)
    after = {assign(engine, "bench", exp.id, f"new-user-{i}").variant for i in range(50)}
    b = res["variants"][1]
    return {
        "experiment": name,
        "true_rates": rates,
        "users_per_variant": [v.users for v in res["variants"]],
        "observed_positive": [round(v.feedback_positive or 0, 4) for v in res["variants"]],
        "lift": round(b.lift or 0, 4),
        "ci": [round(b.ci_low or 0, 4), round(b.ci_high or 0, 4)],
        "p_value": round(b.p_value or 1, 5),
        "significant": b.significant,
        "winner_after_stop": stopped.winner,
        "variants_served_after_stop": sorted(after),
    }


def repeated(users: int, repeats: int, base: float, lift: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(repeats):
        groups = []
        n_a = int(rng.binomial(users, 0.5))
        for rate, n in ((base, n_a), (base + lift, users - n_a)):
            p = rng.beta(rate * CONCENTRATION, (1 - rate) * CONCENTRATION, size=n)
            turns = rng.integers(1, 6, size=n)
            groups.append(rng.binomial(turns, p) / turns)
        _, _, _, pv = compare_user_means(list(groups[0]), list(groups[1]))
        hits += pv < 0.05
    return hits / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--aa-runs", type=int, default=10, help="A/A experiments through the service.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = build_engine(Settings(env="test", data_dir=Path(tmp)))
        migrate(engine)
        monitor = Monitor(engine, Settings(env="test", data_dir=Path(tmp)).evals)
        t0 = time.perf_counter()
        print(simulate(engine, monitor, "b-better", {"A": 0.60, "B": 0.70}, args.users, 1))
        aa = [
            simulate(engine, monitor, f"a-a-{k}", {"A": 0.60, "A2": 0.60}, args.users, 100 + k)
            for k in range(args.aa_runs)
        ]
        print(aa[0])
        print(
            f"A/A through the service: {sum(r['significant'] for r in aa)} of {len(aa)} significant at 0.05 "
            f"(p-values {sorted(r['p_value'] for r in aa)})"
        )
        print(
            f"production path: {time.perf_counter() - t0:.1f} s for {1 + args.aa_runs} x {args.users} users"
        )
        engine.dispose()
    print(
        f"user-level Welch test, {args.users} users, alpha 0.05, {args.repeats} simulated experiments each:"
    )
    print(f"  A/A false-positive rate: {repeated(args.users, args.repeats, 0.60, 0.0, 3):.3f}")
    for lift in (0.03, 0.05, 0.10):
        print(f"  power at +{lift:.2f}: {repeated(args.users, args.repeats, 0.60, lift, 4):.3f}")


if __name__ == "__main__":
    main()
