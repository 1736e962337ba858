"""The live build log: text is buffered and committed in small batches by a background thread,
so readers see it within a fraction of a second and a crash loses at most the last batch.

A log has a size cap. Output is stored live until the cap's head room is used up; after that
the build keeps running and only the last `tail_bytes` of its output are kept in memory. When the
outcome is recorded, the log gets one line saying how much was dropped, then that tail: the last
lines are the ones that explain a failure.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable

from app.builds import logs
from app.db import get_session_factory
from workers.pipeline.steplog import StepLines

log = logging.getLogger(__name__)
REDACTED = "********"
CAP_SETTING = "CARTRIDGE_BUILD_LOG_MAX_BYTES"


def human_size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


class _Tail:
    """The last `limit` bytes of the output written past the cap, and how much fell out."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pieces: deque[bytes] = deque()
        self.size = 0
        self.dropped = 0
        self.trimmed = False  # whether the first piece kept starts mid-line

    def add(self, data: bytes) -> None:
        self.pieces.append(data)
        self.size += len(data)
        while self.size > self.limit:
            excess = self.size - self.limit
            first = self.pieces[0]
            if len(first) <= excess:
                self.pieces.popleft()
                cut = len(first)
            else:
                self.pieces[0] = first[excess:]
                cut = excess
            self.size -= cut
            self.dropped += cut
            self.trimmed = True

    def take(self) -> tuple[str, int]:
        """The kept text, starting at a line boundary, and the bytes dropped in all."""
        data = b"".join(self.pieces)
        dropped = self.dropped
        if self.trimmed and b"\n" in data[:-1]:
            start = data.index(b"\n") + 1
            dropped += start
            data = data[start:]
        text = data.decode("utf-8", errors="ignore")
        dropped += len(data) - len(text.encode())
        self.pieces.clear()
        self.size = self.dropped = 0
        self.trimmed = False
        return text, dropped


class BuildLog(StepLines):
    def __init__(
        self,
        build_id: int,
        attempt: int,
        *,
        flush_seconds: float,
        flush_bytes: int,
        secrets: Iterable[str] = (),
        max_bytes: int = 16 * 1024 * 1024,
        tail_bytes: int = 1024 * 1024,
    ) -> None:
        self.build_id = build_id
        self.attempt = attempt
        self._flush_seconds = flush_seconds
        self._flush_bytes = flush_bytes
        self._secrets = [secret for secret in secrets if secret]
        self._max_bytes = max_bytes
        tail_bytes = min(tail_bytes, max_bytes // 2)
        # What may be stored live; the rest of the cap is for the tail and the line about it.
        self._head_room = max(0, max_bytes - tail_bytes)
        self._stored_bytes = 0
        self._tail = _Tail(tail_bytes)
        self._capped = False
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._lock = threading.Lock()
        # Serialises writers of the database: the flusher thread and close().
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"build-log-{build_id}", daemon=True)
        self._thread.start()

    @property
    def capped(self) -> bool:
        return self._capped

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def write(self, text: str) -> None:
        if not text:
            return
        data = self.redact(text).encode()
        with self._lock:
            if not self._capped:
                room = self._head_room - self._stored_bytes
                if len(data) <= room:
                    self._keep(data)
                else:
                    # Stored up to the last whole line that fits; the rest goes to the tail.
                    cut = data.rfind(b"\n", 0, room) + 1
                    self._keep(data[:cut])
                    self._capped = True
                    data = data[cut:]
            if self._capped:
                self._tail.add(data)
            full = self._pending_bytes >= self._flush_bytes
        if full:
            self._wake.set()

    def _keep(self, data: bytes) -> None:
        if data:
            self._pending.append(data.decode("utf-8", errors="replace"))
            self._pending_bytes += len(data)
            self._stored_bytes += len(data)

    def _release_tail(self) -> None:
        """Moves the kept tail, after one line about what was dropped, into the pending text."""
        with self._lock:
            if not self._capped:
                return
            tail, dropped = self._tail.take()
            if dropped:
                self._pending.append(
                    f"==> log cap reached: {human_size(dropped)} of output dropped "
                    f"({dropped} bytes; the cap is {human_size(self._max_bytes)}, "
                    f"{CAP_SETTING}); the last {human_size(len(tail.encode()))} follow\n"
                )
            if tail:
                self._pending.append(tail)

    def flush(self, *, final: bool = False) -> bool:
        """Commits what is buffered; `final` (the outcome is being recorded) adds the kept tail of
        a capped log. Returns False (keeping the text) if the database refused."""
        if final:
            self._release_tail()
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
        self.flush(final=True)

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            self.flush()
