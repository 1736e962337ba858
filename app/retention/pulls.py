"""Pulls through the proxy, read from nginx's access log, so that retention keeps images that
deploy hosts use. The replicas never see a pull the proxy's cache answered: only the proxy knows.

Only manifest requests count (a pull starts with one); a line is
`<time> <client> "GET /v2/<path>/manifests/<digest or tag> HTTP/1.1" 200 ...`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.images.references import path_in_registry
from app.models import Image

MANIFEST_PULL = re.compile(
    r'^(?P<time>\S+) \S+ "(?:GET|HEAD) /v2/(?P<path>[^ ]+)/manifests/(?P<ref>[^ /?]+)'
    r'(?:\?\S*)? HTTP/[0-9.]+" (?P<status>\d{3}) '
)
READ_LIMIT_BYTES = 64 * 1024 * 1024


@dataclass
class AccessLogReader:
    """Reads what was appended to the access log since the last call (from the start after a
    rotation or on the first call)."""

    path: Path
    offset: int = 0
    pulls: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def read_new(self) -> dict[tuple[str, str], datetime]:
        """(path, reference) -> the latest successful pull in the new lines."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return {}
        if size < self.offset:
            self.offset = 0
        found: dict[tuple[str, str], datetime] = {}
        with self.path.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read(READ_LIMIT_BYTES)
        complete = chunk.rfind(b"\n") + 1  # a line still being written waits for the next call
        self.offset += complete
        for raw in chunk[:complete].splitlines():
            match = MANIFEST_PULL.match(raw.decode("utf-8", "replace"))
            if match is None or match.group("status") not in ("200", "304"):
                continue
            try:
                when = datetime.fromisoformat(match.group("time"))
            except ValueError:
                continue
            key = (match.group("path"), match.group("ref"))
            if key not in found or found[key] < when:
                found[key] = when
        return found


def record_pulls(session: Session, pulls: dict[tuple[str, str], datetime]) -> int:
    """Moves each pulled image's `last_pulled_at` forward. Returns how many images it touched."""
    touched = 0
    for (path, ref), when in pulls.items():
        newer = or_(Image.last_pulled_at.is_(None), Image.last_pulled_at < when)
        if ref.startswith("sha256:"):
            result = session.execute(
                update(Image).where(Image.manifest_digest == ref, newer).values(last_pulled_at=when)
            )
            touched += getattr(result, "rowcount", 0) or 0
            continue
        candidates = session.execute(select(Image.id, Image.name).where(Image.tag == ref, newer))
        ids = [image_id for image_id, name in candidates if path_in_registry(name) == path]
        if ids:
            session.execute(update(Image).where(Image.id.in_(ids)).values(last_pulled_at=when))
            touched += len(ids)
    session.flush()
    return touched
