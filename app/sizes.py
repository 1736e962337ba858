"""Sizes in bytes, written the way Docker writes them: `512m`, `2g`, `2GiB`, `1.5g` or a plain
number of bytes. Every unit is binary (`k` = KiB = 1024 bytes), as in `docker run --memory`."""

from __future__ import annotations

import re

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(value: object) -> int:
    """Bytes from an int or a size string; `ValueError` (with the accepted forms) otherwise."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string such as '512m' or '2g'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str) and (match := _SIZE.match(value)):
        number, unit = match.groups()
        return int(float(number) * _UNITS[unit.lower()])
    raise ValueError(
        f"{value!r} is not a size: write bytes or a number with k, m, g or t "
        "(binary units: '512m', '2g', '2GiB')"
    )


def format_size(size: int) -> str:
    """`2 GiB`, `512 MiB`, `1.5 GiB`: the largest unit that keeps the number at least 1."""
    for unit, name in (("t", "TiB"), ("g", "GiB"), ("m", "MiB"), ("k", "KiB")):
        scale = _UNITS[unit]
        if size >= scale:
            number = size / scale
            text = f"{number:.1f}".removesuffix(".0")
            return f"{text} {name}"
    return f"{size} bytes"
