"""The harness's own checks can fail: a leak, a lost request and a bad stream are recognised."""

from __future__ import annotations

from bench.reliability.corpus import load_corpora
from bench.reliability.isolation import IsolationChecker
from bench.reliability.stats import percentile, slope_per_min, stage_breakdown
from bench.reliability.traffic import Outcome, _final_event


def test_corpora_are_disjoint_and_marked() -> None:
    corpora = load_corpora(per_tenant=20)
    alpha, bravo = corpora["alpha"], corpora["bravo"]
    assert len(alpha.docs) == len(bravo.docs) == 20
    assert not {d.body for d in alpha.docs} & {d.body for d in bravo.docs}
    assert all(d.marker in d.body for d in alpha.docs)


def test_isolation_checker_finds_each_kind_of_leak() -> None:
    corpora = load_corpora(per_tenant=10)
    checker = IsolationChecker(corpora)
    bravo_doc = corpora["bravo"].docs[0]
    checker.learn("bravo", "session", "sess-0123456789abcdef")
    assert checker.check("alpha", '{"hits": []}', "search") == []
    assert checker.check("alpha", f"... {bravo_doc.marker} ...", "search")[0].kind == "marker"
    assert checker.check("alpha", f"x {bravo_doc.signature} y", "chat")[0].kind == "text"
    assert checker.check("alpha", '{"session_id": "sess-0123456789abcdef"}', "chat")[0].kind == "session"
    assert checker.check("bravo", f"{bravo_doc.marker} sess-0123456789abcdef", "search") == []
    assert len(checker.leaks) == 3


def test_stream_without_final_event_is_not_an_answer() -> None:
    assert _final_event([("message", '{"token": "Hel"}'), ("message", '{"token": "lo"}')]) is None
    assert _final_event([("token", '{"t": "a"}'), ("final", '{"answer": "a", "citations": []}')]) is not None
    name, _ = _final_event([("error", '{"error": {"code": "x", "request_id": "r1"}}')]) or ("", None)
    assert name == "error"


def test_figures() -> None:
    assert percentile([], 95) is None
    assert percentile(list(range(1, 101)), 95) == 95
    assert slope_per_min([(0, 1.0), (60, 2.0), (120, 3.0)]) == 1.0
    assert slope_per_min([(0, 5.0), (60, 5.0), (120, 5.0)]) == 0.0


def test_stage_breakdown_names_what_made_slow_turns_slow() -> None:
    stages = {"retrieve": 500.0, "answer": 1400.0}
    fast = [Outcome("chat", "a", 0, 2.0, 200, "ok", stages_ms=stages) for _ in range(9)]
    slow = Outcome("chat", "a", 0, 12.0, 200, "ok", stages_ms={"retrieve": 600, "answer": 9400})
    failed = Outcome("chat", "a", 0, 30.0, 500, "lost", stages_ms={"answer": 30_000})
    search = Outcome("search", "a", 0, 0.05, 200, "ok")
    rows = stage_breakdown([*fast, slow, failed, search])["chat"]
    assert list(rows) == ["retrieve", "answer", "unaccounted"]
    assert rows["answer"] == {"p50_ms": 1400, "p95_ms": 9400, "tail_mean_ms": 9400}
    assert rows["retrieve"]["tail_mean_ms"] == 600
    assert rows["unaccounted"]["tail_mean_ms"] == 2000  # 12 s less the 10 s the stages name
