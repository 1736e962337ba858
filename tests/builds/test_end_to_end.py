"""The whole product in one path: a signed GitHub push reaches the API, a real worker builds the
commit on the Docker engine, the image lands on two registry replicas, GitHub receives the commit
statuses in order, and deploy tooling finds the SHA as the branch's latest green image."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.broker import get_celery
from app.models import Build, Image, Registry, Repository
from app.outbox.relay import reset_relay
from tests.builds.helpers import log_of, sample_files, wait_for
from tests.conftest import WEBHOOK_SECRET
from tests.support import docker as docker_support
from tests.support.fake_github import DEFAULT_TOKEN, FakeGitHub
from tests.support.github import ZERO_SHA, encode, push_payload, webhook_headers
from tests.support.registry import RunningRegistry, run_registry
from tests.support.server import serve
from tests.support.worker import run_worker

pytestmark = pytest.mark.e2e

PUBLIC_URL = "https://cartridge.example.com"
PROXY_HOST = "pull.example.com:5080"
MANIFEST_ACCEPT = "application/vnd.oci.image.manifest.v1+json, " + (
    "application/vnd.docker.distribution.manifest.v2+json"
)


def test_a_signed_push_becomes_a_green_image_on_every_replica_with_statuses_on_github(
    session: Session,
    registry: RunningRegistry,
    sample_repository: Repository,
    push_commit: Callable[..., str],
    build_env: dict[str, str],
    set_build_env: Callable[..., None],
    tmp_path: Path,
) -> None:
    run = uuid.uuid4().hex[:8]
    with FakeGitHub() as github, run_registry(tmp_path / "replica-two") as second:
        set_build_env(
            build_queue=f"builds-{run}",
            default_queue=f"cartridge-{run}",
            github_api_url=github.url,
            github_token=DEFAULT_TOKEN,
            public_url=PUBLIC_URL,
            proxy_host=PROXY_HOST,
        )
        get_celery.cache_clear()
        reset_relay()
        session.add_all(
            [
                Registry(name="one", url=registry.host, required=True),
                Registry(name="two", url=second.host, required=True),
            ]
        )
        session.commit()
        sha = push_commit(sample_repository, sample_files())
        body = encode(
            push_payload(
                sample_repository.full_name,
                after=sha,
                before=ZERO_SHA,
                clone_url=sample_repository.clone_url,
            )
        )

        from app.main import create_app

        # Statuses get a worker of their own, as in production, so they never wait for a build.
        with (
            run_worker(build_env, tmp_path, queues=f"builds-{run}"),
            run_worker(build_env, tmp_path, queues=f"cartridge-{run}", name="statuses"),
            serve(create_app()) as api,
        ):
            answer = httpx.post(
                f"{api}/webhooks/github",
                content=body,
                headers=webhook_headers("push", body, WEBHOOK_SECRET),
            )
            assert answer.status_code in (200, 202), answer.text
            build_id = answer.json()["build_id"]
            build = session.get_one(Build, build_id)

            def final_status() -> str | None:
                session.expire_all()
                status = session.get_one(Build, build_id).status
                return status if status in {"succeeded", "failed", "errored"} else None

            assert wait_for("a final status", final_status, timeout=120) == "succeeded", log_of(
                session, build
            )
            github.wait_for(lambda fake: "success" in [s.state for s in fake.statuses_for(sha)])
            recorded = httpx.get(f"{api}/api/v1/builds/{build_id}/statuses").json()["items"]
            latest = httpx.get(
                f"{api}/api/v1/repos/{sample_repository.full_name}/branches/main/latest-green"
            ).json()

        # Cartridge recorded every status in order; GitHub received them in that order, ending in
        # success (a pending that was already outdated when its turn came is coalesced, never
        # sent after a newer one).
        descriptions = [post["description"] for post in recorded]
        assert descriptions[:2] == ["Queued", f"Building on {build_env['CARTRIDGE_HOST_NAME']}"]
        assert descriptions[2].startswith("Built in")
        assert [post["state"] for post in recorded] == ["pending", "pending", "success"]
        received = github.statuses_for(sha)
        received_descriptions = [status.description for status in received]
        assert received_descriptions == [d for d in descriptions if d in received_descriptions]
        assert [status.state for status in received][-1] == "success"
        assert {status.target_url for status in received} == {
            f"{PUBLIC_URL}/api/v1/builds/{build_id}"
        }
        assert github.rejections == []

        # The image is verified, by digest, on both replicas.
        image = session.scalars(select(Image).where(Image.build_id == build_id)).one()
        for replica in (registry, second):
            head = httpx.head(
                f"{replica.url}/v2/{image.name}/manifests/{image.manifest_digest}",
                headers={"Accept": MANIFEST_ACCEPT},
            )
            assert head.status_code == 200
            assert head.headers["Docker-Content-Digest"] == image.manifest_digest

        # Deploy tooling gets the SHA and a digest reference through the pull proxy.
        assert latest["sha"] == sha
        assert latest["image"]["reference"] == (
            f"{PROXY_HOST}/{image.name}@{image.manifest_digest}"
        )
        assert latest["roles"]["web"]

        # The copy on the second replica (never pushed by Docker) runs and knows its commit.
        reference = f"{second.host}/{image.name}@{image.manifest_digest}"
        docker_support.client().images.pull(reference)
        try:
            assert docker_support.run_once(reference, ["cat", "/app/REVISION"]).strip() == sha
        finally:
            docker_support.remove_images(f"{second.host}/")
