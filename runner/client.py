"""One running ComfyUI over its HTTP API, as the sharded sweep (runner/shard.py) uses it:
node definitions (``/object_info``), a prompt run (``POST /prompt``; its start, progress and end
from the websocket ``/ws``), its outputs (``/history/<id>``) and its images (``/view``).

Everything a server answers is untrusted: bodies are size-capped, JSON is type-checked, image
references are only sent back to the same server's ``/view`` (never used as local paths), and
images are decoded and checked against the size the graph makes. Expected faults raise a
ServerError subclass naming the server and the reason.

aiohttp is ComfyUI's own dependency (its server is built on it): no new package. Message names
and order were read in ComfyUI 0.3.75 (``main.py`` prompt_worker, ``execution.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
import time
import uuid
from urllib.parse import urlsplit

import aiohttp
import numpy as np

MAX_JSON = 64 << 20  # /object_info of a server with many custom nodes is a few MB
MAX_IMAGE = 256 << 20
HEARTBEAT = 20.0  # seconds; a server that stops answering pings counts as lost (a killed one at once)
# A plain request may wait this long between reads (a busy server still answers: its HTTP loop
# is not the thread that runs prompts). A whole run is watched by STALL (see ComfyServer.run).
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
# A run that shows no progress for this long is given up and its work goes elsewhere. Progress is
# any step of the run (queued, started, a node, a sampler step, the outputs, an image fetched) or,
# while it waits in the queue, the server running other prompts. The longest silent stretch of a
# real run is a model load (minutes for FLUX from a slow disk), hence the generous default;
# a dead connection is found sooner by the websocket heartbeat.
STALL = 600.0
PROMPT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


class ServerError(Exception):
    """A server could not take or finish a piece of work; ``url`` and ``reason`` say which and why."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason = url, reason


class ServerDown(ServerError):
    """Not reachable, or not a ComfyUI."""


class ServerUnfit(ServerError):
    """Reachable, but lacks the pack, a node type or a model file (it refuses the graph)."""


class RunFailed(ServerError):
    """Took the prompt, then failed: an error while running, the connection lost mid-run, or
    an answer that is not what a ComfyUI sends."""


def parse_servers(text: str) -> list[str]:
    """'http://a:8188, http://b:8189/' -> ['http://a:8188', 'http://b:8189']; ValueError names
    the first entry that is not an http(s) URL of a server, or a repeated one."""
    urls = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        u = urlsplit(part)
        if u.scheme not in ("http", "https") or not u.hostname or u.query or u.fragment:
            raise ValueError(f"{part!r} is not a server URL; expected e.g. http://127.0.0.1:8188")
        url = part.rstrip("/")
        if url in urls:
            raise ValueError(f"{url} is listed twice; list each running ComfyUI once")
        urls.append(url)
    if not urls:
        raise ValueError("lists no server; expected e.g. http://127.0.0.1:8188,http://127.0.0.1:8189")
    return urls


def loads(raw) -> object:
    """JSON from a server; ValueError for anything that is not JSON, including nesting deeper
    than Python's recursion limit (a hostile answer can be a few MB of brackets)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _short(value, n: int = 300) -> str:
    """``value`` as text of at most ``n`` characters, cut at a word's end (never mid-word) with
    " ..." where it is longer: a server's text is untrusted and may be any size."""
    text = str(value)
    if len(text) <= n:
        return text
    cut = text[: n - 4]
    return (cut[: cut.rfind(" ")] if " " in cut[n // 2:] else cut).rstrip(" ,;:") + " ..."


class RemoteNodeDef:
    """A node type as a server's /object_info describes it: what workflow_api.ui_to_api reads
    of a node class (``INPUT_TYPES()``, inputs in the server's order). Malformed specs are left
    out; the server's own validation then names what is missing."""

    def __init__(self, info: dict):
        inputs = info.get("input") if isinstance(info.get("input"), dict) else {}
        order = info.get("input_order") if isinstance(info.get("input_order"), dict) else {}
        self._types = {}
        for section in ("required", "optional"):
            specs = inputs.get(section) if isinstance(inputs.get(section), dict) else {}
            names = order.get(section) if isinstance(order.get(section), list) else list(specs)
            self._types[section] = {
                n: spec for n in names if isinstance(n, str) and isinstance(spec := specs.get(n), list) and spec
                and (len(spec) < 2 or isinstance(spec[1], dict))}

    def INPUT_TYPES(self):  # noqa: N802 (the host's name)
        return self._types

    def options(self, name: str) -> list | None:
        """The choices offered for a list input (a loader's file names), or None when ``name`` is
        not a list input: ["a", "b"] (older hosts) or "COMBO" with options (V3 schema)."""
        spec = self._types["required"].get(name) or self._types["optional"].get(name)
        if not spec:
            return None
        if isinstance(spec[0], list):
            return spec[0]
        if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1].get("options"), list):
            return spec[1]["options"]
        return None


