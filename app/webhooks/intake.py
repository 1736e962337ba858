"""Group commit for webhook deliveries.

Every delivery must be committed before GitHub gets its 2xx, and a commit is the costly part of a
delivery: a session, a pooled connection, BEGIN, COMMIT. Request handlers therefore hand their
delivery to one writer thread per process, which records whatever has arrived meanwhile in a
single transaction and answers every request of the batch once it has committed. An idle server
commits each delivery alone, at once (no waiting to fill a batch); a busy one commits dozens at a
time, so throughput grows with load instead of queueing behind per-request commits.

A delivery refused with a 4xx fails alone: the receiver raises domain errors only before it
writes anything. An unexpected error (a constraint, a lost connection) rolls the batch back and
each of its deliveries is retried in a transaction of its own, so one bad delivery cannot fail
its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from dataclasses import dataclass

from app.db import get_session_factory
from app.errors import ApiError
from app.webhooks import service
from app.webhooks.schemas import DeliveryResult

log = logging.getLogger(__name__)

MAX_BATCH = 100

Outcome = DeliveryResult | BaseException


@dataclass(frozen=True)
class _Pending:
    incoming: service.IncomingDelivery
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[DeliveryResult]


class DeliveryWriter:
    def __init__(self, max_batch: int = MAX_BATCH) -> None:
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    async def submit(self, incoming: service.IncomingDelivery) -> DeliveryResult:
        """Records the delivery and returns once its transaction has committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[DeliveryResult] = loop.create_future()
        self._ensure_thread()
        self._queue.put(_Pending(incoming, loop, future))
        return await future

    def stop(self, timeout: float = 5.0) -> None:
        """Ends the thread after the deliveries already submitted."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout)
        self._thread = None

    def _ensure_thread(self) -> None:
        # Forked worker processes inherit the object but not the thread.
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._run, name="webhook-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            outcomes = record_batch([pending.incoming for pending in batch])
            for pending, outcome in zip(batch, outcomes, strict=True):
                try:
                    pending.loop.call_soon_threadsafe(_settle, pending.future, outcome)
                except RuntimeError:  # that request's event loop has closed meanwhile
                    log.debug("webhook answer dropped: its event loop is closed")
            if stopping:
                return


def record_batch(deliveries: list[service.IncomingDelivery]) -> list[Outcome]:
    """Records the deliveries in one transaction and returns each one's result or error, in
    order; after an unexpected error, records each delivery in a transaction of its own."""
    try:
        return _record_together(deliveries)
    except Exception as exc:
        if len(deliveries) == 1:
            return [exc]
        log.warning("webhook batch of %d failed (%s); recording one by one", len(deliveries), exc)
    outcomes: list[Outcome] = []
    for incoming in deliveries:
        try:
            outcomes.extend(_record_together([incoming]))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def _record_together(deliveries: list[service.IncomingDelivery]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with get_session_factory()() as session:
        try:
            for incoming in deliveries:
                try:
                    outcomes.append(service.receive(session, incoming))
                except ApiError as refused:  # raised before the delivery wrote anything
                    outcomes.append(refused)
            session.commit()
        except BaseException:
            session.rollback()
            raise
    return outcomes


def _settle(future: asyncio.Future[DeliveryResult], outcome: Outcome) -> None:
    if future.done():  # the client went away and the request was cancelled
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


_writer: DeliveryWriter | None = None


def get_writer() -> DeliveryWriter:
    global _writer
    if _writer is None:
        _writer = DeliveryWriter()
    return _writer


def reset_writer() -> None:
    """Stops this process's writer thread (tests and shutdown)."""
    global _writer
    if _writer is not None:
        _writer.stop()
    _writer = None
