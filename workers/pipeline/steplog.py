"""What the pipeline steps write their output to: a build's live log on a build host
(`BuildLog`), or the terminal for `cartridge build` (`ConsoleLog`)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, TextIO


class StepLog(Protocol):
    def write(self, text: str) -> None: ...

    def line(self, text: str) -> None: ...

    def step(self, name: str, detail: str = "") -> AbstractContextManager[None]: ...


class ConsoleLog:
    """Writes straight to a stream, as it comes."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self._out = out
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self._out.write(text)
            self._out.flush()

    def line(self, text: str) -> None:
        self.write(text.rstrip("\n") + "\n")

    @contextmanager
    def step(self, name: str, detail: str = "") -> Iterator[None]:
        self.line(f"==> {name}: {detail}" if detail else f"==> {name}")
        started = time.monotonic()
        try:
            yield
        finally:
            self.line(f"==> {name} {time.monotonic() - started:.2f}s")
