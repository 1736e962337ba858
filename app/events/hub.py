"""One `LISTEN` connection per API process, waking the streams that care about a notification.

On PostgreSQL, workers and the API `NOTIFY` when a build changes or its log grows
(`app.events.announce`); the hub holds the only listening connection of its event loop and sets
the wake-up flag of each subscription interested in that build (or in every build). A stream
reads the database only when woken, so the database work grows with the number of changes, not
with the number of viewers. Without PostgreSQL (SQLite) there is nothing to listen to: a
subscription's wait simply times out after the polling interval.

Subscribe before reading: a notification that arrives while the stream reads sets the flag, and
the stream's next wait returns at once, so no change is slept through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from sqlalchemy.engine import make_url

from app.config import get_settings
from app.events.announce import CHANNEL

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # without notifications (SQLite, or while the listener reconnects)
# With notifications a stream still looks once in a while: a safety net, not the mechanism.
LISTENING_SAFETY_SECONDS = 10.0
RECONNECT_SECONDS = 1.0
ANY_BUILD = 0

T = TypeVar("T")


class Subscription:
    def __init__(self, hub: Hub, build_id: int) -> None:
        self._hub = hub
        self.build_id = build_id
        self._flag = asyncio.Event()
        # The hub's notification count when this subscription was last woken: a read that
        # started before then may not see what the notification announced.
        self.woken_at = hub.notifications

    def wake(self) -> None:
        self.woken_at = self._hub.notifications
        self._flag.set()

    async def wait(self) -> None:
        """Returns when a notification for this subscription arrived since the last wait (at
        once if one did), or after the polling interval."""
        timeout = LISTENING_SAFETY_SECONDS if self._hub.listening else POLL_SECONDS
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flag.wait(), timeout)
        self._flag.clear()

    def close(self) -> None:
        self._hub.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class Hub:
    def __init__(self, dsn: str | None) -> None:
        self._dsn = dsn
        self._subscriptions: dict[int, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self.listening = False
        # Reads in flight, shared by every stream that asks for the same thing at once.
        self._shared: dict[Any, tuple[int, asyncio.Future[Any]]] = {}
        self.notifications = 0

    def subscribe(self, build_id: int = ANY_BUILD) -> Subscription:
        """Interest in one build's changes, or in every build's (`ANY_BUILD`)."""
        if self._dsn is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen())
        subscription = Subscription(self, build_id)
        self._subscriptions.setdefault(build_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscriptions.get(subscription.build_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscriptions[subscription.build_id]

    async def shared(
        self, key: Any, read: Callable[[], Awaitable[T]], subscription: Subscription
    ) -> T:
        """The result of `read()`, run once for every caller asking with the same `key` while it
        runs: viewers of one build woken by the same notification share one query. A caller
        joins only a read that started after its subscription was last woken, so it never gets
        an answer older than the change it was told about."""
        in_flight = self._shared.get(key)
        if in_flight is None or in_flight[0] < subscription.woken_at:
            future = asyncio.ensure_future(read())
            in_flight = (self.notifications, future)
            self._shared[key] = in_flight

            def forget(_done: object, entry: tuple[int, asyncio.Future[Any]] = in_flight) -> None:
                if self._shared.get(key) is entry:
                    del self._shared[key]

            future.add_done_callback(forget)
        result: T = await asyncio.shield(in_flight[1])
        return result

    def dispatch(self, payload: str) -> None:
        self.notifications += 1
        _kind, _, rest = payload.partition(":")
        try:
            build_id = int(rest.split(":", 1)[0])
        except ValueError:
            log.warning("ignoring notification %r", payload)
            return
        for subscription in self._subscriptions.get(build_id, ()):
            subscription.wake()
        for subscription in self._subscriptions.get(ANY_BUILD, ()):
            subscription.wake()

    def wake_all(self) -> None:
        for subscribers in self._subscriptions.values():
            for subscription in subscribers:
                subscription.wake()

    async def _listen(self) -> None:
        assert self._dsn is not None
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
                async with connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    # Whatever changed while no one listened: every stream looks once.
                    self.wake_all()
                    async for notification in connection.notifies():
                        self.dispatch(notification.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.listening:
                    log.warning("event listener lost its connection: %s", exc)
            self.listening = False
            self.wake_all()
            await asyncio.sleep(RECONNECT_SECONDS)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop (one per API process), created on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = Hub(_listen_dsn())
        _hubs[loop] = hub
    return hub


def _listen_dsn() -> str | None:
    url = make_url(get_settings().resolved_database_url())
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
