"""The reference floor: a ~40-line aiohttp reverse proxy (one session, keep-alive, bytes
relayed as they arrive). Run: ``python bench/minimal_proxy.py UPSTREAM [--port 0]``."""

import argparse
import asyncio

import aiohttp
from aiohttp import web

HOP = {"Host", "Content-Length", "Transfer-Encoding", "Connection", "Authorization"}


async def main(upstream: str, port: int) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def proxy(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k not in HOP}
        body = await request.read()
        async with session.post(upstream + request.path, data=body, headers=headers) as up:
            ctype = up.headers.get("Content-Type", "application/json")
            if not ctype.startswith("text/event-stream"):
                body = await up.read()
                return web.Response(body=body, status=up.status, headers={"Content-Type": ctype})
            response = web.StreamResponse(status=up.status, headers={"Content-Type": ctype})
            await response.prepare(request)
            async for chunk in up.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", proxy)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    print(f"ready {runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("upstream")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.upstream.rstrip("/"), args.port))
    except ImportError:
        asyncio.run(main(args.upstream.rstrip("/"), args.port))
