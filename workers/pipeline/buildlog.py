"""The live build log: text is buffered and committed in small batches by a background thread,
so readers see it within a fraction of a second and a crash loses at most the last batch."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from app.builds import logs
from app.db import get_session_factory

log = logging.getLogger(__name__)
REDACTED = "********"


class BuildLog:
    def __init__(
        self,
        build_id: int,
        attempt: int,
        *,
        flush_seconds: float,
        flush_bytes: int,
        secrets: Iterable[str] = (),
    ) -> None:
        self.build_id = build_id
        self.attempt = attempt
        self._flush_seconds = flush_seconds
        self._flush_bytes = flush_bytes
        self._secrets = [secret for secret in secrets if secret]
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._lock = threading.Lock()
        # Serialises writers of the database: the flusher thread and close().
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"build-log-{build_id}", daemon=True)
        self._thread.start()

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def write(self, text: str) -> None:
        if not text:
            return
        text = self.redact(text)
        with self._lock:
            self._pending.append(text)
            self._pending_bytes += len(text)
            full = self._pending_bytes >= self._flush_bytes
        if full:
            self._wake.set()

    def line(self, text: str) -> None:
        self.write(text.rstrip("\n") + "\n")

    @contextmanager
    def step(self, name: str, detail: str = "") -> Iterator[None]:
        """Frames a pipeline step with Cartridge's own lines: its start and its duration."""
        self.line(f"==> {name}: {detail}" if detail else f"==> {name}")
        started = time.monotonic()
        try:
            yield
        finally:
            self.line(f"==> {name} {time.monotonic() - started:.2f}s")

    def flush(self) -> bool:
        """Commits what is buffered. Returns False (keeping the text) if the database refused."""
        with self._write_lock:
            with self._lock:
                text = "".join(self._pending)
                self._pending.clear()
                self._pending_bytes = 0
            if not text:
                return True
            try:
                with get_session_factory()() as session:
                    logs.append(session, self.build_id, self.attempt, text)
                    session.commit()
            except Exception:
                log.exception("build %s: could not write the log; retrying", self.build_id)
                with self._lock:
                    self._pending.insert(0, text)
                    self._pending_bytes += len(text)
                return False
            return True

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            self.flush()
