"""Stand-ins for broken or hostile servers that the multi-server runner must survive.

Not ComfyUI, on purpose: each speaks just enough of ComfyUI's HTTP API and websocket to be
taken for one (its /object_info is a real server's, so the runner builds its graph for it), then
misbehaves in one way. aiohttp (ComfyUI's own server library) in a thread of the test process,
on a free loopback port; it stops with the context manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading

from aiohttp import web

DEEP = "[" * 200_000 + "]" * 200_000  # deeper than Python's recursion limit allows json to read
PROMPT_ID = "stand-in-prompt"

# mode -> what goes wrong
MODES = {
    "deep_object_info": "/object_info is 200,000 nested brackets",
    "deep_prompt": "the /prompt answer is 200,000 nested brackets",
    "deep_history": "/history is 200,000 nested brackets",
    "deep_ws": "a websocket message of 200,000 nested brackets",
    "redirect": "/object_info and /prompt redirect to another server",
    "stall": "sends execution_start, then nothing (the connection stays up)",
    "drip": "after execution_start, a status line every half second and no progress",
    "other_id": "reports success for another prompt id only, then nothing",
}


class StandIn:
    """A server at ``url`` misbehaving as ``mode`` says; ``object_info`` (bytes) is what it
    lists, ``redirect_to`` where "redirect" sends clients. ``forgotten`` collects the prompt ids
    clients asked it to delete or interrupt."""

    def __init__(self, mode: str, object_info: bytes, redirect_to: str = ""):
        assert mode in MODES, mode
        self.mode, self.object_info, self.redirect_to = mode, object_info, redirect_to
        self.forgotten: list[str] = []
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/object_info", self.on_object_info)
        app.router.add_post("/prompt", self.on_prompt)
        app.router.add_get("/ws", self.on_ws)
        app.router.add_get("/history/{id}", self.on_history)
        app.router.add_get("/system_stats", lambda r: web.json_response({"system": {"comfyui_version": "stand-in"}}))
        app.router.add_post("/queue", self.on_forget)
        app.router.add_post("/interrupt", self.on_forget)
        return app

    async def on_object_info(self, request):
        if self.mode == "deep_object_info":
            return web.Response(text=DEEP, content_type="application/json")
        if self.mode == "redirect":
            raise web.HTTPFound(self.redirect_to + "/object_info")
        return web.Response(body=self.object_info, content_type="application/json")

    async def on_prompt(self, request):
        await request.read()
        if self.mode == "deep_prompt":
            return web.Response(text=DEEP, content_type="application/json")
        return web.json_response({"prompt_id": PROMPT_ID, "number": 1, "node_errors": {}})

    async def on_history(self, request):
        if self.mode == "deep_history":
            return web.Response(text=DEEP, content_type="application/json")
        return web.json_response({})

    async def on_forget(self, request):
        body = await request.json()
        self.forgotten += body.get("delete", []) + ([body["prompt_id"]] if "prompt_id" in body else [])
        return web.json_response({})

    async def on_ws(self, request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        started = {"type": "execution_start", "data": {"prompt_id": PROMPT_ID}}
        if self.mode in ("stall", "drip", "deep_ws", "deep_history"):
            await asyncio.sleep(0.5)  # after the client's POST /prompt
            await ws.send_str(json.dumps(started))
        if self.mode == "deep_ws":
            await ws.send_str(DEEP)
        elif self.mode == "deep_history":  # the run "ends", so the client reads /history
            await ws.send_str(json.dumps({"type": "execution_success", "data": {"prompt_id": PROMPT_ID}}))
        elif self.mode == "other_id":
            await asyncio.sleep(0.5)
            await ws.send_str(json.dumps({"type": "execution_success", "data": {"prompt_id": "someone-else"}}))
        elif self.mode == "drip":
            while not ws.closed:
                await ws.send_str(json.dumps({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}))
                await asyncio.sleep(0.5)
        if self.mode != "drip":
            async for _ in ws:  # keep the connection up until the client leaves
                pass
        return ws


@contextlib.contextmanager
def stand_in(mode: str, object_info: bytes, redirect_to: str = ""):
    """Run a StandIn on a free loopback port in a thread; yields it (``.url`` set)."""
    server = StandIn(mode, object_info, redirect_to)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner = web.AppRunner(server.app(), handle_signals=False)

    async def start():
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        server.url = f"http://127.0.0.1:{port}"
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(10), "the stand-in server did not start"
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
