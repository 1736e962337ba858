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


class StepLines:
    """`line` and `step` on top of a `write` of the class's own."""

    def write(self, text: str) -> None:
        raise NotImplementedError

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


class ConsoleLog(StepLines):
    """Writes straight to a stream, as it comes."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self._out = out
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self._out.write(text)
            self._out.flush()
