"""EncoderGate: interactive encoder runs go before bulk ones, and bulk work is never starved."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

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


def test_a_waiting_query_goes_before_a_bulk_batch_that_waited_longer() -> None:
    callers = Callers(EncoderGate(patience_s=30))
    callers.start("ingest-1", bulk=True)
    _until(lambda: callers.order == ["ingest-1"])
    callers.start("ingest-2", bulk=True)
    _until(lambda: callers.gate.waiting() == (0, 1))
    callers.start("query", bulk=False)
    _until(lambda: callers.gate.waiting() == (1, 1))
    callers.release["ingest-1"].set()
    _until(lambda: len(callers.order) == 2)
    assert callers.order == ["ingest-1", "query"]  # one at a time: ingest-2 still waits
    callers.finish()
    assert callers.order == ["ingest-1", "query", "ingest-2"]


def test_bulk_work_past_its_patience_goes_before_new_queries() -> None:
    callers = Callers(EncoderGate(patience_s=0.05))
    callers.start("query-1", bulk=False)
    _until(lambda: callers.order == ["query-1"])
    callers.start("ingest", bulk=True)
    _until(lambda: callers.gate.waiting() == (0, 1))
    callers.start("query-2", bulk=False)
    _until(lambda: callers.gate.waiting() == (1, 1))
    time.sleep(0.2)  # the bulk caller's patience runs out while query-1 still holds the gate
    callers.release["query-1"].set()
    _until(lambda: len(callers.order) == 2)
    assert callers.order == ["query-1", "ingest"]
    callers.finish()
    assert callers.order == ["query-1", "ingest", "query-2"]


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