@dataclasses.dataclass(frozen=True)
class ImageRef:
    """An image as /history names it; only ever sent back to the same server's /view."""

    filename: str
    subfolder: str
    type: str


def image_refs(url: str, outputs: dict, node_id: str, count: int) -> list[ImageRef]:
    """The ``count`` images node ``node_id`` shows in a /history ``outputs`` answer."""
    node = outputs.get(node_id) if isinstance(outputs, dict) else None
    images = node.get("images") if isinstance(node, dict) else None
    if not isinstance(images, list) or len(images) != count:
        found = len(images) if isinstance(images, list) else "no"
        raise RunFailed(url, f"the run shows {found} images at node {node_id}; expected {count}")
    refs = []
    for item in images:
        fields = (item.get("filename"), item.get("subfolder", ""), item.get("type", "output")) if isinstance(item, dict) else ()
        if (len(fields) != 3 or not all(isinstance(f, str) and len(f) <= 255 and "\0" not in f for f in fields)
                or not fields[0] or fields[2] not in ("output", "temp")):
            raise RunFailed(url, f"/history names an image as {_short(item, 120)!r}; expected filename, subfolder, type")
        refs.append(ImageRef(*fields))
    return refs


def decode_png(url: str, data: bytes, size: tuple[int, int]) -> np.ndarray:
    """PNG bytes from a server -> (H, W, 3) uint8, refused unless a PNG of ``size`` (W, H)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only; pixels after the checks
            if img.format != "PNG" or img.size != size:
                raise RunFailed(url, f"/view sent a {img.format} image of {img.size[0]}x{img.size[1]}; expected a "
                                     f"{size[0]}x{size[1]} PNG")
            return np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise RunFailed(url, f"/view sent something that is not a readable PNG ({_why(e)})") from None


def prompt_error(body) -> str:
    """The reason in a ComfyUI "prompt invalid" answer, one line: the error and each node's."""
    if not isinstance(body, dict):
        return _short(body)
    err = body.get("error")
    parts = [_short(err.get("message", err) if isinstance(err, dict) else err, 120)]
    for node_id, node in (body.get("node_errors") or {}).items() if isinstance(body.get("node_errors"), dict) else ():
        for e in (node.get("errors") or [])[:3] if isinstance(node, dict) else ():
            if isinstance(e, dict):
                parts.append(f"node {_short(node_id, 20)} ({_short(node.get('class_type'), 40)}): "
                             f"{_short(e.get('message'), 120)}: {_short(e.get('details'), 300)}")
    return _short("; ".join(parts), 1200)


class _Progress:
    """When a run last moved on, and what it was doing then (for the stall message)."""

    def __init__(self):
        self.touch("starting")

    def touch(self, stage: str) -> None:
        self.last, self.stage = time.monotonic(), stage


