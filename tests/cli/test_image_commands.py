"""`cartridge images pin|unpin` through the API."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.cli.errors import EXIT_REFUSED
from app.models import Image
from tests.cli.conftest import Run
from tests.support.factories import MakeBuild, MakeImage, MakeRepository


def test_an_image_is_pinned_and_unpinned(
    run: Run,
    session: Session,
    make_repository: MakeRepository,
    make_build: MakeBuild,
    make_image: MakeImage,
) -> None:
    image = make_image(make_build(make_repository(), status="succeeded"))
    digest = image.manifest_digest

    pinned = run("images", "pin", digest)
    assert pinned.exit_code == 0, pinned.output
    assert pinned.stdout == f"{digest} pinned\n"
    session.expire_all()
    assert session.get(Image, image.id).pinned is True  # type: ignore[union-attr]

    unpinned = run("images", "unpin", digest, "--json")
    assert unpinned.exit_code == 0, unpinned.output
    assert '"pinned": false' in unpinned.stdout
    session.expire_all()
    assert session.get(Image, image.id).pinned is False  # type: ignore[union-attr]


def test_pinning_an_unknown_image_or_without_a_token_is_refused(run: Run) -> None:
    unknown = run("images", "pin", "sha256:" + "0" * 64)
    assert unknown.exit_code == EXIT_REFUSED
    assert "(image_not_found, HTTP 404)" in unknown.stderr.splitlines()[0]

    no_token = run("images", "pin", "sha256:" + "0" * 64, token=None)
    assert no_token.exit_code == EXIT_REFUSED
    assert "(unauthorized, HTTP 401)" in no_token.stderr
