"""A small, realistic installation in the database: repositories, pushes, builds in every
status with their logs, images, replicas, commit statuses and webhook deliveries. Used by the
page tests and by `script/screenshots`."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.orm import Session

from app.builds import logs
from app.models import (
    Build,
    Image,
    ImageReplica,
    Push,
    Registry,
    Repository,
    StatusPost,
    WebhookDelivery,
)
from app.models.base import utcnow

ESC = "\x1b"


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 (a made-up commit id)


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def log_of_success(sha: str, host: str) -> str:
    return "".join(
        [
            f"==> build octo/shop@{sha} (attempt 1) on {host}\n",
            f"==> fetch: https://github.com/octo/shop.git at {sha}\n",
            "==> fetch 0.84s\n",
            "==> validate: container/compile, container/roles.json\n",
            "==> validate 0.01s\n",
            f"==> build: 127.0.0.1:5000/octo-shop:{sha} from cartridge/base:latest\n",
            "Step 1/9 : FROM cartridge/base:latest\n",
            " ---> 5b2f0d1e9c3a\n",
            'Step 7/9 : RUN ["/app/container/compile"]\n',
            f"{ESC}[1mBundling{ESC}[0m 143 gems\n",
            f"{ESC}[32mInstalled{ESC}[0m rails 7.2.1\n",
            f"{ESC}[33mwarning{ESC}[0m: assets precompiled with a stale cache\n",
            "Compiled 212 assets in 14.2s\n",
            f"{ESC}[32m✔ compile finished{ESC}[0m\n",
            "==> build 41.37s\n",
            f"==> push: 127.0.0.1:5000/octo-shop:{sha}\n",
            "==> push 3.20s\n",
            "==> replicas 1.12s: verified on r1, r2, r3\n",
            "==> succeeded in 46.61s\n",
        ]
    )


def log_of_failure(sha: str) -> str:
    return "".join(
        [
            f"==> build octo/shop@{sha} (attempt 1) on build-2\n",
            f"==> fetch: https://github.com/octo/shop.git at {sha}\n",
            "==> fetch 0.77s\n",
            "==> validate: container/compile, container/roles.json\n",
            "==> validate 0.01s\n",
            f"==> build: 127.0.0.1:5000/octo-shop:{sha} from cartridge/base:latest\n",
            'Step 7/9 : RUN ["/app/container/compile"]\n',
            "Running migrations check\n",
            f"{ESC}[31mERROR{ESC}[0m: db/schema.rb is out of date\n",
            f"{ESC}[31m  run bin/rails db:schema:dump and commit the result{ESC}[0m\n",
            "==> failed: container/compile exited with 1\n",
        ]
    )


@dataclass
class Seeded:
    repositories: dict[str, Repository] = field(default_factory=dict)
    builds: dict[str, Build] = field(default_factory=dict)


def seed(session: Session) -> Seeded:
    seeded = Seeded()
    now = utcnow()
    shop = Repository(
        full_name="octo/shop",
        clone_url="https://github.com/octo/shop.git",
        image_name="octo-shop",
        default_branch="main",
    )
    api = Repository(
        full_name="octo/api",
        clone_url="https://github.com/octo/api.git",
        image_name="octo-api",
        default_branch="main",
    )
    session.add_all([shop, api])
    session.flush()
    seeded.repositories = {"shop": shop, "api": api}
    registries = [
        Registry(name=name, url=f"10.0.0.1{i}:5000", required=i < 3, healthy=name != "r3")
        for i, name in enumerate(["r1", "r2", "r3"], start=1)
    ]
    for registry in registries:
        registry.last_checked_at = now - timedelta(seconds=20)
    registries[2].last_error = "GET /v2/: connection refused"
    session.add_all(registries)
    session.flush()

    def build(
        key: str,
        repository: Repository,
        status: str,
        branch: str,
        message: str,
        minutes_ago: float,
        seconds: float | None,
        pusher: str = "mona",
        **fields: object,
    ) -> Build:
        sha = _sha(key)
        queued = now - timedelta(minutes=minutes_ago)
        started = queued + timedelta(seconds=4) if status != "queued" else None
        finished = started + timedelta(seconds=seconds) if started and seconds is not None else None
        row = Build(
            repository_id=repository.id,
            sha=sha,
            status=status,
            queued_at=queued,
            started_at=started,
            finished_at=finished,
            build_host="build-1" if started else None,
            **fields,
        )
        session.add(row)
        session.flush()
        delivery = WebhookDelivery(
            guid=str(uuid.uuid5(uuid.NAMESPACE_URL, key)),
            event="push",
            repository_full_name=repository.full_name,
            repository_id=repository.id,
            outcome="accepted",
            received_at=queued,
        )
        session.add(delivery)
        session.flush()
        session.add(
            Push(
                repository_id=repository.id,
                webhook_delivery_id=delivery.id,
                ref=f"refs/heads/{branch}",
                branch=branch,
                before_sha="0" * 40,
                after_sha=sha,
                pusher=pusher,
                head_commit_message=message,
                build_id=row.id,
                received_at=queued,
            )
        )
        seeded.builds[key] = row
        return row

    green = build(
        "green", shop, "succeeded", "main", "Checkout: remember the last address", 42, 46.6
    )
    logs.append(session, green.id, 1, log_of_success(green.sha, "build-1"))
    image = Image(
        build_id=green.id,
        attempt=1,
        name="octo-shop",
        tag=green.sha,
        manifest_digest=_digest("shop-image"),
        config_digest=_digest("shop-config"),
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=187_654_321,
        layers=[
            {"digest": _digest(f"layer{i}"), "size": size, "media_type": "tar+gzip"}
            for i, size in enumerate([2_811_000, 141_000_000, 43_843_321])
        ],
        roles={
            "web": "bin/puma -C config/puma.rb",
            "jobs": "bundle exec sidekiq",
            ".shell": "/bin/sh -l",
        },
        labels={
            "org.opencontainers.image.revision": green.sha,
            "org.opencontainers.image.source": "https://github.com/octo/shop.git",
        },
    )
    session.add(image)
    session.flush()
    for registry in registries:
        present = registry.name != "r3"
        session.add(
            ImageReplica(
                image_id=image.id,
                registry_id=registry.id,
                state="present" if present else "missing",
                verified_digest=image.manifest_digest if present else None,
                verified_at=now - timedelta(minutes=40) if present else None,
            )
        )
    for state, description in (("pending", "Queued"), ("pending", "Building on build-1")):
        session.add(
            StatusPost(
                build_id=green.id,
                attempt=1,
                state=state,
                context="cartridge/build",
                description=description,
                send_state="sent",
                sent_at=now - timedelta(minutes=42),
                tries=1,
            )
        )
    session.add(
        StatusPost(
            build_id=green.id,
            attempt=1,
            state="success",
            context="cartridge/build",
            description="Built in 46s",
            send_state="sent",
            sent_at=now - timedelta(minutes=41),
            tries=1,
        )
    )
    failed = build(
        "failed",
        shop,
        "failed",
        "checkout-v2",
        "Checkout v2: new address form",
        25,
        12.0,
        pusher="hubot",
        error="container/compile exited with 1",
    )
    logs.append(session, failed.id, 1, log_of_failure(failed.sha))
    running = build("running", shop, "running", "main", "Cart: bulk discounts", 1, None)
    logs.append(
        session,
        running.id,
        1,
        "".join(log_of_success(running.sha, "build-1").splitlines(True)[:11]),
    )
    build("queued", api, "queued", "main", "API: paginate orders", 0.2, None)
    build(
        "cancelled",
        api,
        "cancelled",
        "topic/retry",
        "Retry webhook sends",
        90,
        3.0,
        cancel_reason="Cancelled by mona",
    )
    session.add(
        WebhookDelivery(
            guid=str(uuid.uuid5(uuid.NAMESPACE_URL, "filtered")),
            event="push",
            repository_full_name="octo/shop",
            repository_id=shop.id,
            outcome="filtered",
            detail="branch dependabot/npm excluded by the repository's branch filters",
            received_at=now - timedelta(minutes=30),
        )
    )
    session.add(
        WebhookDelivery(
            guid=str(uuid.uuid5(uuid.NAMESPACE_URL, "ping")),
            event="ping",
            outcome="ping",
            received_at=now - timedelta(hours=3),
        )
    )
    session.flush()
    return seeded
