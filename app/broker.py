"""The Celery application object, configured from settings. Tasks live in `workers/`."""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from typing import Any

from celery import Celery

from app.config import Settings, get_settings

BUILD_TASK = "cartridge.builds.run"


def broker_options(settings: Settings) -> dict[str, Any]:
    url = settings.resolved_broker_url()
    if url.startswith("filesystem://"):
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            # Otherwise kombu keeps its exchange table in ./control, wherever the process runs.
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    timeout = settings.broker_connect_timeout_seconds
    # A build may run for a long time; Redis must not hand the job to a second worker meanwhile.
    visibility = settings.build_timeout_seconds + 600
    return {
        "socket_connect_timeout": timeout,
        "socket_timeout": max(timeout, 5.0),
        "visibility_timeout": visibility,
    }


def create_celery(settings: Settings) -> Celery:
    celery = Celery("cartridge", broker=settings.resolved_broker_url())
    celery.conf.update(
        task_default_queue=settings.default_queue,
        task_routes={BUILD_TASK: {"queue": settings.build_queue}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_timeout=settings.broker_connect_timeout_seconds,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_options(settings),
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
    )
    return celery


@lru_cache
def get_celery() -> Celery:
    return create_celery(get_settings())


# kombu's Redis transport keeps a queue's waiting messages in a list named after the queue, and
# one more list per priority step.
_REDIS_PRIORITY_SEPARATOR = "\x06\x16"
_REDIS_PRIORITY_STEPS = (3, 6, 9)


def jobs_waiting(settings: Settings, task: str, queue: str) -> set[Any] | None:
    """The first argument of every `task` message waiting in `queue`. None when the broker
    cannot be read (a transport other than Redis); raises when Redis does not answer.

    A message a worker has taken but not acknowledged (a prefetched one, behind a long build) is
    not counted: the build it names waits for that worker alone, and a second message lets any
    idle worker take it."""
    url = settings.resolved_broker_url()
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    client = redis.Redis.from_url(url, socket_timeout=settings.broker_connect_timeout_seconds)
    names = [queue, *(f"{queue}{_REDIS_PRIORITY_SEPARATOR}{p}" for p in _REDIS_PRIORITY_STEPS)]
    try:
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.lrange(name, 0, -1)
            lists = pipe.execute()
    finally:
        client.close()
    waiting: set[Any] = set()
    for raw in (raw for rows in lists for raw in rows):
        first = _first_argument(raw, task)
        if first is not None:
            waiting.add(first)
    return waiting


def _first_argument(raw: bytes, task: str) -> Any:
    try:
        message = json.loads(raw)
        if message["headers"]["task"] != task:
            return None
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        return args[0] if args else None
    except (ValueError, TypeError, KeyError, IndexError):
        return None  # not a Celery message of ours
