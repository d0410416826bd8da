"""EncoderGate: interactive encoder runs go before bulk ones, and bulk work is never starved."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from ragd.retrieval.embedder import EncoderGate, bulk_embedding, is_bulk_embedding


def _until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the gate never reached the expected state"
        time.sleep(0.005)


class Callers:
    """Threads that each hold the gate until the test releases them, recording who got it."""

    def __init__(self, gate: EncoderGate) -> None:
        self.gate = gate
        self.order: list[str] = []
        self.release: dict[str, threading.Event] = {}
        self.threads: list[threading.Thread] = []

    def start(self, name: str, *, bulk: bool) -> None:
        self.release[name] = threading.Event()

        def body() -> None:
            with self.gate.hold(bulk=bulk):
                self.order.append(name)
                self.release[name].wait(10)

        t = threading.Thread(target=body, daemon=True)
        t.start()
        self.threads.append(t)

    def finish(self) -> None:
        for event in self.release.values():
            event.set()
        for t in self.threads:
            t.join(10)


@pytest.mark.parametrize(
    ("holder_bulk", "patience_s", "then_wait_s", "order"),
    [
        # A query that arrives after a bulk caller still goes first, one caller at a time.
        (True, 30.0, 0.0, ["holder", "query", "ingest"]),
        # A bulk caller whose patience ran out goes before a waiting query: never starved.
        (False, 0.05, 0.2, ["holder", "ingest", "query"]),
    ],
    ids=["query-first", "bulk-not-starved"],
)
def test_gate_order(holder_bulk: bool, patience_s: float, then_wait_s: float, order: list[str]) -> None:
    callers = Callers(EncoderGate(patience_s=patience_s))
    callers.start("holder", bulk=holder_bulk)
    _until(lambda: callers.order == ["holder"])
    callers.start("ingest", bulk=True)
    _until(lambda: callers.gate.waiting() == (0, 1))
    callers.start("query", bulk=False)
    _until(lambda: callers.gate.waiting() == (1, 1))
    time.sleep(then_wait_s)
    callers.release["holder"].set()
    _until(lambda: len(callers.order) == 2)
    assert callers.order == order[:2]  # the third still waits: one pass at a time
    callers.finish()
    assert callers.order == order


def test_bulk_marking_is_scoped_to_the_block_and_the_thread() -> None:
    seen: list[bool] = []
    assert not is_bulk_embedding()
    with bulk_embedding():
        assert is_bulk_embedding()
        t = threading.Thread(target=lambda: seen.append(is_bulk_embedding()))
        t.start()
        t.join()
    assert not is_bulk_embedding()
    assert seen == [False]  # a request thread never inherits an ingestion worker's marking
