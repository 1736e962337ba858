"""A per-process background thread that publishes outbox rows right after their commit.

Publishing off the request thread keeps webhook latency independent of the broker; when the
broker is down the thread backs off and the periodic sweep (`relay_pending`) catches up later.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from datetime import timedelta
from typing import Any

from app.config import get_settings
from app.db import get_session_factory
from app.outbox.service import pending_messages, publish, relay_pending

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, publisher: Any | None = None) -> None:
        self._publisher = publisher
        self._queue: queue.Queue[list[int]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._broker_down_until = 0.0
        self._stopped = threading.Event()

    @property
    def publisher(self) -> Any:
        if self._publisher is None:
            from app.broker import get_celery

            self._publisher = get_celery()
        return self._publisher

    def notify(self, ids: list[int]) -> None:
        if self._ensure_thread():
            self._queue.put(list(ids))

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
        while not self._stopped.is_set():
            timeout = max(0.0, next_sweep - time.monotonic())
            ids: list[int] = []
            try:
                ids.extend(self._queue.get(timeout=timeout))
                while True:
                    ids.extend(self._queue.get_nowait())
            except queue.Empty:
                pass
            if self._stopped.is_set():
                return
            try:
                if ids and time.monotonic() >= self._broker_down_until:
                    self._dispatch(ids)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + interval
                    self._sweep(grace)
            except Exception:
                log.exception("outbox relay pass failed")

    def _dispatch(self, ids: list[int]) -> None:
        with get_session_factory()() as session:
            messages = pending_messages(session, ids=ids)
            sent = publish(session, messages, self.publisher)
            session.commit()
        if sent < len(messages):
            self._broker_down_until = (
                time.monotonic() + get_settings().outbox_relay_interval_seconds
            )

    def _sweep(self, grace: timedelta) -> None:
        with get_session_factory()() as session:
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
