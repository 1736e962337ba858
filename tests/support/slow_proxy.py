"""A TCP proxy on loopback that holds back every piece of the upstream's answer: a slow link to a
real server, for tests of what Cartridge does while a network call takes its time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def slow_proxy(upstream: str, *, delay: float) -> Iterator[str]:
    """Forwards connections to `upstream` (`host:port`); each chunk the upstream sends reaches
    the client `delay` seconds late. Yields the proxy's `host:port`."""
    host, port = upstream.rsplit(":", 1)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    address: list[str] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lag: float) -> None:
        try:
            while chunk := await reader.read(65536):
                if lag:
                    await asyncio.sleep(lag)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(
            pipe(client_reader, upstream_writer, 0),
            pipe(upstream_reader, client, delay),
        )

    async def serve() -> asyncio.Server:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        address.append(f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
        ready.set()
        return server

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(serve())
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())

    thread = threading.Thread(target=run, name="slow-proxy", daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield address[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
