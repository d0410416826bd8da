"""Drift detection figures: false alarms on same-distribution traffic, and time to detect a shift.

Traffic: SciFact claims (``queries.train.jsonl``) embedded with the real MiniLM, then HotpotQA
questions (``dev100.jsonl``). Each query's retrieval top score is its best cosine against SciFact
abstracts (the ones the train claims cite), so both the query-embedding MMD test and the
retrieval-score KS test see real numbers.

Part 1 runs the production path end to end (``Monitor.record_turn`` into SQLite,
``DriftMonitor.check`` after every turn once the windows are full, alerts to a local webhook).
Part 2 repeats the same-distribution phase over several shuffles with the array-level
detectors to estimate the per-check false-alarm rate with more checks.

    nice -n 10 .venv/bin/python bench/drift.py [--shuffles 10] [--check-every 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from ragd.config import EvalSettings, Settings
from ragd.db import build_engine, migrate
from ragd.evals.drift import WindowData, detect
from ragd.evals.drift_monitor import DriftMonitor
from ragd.evals.monitoring import Monitor
from ragd.privacy import disable_telemetry

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load() -> tuple[list[str], list[str], list[str]]:
    claims = [json.loads(line)["text"] for line in (DATA / "scifact/queries.train.jsonl").open()]
    questions = [json.loads(line)["question"] for line in (DATA / "hotpotqa/dev100.jsonl").open()]
    cited = {line.split("\t")[1] for line in (DATA / "scifact/qrels.train.tsv").open() if line[0].isdigit()}
    docs = []
    for line in (DATA / "scifact/corpus.jsonl").open():
        row = json.loads(line)
        if row["_id"] in cited:
            docs.append(f"{row.get('title', '')}. {row['text']}")
    return claims, questions, docs[:800]


def embed(texts: list[str], max_len: int) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    from ragd.llm_serving.model_files import minilm_dir

    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    model.max_seq_length = max_len
    return np.asarray(model.encode(texts, batch_size=64, normalize_embeddings=True), dtype=np.float32)


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def service_pass(
    q_claims: np.ndarray,
    s_claims: np.ndarray,
    q_hot: np.ndarray,
    s_hot: np.ndarray,
    cfg: EvalSettings,
    check_every: int,
) -> dict[str, Any]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg = cfg.model_copy(update={"alert_webhook_url": f"http://127.0.0.1:{server.server_port}/hook"})
    with tempfile.TemporaryDirectory() as tmp:
        engine = build_engine(Settings(env="test", data_dir=Path(tmp)))
        migrate(engine)
        monitor, drift = Monitor(engine, cfg), DriftMonitor(engine, cfg)
        n_ref = cfg.drift_reference_size
        checks = false_alarms = 0
        alarmed_detectors: dict[str, int] = {}
        t_check = []
        for i in range(len(q_claims)):
            monitor.record_turn(
                tenant="t",
                query_embedding=q_claims[i],
                retrieval_scores=[float(s_claims[i])],
                latency_ms=100.0,
            )
            if i + 1 >= n_ref + cfg.drift_window_size and (i + 1 - n_ref) % check_every == 0:
                t0 = time.perf_counter()
                results = drift.check("t")
                t_check.append(time.perf_counter() - t0)
                checks += 1
                fired = [r.detector for r in results if r.alarm]
                false_alarms += bool(fired)
                for d in fired:
                    alarmed_detectors[d] = alarmed_detectors.get(d, 0) + 1
        first_alarm: dict[str, int] = {}
        for j in range(len(q_hot)):
            monitor.record_turn(
                tenant="t", query_embedding=q_hot[j], retrieval_scores=[float(s_hot[j])], latency_ms=100.0
            )
            for r in drift.check("t"):
                if r.alarm and r.detector not in first_alarm:
                    first_alarm[r.detector] = j + 1
            if len(first_alarm) == 2:
                break
        drift.close()
        engine.dispose()
    server.shutdown()
    return {
        "same_distribution_checks": checks,
        "checks_with_any_false_alarm": false_alarms,
        "false_alarms_by_detector": alarmed_detectors,
        "hotpotqa_requests_until_alarm": first_alarm,
        "webhook_events": [(e["status"], e["detector"]) for e in _Hook.received],
        "median_check_seconds": float(np.median(t_check)) if t_check else None,
    }


def shuffled_false_alarms(
    q: np.ndarray,
    s: np.ndarray,
    q_hot: np.ndarray,
    s_hot: np.ndarray,
    cfg: EvalSettings,
    shuffles: int,
    check_every: int,
) -> dict[str, Any]:
    n_ref, n_win = cfg.drift_reference_size, cfg.drift_window_size
    checks = 0
    fa = {"query_embedding": 0, "retrieval_top_score": 0, "any": 0}
    delays: dict[str, list[int]] = {"query_embedding": [], "retrieval_top_score": []}
    for seed in range(shuffles):
        order = np.random.default_rng(seed).permutation(len(q))
        qs, ss = q[order], s[order]
        ref = WindowData(embeddings=qs[:n_ref], top_scores=list(map(float, ss[:n_ref])))
        for end in range(n_ref + n_win, len(qs) + 1, check_every):
            win = WindowData(
                embeddings=qs[end - n_win : end], top_scores=list(map(float, ss[end - n_win : end]))
            )
            res = {
                r.detector: r
                for r in detect(
                    ref, win, alpha=cfg.drift_alpha, permutations=cfg.drift_permutations, seed=seed
                )
            }
            checks += 1
            any_alarm = False
            for d in ("query_embedding", "retrieval_top_score"):
                fa[d] += res[d].alarm
                any_alarm |= res[d].alarm
            fa["any"] += any_alarm
        # Shift: the tail of this shuffle's claims, then HotpotQA questions in a shuffled order.
        hot = np.random.default_rng(100 + seed).permutation(len(q_hot))
        stream_q = np.vstack([qs[-n_win:], q_hot[hot]])
        stream_s = np.concatenate([ss[-n_win:], s_hot[hot]])
        for d in delays:
            delays[d].append(-1)
        for k in range(1, len(hot) + 1):
            end = n_win + k
            win = WindowData(
                embeddings=stream_q[end - n_win : end],
                top_scores=list(map(float, stream_s[end - n_win : end])),
            )
            res = {
                r.detector: r
                for r in detect(
                    ref, win, alpha=cfg.drift_alpha, permutations=cfg.drift_permutations, seed=seed
                )
            }
            for d in delays:
                if delays[d][-1] < 0 and res[d].alarm:
                    delays[d][-1] = k
            if all(v[-1] > 0 for v in delays.values()):
                break
    return {
        "shuffles": shuffles,
        "checks": checks,
        "false_alarm_rate_per_check": {k: v / checks for k, v in fa.items()},
        "requests_until_alarm": {
            d: {
                "median": float(np.median([x for x in v if x > 0] or [-1])),
                "max": max(v),
                "missed": sum(x < 0 for x in v),
            }
            for d, v in delays.items()
        },
    }


def main() -> None:
    disable_telemetry()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shuffles", type=int, default=10)
    parser.add_argument("--check-every", type=int, default=10)
    parser.add_argument("--cache", default="/tmp/ragd-bench-drift.npz", help="Embedding cache file.")
    parser.add_argument("--alpha", type=float, default=None, help="Override evals.drift_alpha.")
    parser.add_argument("--skip-service", action="store_true", help="Only the array-level part.")
    args = parser.parse_args()
    claims, questions, docs = load()
    cache = Path(args.cache)
    if cache.exists():
        data = np.load(cache)
        q_claims, q_hot, d = data["claims"], data["hot"], data["docs"]
    else:
        t0 = time.perf_counter()
        q_claims, q_hot, d = embed(claims, 128), embed(questions, 128), embed(docs, 128)
        print(
            f"embedded {len(claims)} claims, {len(questions)} questions, {len(docs)} abstracts "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        np.savez(cache, claims=q_claims, hot=q_hot, docs=d)
    s_claims, s_hot = (q_claims @ d.T).max(axis=1), (q_hot @ d.T).max(axis=1)
    print(f"retrieval top score: SciFact mean {s_claims.mean():.3f}, HotpotQA mean {s_hot.mean():.3f}")
    cfg = EvalSettings() if args.alpha is None else EvalSettings(drift_alpha=args.alpha)
    print(
        f"settings: reference {cfg.drift_reference_size}, window {cfg.drift_window_size}, "
        f"alpha {cfg.drift_alpha}, permutations {cfg.drift_permutations}"
    )
    rng = np.random.default_rng(0)
    order = rng.permutation(len(claims))
    if not args.skip_service:
        service = service_pass(q_claims[order], s_claims[order], q_hot, s_hot, cfg, args.check_every)
        print("production path (SQLite, Monitor + DriftMonitor, local webhook):")
        print(json.dumps(service, indent=2))
    shuffled = shuffled_false_alarms(q_claims, s_claims, q_hot, s_hot, cfg, args.shuffles, args.check_every)
    print("array-level detectors over shuffles:")
    print(json.dumps(shuffled, indent=2))


if __name__ == "__main__":
    main()
