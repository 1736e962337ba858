"""Path and query parameters shared by several endpoints, bounded so that no value reaches the
database in a form it refuses (which would be a 500): a row id past PostgreSQL's `bigint` names no
row, and a time is an ISO 8601 date-time within years Cartridge can have recorded anything."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, BeforeValidator

MAX_ROW_ID = 2**63 - 1  # bigint ids
MAX_ATTEMPT = 2**31 - 1  # builds.attempt is an integer
MAX_OFFSET = 2**63 - 1  # build_log_chunks.offset is a bigint

BuildId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="The build's id.")]

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
# A date, or a date and a time with an optional offset; never a bare number (pydantic would read
# it as seconds since the epoch).
ISO_8601 = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?(?:Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)


def _iso_8601(value: object) -> object:
    if isinstance(value, str) and ISO_8601.match(value):
        return value
    raise ValueError("must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")


def _plausible(moment: datetime) -> datetime:
    # A time without an offset is taken as UTC, the zone every timestamp here is in.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError("must be between 1970-01-01 and 9999-01-01")
    return utc


Moment = Annotated[datetime, BeforeValidator(_iso_8601), AfterValidator(_plausible)]
