"""Renders the main pages to PNG from a seeded database: `script/screenshots [OUT_DIR]`.

The database is a fresh SQLite file (nothing else needs to run); the pages are served by a real
uvicorn server and drawn by Debian's chromium through Playwright.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
PAGES = [
    ("build", "/builds/{failed}#L9"),
    ("build-running", "/builds/{running}"),
    ("home", "/"),
    ("builds", "/builds"),
    ("repository", "/repos/octo/shop"),
    ("image", "/images/{digest}"),
    ("registries", "/registries"),
    ("deliveries", "/deliveries"),
]


def main(out_dir: Path) -> None:
    state = Path(tempfile.mkdtemp(prefix="cartridge-screenshots-"))
    os.environ["CARTRIDGE_DATABASE_URL"] = f"sqlite:///{state / 'cartridge.db'}"
    os.environ["CARTRIDGE_STATE_DIR"] = str(state)
    os.environ["CARTRIDGE_BROKER_URL"] = "memory://"
    from playwright.sync_api import sync_playwright

    from app import migrate
    from app.db import reset_caches, session_scope
    from app.main import create_app
    from app.models import Image
    from tests.support.seed import seed
    from tests.support.server import serve

    reset_caches()
    migrate.upgrade(os.environ["CARTRIDGE_DATABASE_URL"])
    with session_scope() as session:
        seeded = seed(session)
        ids = {key: build.id for key, build in seeded.builds.items()}
        image = session.query(Image).one()
        ids["digest"] = image.manifest_digest  # type: ignore[assignment]
    out_dir.mkdir(parents=True, exist_ok=True)
    with serve(create_app()) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        for width, suffix in ((1280, ""), (390, "-phone")):
            page = browser.new_page(viewport={"width": width, "height": 900})
            for name, path in PAGES:
                if suffix and name not in {"build", "builds", "home"}:
                    continue
                page.goto(url + path.format(**ids))
                if name.startswith("build") and name != "builds":
                    page.wait_for_selector("#log .line")
                    page.wait_for_timeout(300)
                target = out_dir / f"{name}{suffix}.png"
                page.screenshot(path=str(target), full_page=True)
                print(target)
            page.close()
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots"))
