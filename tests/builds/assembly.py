"""Building a checkout on disk with the pipeline's shared steps (validate and build), with no
git server, database or registry: for tests of what is inside the image."""

from __future__ import annotations

import io
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from app.config import Settings
from tests.builds.helpers import EXECUTABLES
from workers.pipeline.assemble import AssembledImage, ImageSource, assemble_image
from workers.pipeline.control import BuildControl
from workers.pipeline.image_build import docker_api
from workers.pipeline.steplog import ConsoleLog


def write_tree(root: Path, files: dict[str, str], executable: tuple[str, ...] = ()) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        is_executable = relative in EXECUTABLES or relative in executable
        path.chmod(0o755 if is_executable else 0o644)
    return root


def assemble(
    checkout: Path,
    settings: Settings,
    *,
    base_image: str,
    tag: str | None = None,
    out: io.StringIO | None = None,
) -> tuple[AssembledImage, str]:
    """Builds `checkout`; returns the image and the log (also written to `out`)."""
    api = docker_api(settings.docker_host)
    out = out if out is not None else io.StringIO()
    image = assemble_image(
        ImageSource(
            checkout=checkout,
            revision="0" * 40,
            source="file:///nowhere",
            repository="octo/test",
            base_image=base_image,
            tag=tag or f"cartridge-test/{uuid.uuid4().hex[:12]}:latest",
        ),
        settings,
        api=api,
        log=ConsoleLog(out),
        control=BuildControl(api, deadline=time.monotonic() + 300),
        started=datetime.now(UTC),
    )
    return image, out.getvalue()
