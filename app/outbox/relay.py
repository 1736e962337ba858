"""A per-process background thread that publishes outbox rows right after their commit.

Publishing off the request thread keeps webhook latency independent of the broker; when the
broker is down the thread backs off and the periodic sweep (`relay_pending`) catches up later.
Messages are published at once; marking them dispatched waits up to `MARK_DELAY_SECONDS`, so that
under load one UPDATE marks dozens. A message sent but not yet marked when the process dies is
sent again by the sweep, which tasks tolerate.

The relay's own sessions only mark rows dispatched: they are plain sessions on the engine, with
none of the unit of work's commit effects (`app.db`), which would only hand messages back here.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.config import get_settings
from app.engine import get_engine
from app.outbox.service import CommittedMessage, record_sent, relay_pending, send

log = logging.getLogger(__name__)

MARK_DELAY_SECONDS = 0.2


class OutboxRelay:
    def __init__(self, publisher: Any | None = None) -> None:
        self._publisher = publisher
        self._queue: queue.Queue[list[CommittedMessage]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._broker_down_until = 0.0
        self._stopped = threading.Event()
        self._unmarked: list[int] = []
        self._mark_due = 0.0

    @property
    def publisher(self) -> Any:
        if self._publisher is None:
            from app.broker import get_celery

            self._publisher = get_celery()
        return self._publisher

    def notify(self, messages: list[CommittedMessage]) -> None:
        if self._ensure_thread():
            self._queue.put(list(messages))

    def stop(self, timeout: float = 5.0) -> None:
        """Ends the thread; rows it did not publish are left to `relay_pending`."""
        self._stopped.set()
        self._queue.put([])
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _ensure_thread(self) -> bool:
        if self._stopped.is_set():
            return False
        # Forked worker processes inherit the object but not the thread.
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return True
            self._pid = os.getpid()
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
            self._thread.start()
            return True

    def _run(self) -> None:
        settings = get_settings()
        interval = settings.outbox_relay_interval_seconds
        grace = timedelta(seconds=settings.outbox_relay_grace_seconds)
        next_sweep = time.monotonic() + interval
        while True:
            wake_at = min(next_sweep, self._mark_due) if self._unmarked else next_sweep
            messages: list[CommittedMessage] = []
            try:
                messages.extend(self._queue.get(timeout=max(0.0, wake_at - time.monotonic())))
                while True:
                    messages.extend(self._queue.get_nowait())
            except queue.Empty:
                pass
            try:
                if messages and time.monotonic() >= self._broker_down_until:
                    self._dispatch(messages)
                sweeping = time.monotonic() >= next_sweep
                if self._unmarked and (
                    sweeping or self._stopped.is_set() or time.monotonic() >= self._mark_due
                ):
                    self._mark()
                if self._stopped.is_set():
                    return
                if sweeping:
                    next_sweep = time.monotonic() + interval
                    self._sweep(grace)
            except Exception:
                log.exception("outbox relay pass failed")
                if self._stopped.is_set():
                    return

    def _dispatch(self, messages: list[CommittedMessage]) -> None:
        # Published as committed, without reading the rows back.
        sent, failure = send(messages, self.publisher)
        if not self._unmarked:
            self._mark_due = time.monotonic() + MARK_DELAY_SECONDS
        self._unmarked.extend(sent)
        if failure is not None:
            self._broker_down_until = (
                time.monotonic() + get_settings().outbox_relay_interval_seconds
            )
            with Session(get_engine()) as session:
                record_sent(session, [], failure)
                session.commit()

    def _mark(self) -> None:
        unmarked, self._unmarked = self._unmarked, []
        with Session(get_engine()) as session:
            record_sent(session, unmarked, None)
            session.commit()

    def _sweep(self, grace: timedelta) -> None:
        with Session(get_engine()) as session:
            relay_pending(session, self.publisher, older_than=grace)


_relay: OutboxRelay | None = None


def get_relay() -> OutboxRelay:
    global _relay
    if _relay is None:
        _relay = OutboxRelay()
    return _relay


def reset_relay() -> None:
    """Stops this process's relay thread; the next `get_relay()` starts afresh (tests and
    settings changes)."""
    global _relay
    if _relay is not None:
        _relay.stop()
    _relay = None