class ComfyServer:
    """A running ComfyUI at ``url``, reached through ``session``."""

    def __init__(self, url: str, session: aiohttp.ClientSession):
        self.url, self.session = url, session

    async def _body(self, response, limit: int, what: str) -> bytes:
        data = bytearray()
        async for chunk in response.content.iter_chunked(1 << 16):
            data += chunk
            if len(data) > limit:
                raise RunFailed(self.url, f"{what} is larger than {limit >> 20} MiB")
        return bytes(data)

    async def _get(self, path: str, what: str, params=None, limit: int = MAX_JSON, down=RunFailed) -> bytes:
        try:
            # No redirects: an answer from another host is not this server's answer.
            async with self.session.get(self.url + path, params=params, timeout=REQUEST_TIMEOUT, allow_redirects=False) as r:
                if r.status != 200:
                    raise down(self.url, f"GET {path} answered HTTP {r.status}")
                return await self._body(r, limit, what)
        except TRANSPORT_ERRORS as e:
            raise down(self.url, f"GET {path} failed ({_why(e)})") from None

    async def _get_json(self, path: str, what: str, down=RunFailed) -> dict:
        try:
            data = loads(await self._get(path, what, down=down))
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise down(self.url, f"{what} is not a JSON object: is this a ComfyUI?")
        return data

    async def node_defs(self, timeout: float = STALL) -> dict[str, RemoteNodeDef]:
        """type -> definition, for every node type the server has; ServerDown when the whole
        answer takes longer than ``timeout`` seconds (a server that accepts and never answers)."""
        try:
            info = await asyncio.wait_for(self._get_json("/object_info", "its node list (/object_info)", down=ServerDown), timeout)
        except asyncio.TimeoutError:
            raise ServerDown(self.url, f"GET /object_info got no whole answer in {timeout:g} s") from None
        return {k: RemoteNodeDef(v) for k, v in info.items() if isinstance(v, dict)}

    async def about(self) -> str:
        """'ComfyUI 0.3.75, torch 2.14.1, cuda:0 NVIDIA ...' from /system_stats (for reports)."""
        try:
            stats = await self._get_json("/system_stats", "/system_stats")
        except ServerError as e:
            return f"unknown ({e.reason})"
        system = stats.get("system") if isinstance(stats.get("system"), dict) else {}
        devices = stats.get("devices") if isinstance(stats.get("devices"), list) else []
        names = [_short(d.get("name"), 60) for d in devices[:2] if isinstance(d, dict)]
        return _short(f"ComfyUI {system.get('comfyui_version', '?')}, torch {system.get('pytorch_version', '?')}, "
                      f"{' + '.join(names) or '?'}", 200)

    async def run(self, prompt: dict, watch=None, stall: float = STALL) -> dict:
        """Queue an API ``prompt``, wait for its end, return its /history outputs (node id -> ui).
        ``watch(kind, data)`` sees this prompt's websocket messages on the way ("execution_start",
        "progress" with value/max/node, ...). A run without progress for ``stall`` seconds fails
        (RunFailed). A cancelled or failed run is taken off the server."""
        progress = _Progress()
        task = asyncio.ensure_future(self._run(prompt, watch, progress))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=max(0.05, progress.last + stall - time.monotonic()))
                if not task.done() and time.monotonic() - progress.last >= stall:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)  # takes the prompt off the server
                    raise RunFailed(self.url, f"no progress for {stall:g} s while {progress.stage} "
                                              "(stalled; see --stall-timeout)")
            return task.result()
        finally:
            if not task.done():  # we were cancelled (Ctrl-C): let the run take its prompt off the server
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _run(self, prompt: dict, watch, progress: "_Progress") -> dict:
        client_id = uuid.uuid4().hex
        progress.touch("connecting")
        try:
            ws = await self.session.ws_connect(f"{self.url}/ws", params={"clientId": client_id},
                                               heartbeat=HEARTBEAT, max_msg_size=MAX_JSON)
        except TRANSPORT_ERRORS as e:
            raise ServerDown(self.url, f"cannot connect ({_why(e)})") from None
        prompt_id = None
        try:
            progress.touch("queueing the prompt")
            prompt_id = await self._queue(prompt, client_id)
            progress.touch("waiting for the run")
            try:
                await self._wait(ws, prompt_id, watch, progress)
            except TRANSPORT_ERRORS as e:
                raise RunFailed(self.url, f"connection lost mid-run ({_why(e)})") from None
            progress.touch("reading the outputs (/history)")
            outputs = await self._outputs(prompt_id)
            prompt_id = None
            return outputs
        finally:
            if prompt_id is not None:  # cancelled or failed while queued/running: do not leave it there
                await self._forget(prompt_id)
            await ws.close()

    async def _queue(self, prompt: dict, client_id: str) -> str:
        try:
            async with self.session.post(self.url + "/prompt", json={"prompt": prompt, "client_id": client_id},
                                         timeout=REQUEST_TIMEOUT, allow_redirects=False) as r:
                raw = await self._body(r, MAX_JSON, "the /prompt answer")
                status = r.status
        except TRANSPORT_ERRORS as e:
            raise RunFailed(self.url, f"POST /prompt failed ({_why(e)})") from None
        try:
            body = loads(raw)
        except ValueError:
            body = raw[:300].decode("utf-8", "replace")
        if status == 400:
            raise ServerUnfit(self.url, "refused the graph: " + prompt_error(body))
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        if status != 200 or not isinstance(prompt_id, str) or not PROMPT_ID.fullmatch(prompt_id):
            raise RunFailed(self.url, f"POST /prompt answered HTTP {status}: {_short(body, 200)}")
        return prompt_id

    async def _wait(self, ws, prompt_id: str, watch, progress: "_Progress") -> None:
        seen = None
        async for msg in ws:  # ends when the socket closes
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue  # binary: latent previews
            try:
                message = loads(msg.data)
            except ValueError as e:
                raise RunFailed(self.url, f"sent a websocket message that is not JSON ({e}): is this a ComfyUI?") from None
            data = message.get("data") if isinstance(message, dict) else None
            if not isinstance(data, dict):
                continue  # a status line
            kind = message.get("type")
            state = (kind, data.get("node"), data.get("value"))
            if data.get("prompt_id") != prompt_id:
                if kind in ("executing", "progress") and state != seen:  # busy with work queued before ours
                    seen = state
                    progress.touch("queued behind other prompts")
                continue
            if state != seen:  # repeats of one message are not progress
                seen = state
                progress.touch(f"running ({kind})")
            if kind == "execution_error":
                raise RunFailed(self.url, f"error in node {_short(data.get('node_id'), 20)} ({_short(data.get('node_type'), 40)}): "
                                          f"{_short(data.get('exception_type'), 60)}: {_short(data.get('exception_message'))}")
            if kind == "execution_interrupted":
                raise RunFailed(self.url, "the run was interrupted on the server")
            if kind == "execution_success" or (kind == "executing" and data.get("node") is None):
                return
            if watch is not None:
                watch(kind, data)
        raise RunFailed(self.url, "connection lost mid-run (the server stopped or crashed)")

    async def _outputs(self, prompt_id: str) -> dict:
        # The history entry is stored just before "executing: None"; hosts that send
        # "execution_success" send it a moment earlier, so look a few times.
        for _ in range(100):
            history = await self._get_json(f"/history/{prompt_id}", "/history")
            entry = history.get(prompt_id)
            if isinstance(entry, dict):
                status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
                if status.get("status_str") == "error":
                    raise RunFailed(self.url, "the run ended in an error (see the server's log)")
                if isinstance(entry.get("outputs"), dict):
                    return entry["outputs"]
            await asyncio.sleep(0.1)
        raise RunFailed(self.url, "the run ended but /history has no outputs for it")

    async def images(self, refs: list[ImageRef], size: tuple[int, int], stall: float = STALL) -> list[np.ndarray]:
        """The images behind ``refs`` as (H, W, 3) uint8 arrays, each checked to be a PNG of
        ``size``; RunFailed when one takes longer than ``stall`` seconds."""
        out = []
        for ref in refs:
            try:
                data = await asyncio.wait_for(self._get("/view", "an image", params=dataclasses.asdict(ref), limit=MAX_IMAGE), stall)
            except asyncio.TimeoutError:
                raise RunFailed(self.url, f"/view sent no whole image in {stall:g} s (stalled; see --stall-timeout)") from None
            out.append(decode_png(self.url, data, size))
        return out

    async def _forget(self, prompt_id: str) -> None:
        """Take a prompt of ours off the queue, or stop it if it runs (best effort, a few seconds;
        /interrupt with a prompt_id stops only that prompt, ComfyUI 0.3.75 server.py)."""

        async def post_both():
            for path, body in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
                async with self.session.post(self.url + path, json=body, allow_redirects=False) as r:
                    await r.read()

        try:
            await asyncio.wait_for(post_both(), 5)
        except TRANSPORT_ERRORS:
            pass
