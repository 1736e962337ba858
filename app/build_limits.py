"""The resource limits every container of a build runs under: the value types shared by the
installation's settings (`CARTRIDGE_BUILD_MEMORY`, ...) and a repository's `build_limits`."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, WithJsonSchema

from app.sizes import parse_size

# Docker refuses memory limits under 6 MiB; below a few MiB nothing useful runs anyway.
MIN_SIZE = 16 << 20

# Sizes are read as bytes or as Docker writes them ("512m", "2g"); they are shown as bytes.
_SIZE_INPUT = WithJsonSchema(
    {
        "anyOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[kmgtKMGT]?([iI]?[bB])?\s*$"},
        ],
        "description": "bytes, or a size with a binary unit: '512m', '2g', '2GiB'",
    },
    mode="validation",
)

Memory = Annotated[int, BeforeValidator(parse_size), Field(ge=MIN_SIZE), _SIZE_INPUT]
# Swap the build may use beyond its memory (0: none).
Swap = Annotated[int, BeforeValidator(parse_size), Field(ge=0), _SIZE_INPUT]
# CPU time, in CPUs (1.5: one and a half CPUs' worth of time, spread over any of them).
Cpus = Annotated[float, Field(ge=0.01, le=1024)]
Pids = Annotated[int, Field(ge=16, le=4_194_304)]
# What each build step may write: its files, /tmp included.
Disk = Annotated[int, BeforeValidator(parse_size), Field(ge=MIN_SIZE), _SIZE_INPUT]

LIMIT_NAMES = ("memory", "swap", "cpus", "pids", "disk")
