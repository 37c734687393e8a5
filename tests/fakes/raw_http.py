"""A bare HTTP/1.1 client for requests no well-behaved library sends (undecodable header bytes)."""

from __future__ import annotations

import asyncio


async def raw_post(host: str, port: int, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """POST `body` with exactly these header bytes; return the status code of the answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        lines = [b"POST " + path.encode() + b" HTTP/1.1", b"Host: " + host.encode(), b"Connection: close",
                 b"Content-Length: " + str(len(body)).encode()]
        lines += [name + b": " + value for name, value in headers]
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
        status_line = await reader.readline()
        return int(status_line.split()[1])
    finally:
        writer.close()
        await writer.wait_closed()
