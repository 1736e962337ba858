"""Where an event stream is: the last id seen in each sequence it follows, and the gaps below it.

Ids come from sequences, allocated when a row is inserted, not when its transaction commits: a
transaction holding id 9 may commit after one holding id 10. A reader that only asked for
`id > last` would then skip 9 forever. So an id skipped over is remembered as a gap and asked for
again until it shows up or `GAP_SECONDS` pass (its transaction rolled back).

The id a client sends back (`Last-Event-ID`, `?after=`) is `<build event id>.<log chunk id>`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, or_
from sqlalchemy.orm import InstrumentedAttribute

from app.errors import BadRequest, ErrorCode

GAP_SECONDS = 30.0
MAX_GAPS = 1000


@dataclass
class SequenceCursor:
    last: int
    gaps: dict[int, float] = field(default_factory=dict)  # id -> when it was skipped

    def unseen(self, column: InstrumentedAttribute[int]) -> ColumnElement[bool]:
        if not self.gaps:
            return column > self.last
        return or_(column > self.last, column.in_(sorted(self.gaps)))

    def saw(self, ids: list[int]) -> None:
        now = time.monotonic()
        for row_id in sorted(ids):
            self.gaps.pop(row_id, None)
            if row_id > self.last:
                for skipped in range(max(self.last + 1, row_id - MAX_GAPS), row_id):
                    self.gaps[skipped] = now
                self.last = row_id
        for row_id, skipped_at in list(self.gaps.items()):
            if now - skipped_at > GAP_SECONDS:
                del self.gaps[row_id]
        while len(self.gaps) > MAX_GAPS:
            del self.gaps[min(self.gaps)]


@dataclass
class EventCursor:
    events: SequenceCursor
    logs: SequenceCursor

    def __str__(self) -> str:
        return f"{self.events.last}.{self.logs.last}"

    @classmethod
    def parse(cls, value: str) -> EventCursor:
        events, _, logs = value.strip().partition(".")
        if not (events.isdigit() and logs.isdigit()):
            raise BadRequest(
                "The event id is not one this stream sent (expected <number>.<number>).",
                code=ErrorCode.INVALID_LAST_EVENT_ID,
                value=value[:100],
            )
        return cls(SequenceCursor(int(events)), SequenceCursor(int(logs)))
