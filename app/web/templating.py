"""The pages' Jinja environment (autoescaped) and the small filters templates use."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from app.models.base import utcnow

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    seconds = int((utcnow() - _utc(moment)).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def absolute(moment: datetime | None) -> str:
    return "" if moment is None else _utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(moment: datetime | None) -> str:
    return "" if moment is None else _utc(moment).isoformat()


def duration(start: datetime | None, end: datetime | None = None) -> str:
    """`1m 23s`; a build still running counts up to now."""
    if start is None:
        return "-"
    seconds = int(((_utc(end) if end else utcnow()) - _utc(start)).total_seconds())
    seconds = max(seconds, 0)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60}s"
    return f"{seconds}s"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 60:
        return f"{int(value) // 60}m {int(value) % 60}s"
    return f"{value:.1f}s"


def size(value: int | None) -> str:
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{value} B"


def short(sha: str | None) -> str:
    return (sha or "")[:7]


def commit_url(repository: str, sha: str) -> str:
    return f"https://github.com/{repository}/commit/{sha}"


def subject(message: str | None) -> str:
    """A commit message's first line."""
    return (message or "").strip().splitlines()[0] if (message or "").strip() else ""


@cache
def static_url(name: str) -> str:
    """`/static/<name>?v=<content hash>`: browsers may keep it until the file changes."""
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
    return f"/static/{name}?v={digest}"


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is escaped unless a template says otherwise
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        ago=ago,
        absolute=absolute,
        iso=iso,
        duration=duration,
        seconds=seconds,
        size=size,
        short=short,
        subject=subject,
    )
    environment.globals.update(static_url=static_url, commit_url=commit_url)
    return environment


templates = Jinja2Templates(env=_environment())
