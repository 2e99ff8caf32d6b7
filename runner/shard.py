"""A blur sweep shared out over several running ComfyUI servers (scripts/bokeh_sweep.py --servers).

Why shards give the single batch's images: a grounded sweep renders [pivot, target 1..N] from
one seed's noise (every row the same noise, nodes/pivot.py); each target attends to itself and
the pivot, the pivot to itself only. So [pivot, some targets] rendered anywhere gives the same
pivot and the same images for those targets. The targets are cut into shards of balanced size
(one per server), each shard goes to a server as the bundled graph cut to what renders the
images (runner/client.py: HTTP API and websocket), and the whole sweep is assembled here:
the pivot once, every target once, the contact sheet and the blur report of the whole sweep.

Faults: a server that is down, lacks the pack, a node type or a model (it refuses the graph),
or fails mid-run is reported by name with the reason and leaves the pool; its shard goes back
to the queue for the servers left. A shard is tried at most once per server, and finished
shards are kept. The sweep fails only when no server is left for the work, or when the shards'
pivots differ (the servers do not run the same models or versions): it is not mixed.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import logging
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
from ..attention.errors import BokehError
from ..sweep import levels as sweep_levels
from . import client as comfy_client
from . import files as sweep_files
from . import workflow_api
from .client import ComfyServer, ServerError
from .shard_files import PIVOT_TOLERANCE, pivot_diffs, write_outputs, write_partial  # noqa: F401 (part of this module's API)

log = logging.getLogger(__name__)


class SweepError(Exception):
    """The sweep cannot be made; the message says why and what to do."""


class NoServerLeft(SweepError):
    """Every server is down, unfit or failed, and work is left. ``exit_code`` 2 when every
    server lacks model files (the user's to add, as a local run's missing files), else 1."""

    exit_code = 1


class MissingModels(SweepError):
    """A server lacks model files the sweep names: [(file name, model folder)]."""

    def __init__(self, missing: list):
        self.missing = missing
        super().__init__("; ".join(f"{name} (in models/{folder})" for name, folder in missing))

    def lines(self) -> str:
        from .model_files import where_to_get

        return "\n".join(f"    {name}\n        goes in: models/{folder} on that server (or a folder of its "
                         f"extra_model_paths.yaml), then restart it or refresh its model lists\n"
                         f"        get it: {where_to_get(name, folder)}" for name, folder in self.missing)


class PivotMismatch(SweepError):
    """The shards' pivots differ: their servers do not run the same models or versions."""


def split(levels: list[float], servers: int, most: int) -> list[list[float]]:
    """The targets in order, cut into shards whose sizes differ by one at most: one per server
    (fewer with fewer targets), more when a shard would hold more than ``most`` targets."""
    count = max(min(servers, len(levels)), math.ceil(len(levels) / most))
    size, extra = divmod(len(levels), count)
    shards, start = [], 0
    for i in range(count):
        end = start + size + (i < extra)
        shards.append(levels[start:end])
        start = end
    return shards


def _file_prefix(prefix) -> str:
    """SaveImage's filename_prefix as the local runner uses it (the last part), safe as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(prefix).split("/")[-1]) or "sweep"


@dataclasses.dataclass
class SweepGraph:
    """The whole sweep's API prompt, and what the runner reads and changes in it."""

    prompt: dict
    pivot_node: str
    sampler: str
    match: str  # Bokeh Colour Match: its images are the sweep
    sink: str  # the node id each shard shows its images at
    pivot_k: float
    levels: list[float]
    steps: int
    size: tuple[int, int]  # (W, H) of the decoded images
    columns: int
    prefixes: dict  # "sweep" / "sheet" -> file name prefix

    @classmethod
    def of(cls, prompt: dict) -> "SweepGraph":
        def one(kind):
            keys = workflow_api.find(prompt, kind)
            if len(keys) != 1:
                raise SweepError(f"the sweep graph has {len(keys)} {kind} nodes; expected one")
            return keys[0]

        pivot, sampler, match, latent, sheet = (one(k) for k in (
            "BokehPivotBatch", "KSampler", "BokehColorMatch", "EmptySD3LatentImage", "BokehContactSheet"))
        inputs = prompt[pivot]["inputs"]
        if "target_levels" in inputs:
            raise SweepError("the sweep graph links Target Levels into Bokeh Pivot Batch; --servers shards the Targets text")
        try:
            levels = sweep_levels.parse_levels(str(inputs["targets"]), "targets")
        except BokehError as e:
            raise SweepError(str(e)) from None
        if not levels:
            raise SweepError("--targets lists no blur level; e.g. --targets '0, 4, 8, 12, 18, 28'")
        savers = {tuple(n["inputs"].get("images", ())): n["inputs"].get("filename_prefix", "")
                  for k, n in prompt.items() if n["class_type"] == "SaveImage"}
        width, height = (int(prompt[latent]["inputs"][k]) for k in ("width", "height"))
        return cls(
            prompt=prompt, pivot_node=pivot, sampler=sampler, match=match,
            sink=str(1 + max((int(k) for k in prompt if k.isdigit()), default=0)),
            pivot_k=float(inputs["pivot_blur"]), levels=levels, steps=int(prompt[sampler]["inputs"]["steps"]),
            size=(width // 8 * 8, height // 8 * 8),  # EmptySD3LatentImage: a latent of side // 8; the VAE makes 8x
            columns=int(prompt[sheet]["inputs"].get("columns", 0)),
            prefixes={"sweep": _file_prefix(savers.get((match, 0), "sweep")), "sheet": _file_prefix(savers.get((sheet, 0), "sheet"))})

    def shard(self, levels: list[float]) -> dict:
        """The graph of one shard: [pivot, ``levels``], cut to what renders the colour-matched
        images, shown by a PreviewImage (server temp folder) instead of saved on the server."""
        keep, todo = set(), [self.match]
        while todo:
            key = todo.pop()
            if key not in keep:
                keep.add(key)
                todo += [v[0] for v in self.prompt[key]["inputs"].values()
                         if isinstance(v, list) and len(v) == 2 and v[0] in self.prompt]
        prompt = {k: copy.deepcopy(self.prompt[k]) for k in keep}
        # repr() of a float reads back as the same float: the shard's K are the sweep's K exactly.
        prompt[self.pivot_node]["inputs"]["targets"] = ", ".join(repr(float(k)) for k in levels)
        prompt[self.sink] = {"class_type": "PreviewImage", "inputs": {"images": [self.match, 0]}}
        return prompt


@dataclasses.dataclass
class Shard:
    index: int
    levels: list[float]

    def __str__(self):
        return f"shard {self.index + 1} (K {', '.join(f'{k:g}' for k in self.levels)})"


@dataclasses.dataclass
class SweepResult:
    ks: list[float]  # K per row, the pivot first
    images: np.ndarray  # (rows, H, W, 3) uint8, the pivot first
    shards: list[Shard]
    rendered_by: dict  # shard index -> server URL
    faults: dict  # server URL -> why it left the pool
    pivot_diff: tuple[float, float]  # (largest, mean) |difference| of a shard's pivot from shard 1's, 0..255
    report: str = ""
    files: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0


async def _probe(servers: list[ComfyServer], build_prompt, stall: float):
    """The servers that can render the sweep, the sweep graph (built from the first one's node
    definitions), and why each other server cannot. A node list is a few MB at most and comes at
    once, so a server gets ``stall`` seconds but at most a minute for it."""
    answers = await asyncio.gather(*(s.node_defs(min(stall, 60.0)) for s in servers), return_exceptions=True)
    fit, faults, graph, missing = [], {}, None, {}
    for server, defs in zip(servers, answers):
        if isinstance(defs, ServerError):
            faults[server.url] = defs.reason
            continue
        if isinstance(defs, BaseException):
            raise defs
        if "BokehPivotBatch" not in defs:
            faults[server.url] = ("the Bokeh Diffusion pack is not installed there (no BokehPivotBatch node): "
                                  "clone it into that ComfyUI's custom_nodes and restart it")
            continue
        try:
            prompt = build_prompt(defs)
        except workflow_api.WorkflowError as e:
            faults[server.url] = f"cannot build the sweep graph from its nodes: {e}"
            continue
        except MissingModels as e:
            faults[server.url] = f"lacks the model file{'s' if len(e.missing) > 1 else ''} {e}"
            missing[server.url] = e
            continue
        missing = sorted({n["class_type"] for n in prompt.values()} - defs.keys())
        if missing:
            test_only = " (the test-only tiny nodes that --check needs)" if any(m.startswith("BokehTest") for m in missing) else ""
            faults[server.url] = f"it has no {', '.join(missing)} node{test_only}"
            continue
        graph = graph or SweepGraph.of(prompt)
        fit.append(server)
    if fit:
        for url, reason in faults.items():
            log.warning("%s: %s. Left out.", url, reason)
    return graph, fit, faults, missing


async def _render(servers, graph: SweepGraph, shards: list[Shard], faults: dict, on_event, bar, done: dict, stall: float) -> dict:
    """Each server takes shards from one queue until none is left; a server that fails or stalls
    (no progress for ``stall`` s) leaves, its shard goes back to the front of the queue. Fills
    ``done``: shard index -> (server, prompt, images), kept when the sweep is stopped."""
    pending, progress = collections.deque(shards), [0] * len(shards)
    changed = asyncio.Condition()
    running = 0

    def show():
        bar.n = sum(progress)
        bar.set_postfix_str(f"{len(done)}/{len(shards)} shards done", refresh=False)
        bar.refresh()

    def event(kind, url, shard):
        if on_event is not None:
            on_event(kind, url, shard)

    async def work(server: ComfyServer):
        nonlocal running
        while True:
            async with changed:
                await changed.wait_for(lambda: pending or running == 0)
                if not pending:
                    return
                shard = pending.popleft()
                running += 1

            def watch(kind, data):
                if kind == "execution_start":
                    event("started", server.url, shard)
                elif kind == "progress" and str(data.get("node")) == graph.sampler and isinstance(data.get("value"), int):
                    progress[shard.index] = max(0, min(data["value"], graph.steps))
                    show()

            prompt = graph.shard(shard.levels)
            try:
                event("submitted", server.url, shard)
                outputs = await server.run(prompt, watch, stall)
                refs = comfy_client.image_refs(server.url, outputs, graph.sink, 1 + len(shard.levels))
                images = await server.images(refs, graph.size, stall)
            except ServerError as e:
                faults[server.url] = e.reason
                progress[shard.index] = 0
                show()
                log.warning("%s: %s. Its %s goes back to the queue.", server.url, e.reason, shard)
                event("failed", server.url, shard)
                async with changed:
                    pending.appendleft(shard)
                    running -= 1
                    changed.notify_all()
                return
            done[shard.index] = (server.url, prompt, images)
            progress[shard.index] = graph.steps + 1
            show()
            event("done", server.url, shard)
            async with changed:
                running -= 1
                changed.notify_all()

    tasks = [asyncio.ensure_future(work(s)) for s in servers]
    try:
        await asyncio.gather(*tasks)
    finally:  # stopped (Ctrl-C) or failed: gather gives up at the first task that ends so, the
        for task in tasks:  # others must still take their prompts off their servers before the
            task.cancel()  # session closes
        await asyncio.wait(tasks)
    if pending:
        lines = "\n".join(f"  {url}: {why}" for url, why in faults.items())
        raise NoServerLeft(f"no server can take the work: {len(pending)} of {len(shards)} shards are not rendered.\n{lines}\n"
                           "See the reason for each server above (each needs this pack and the same models), and run again.")
    return done


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


async def _pivot_check(done: dict, servers: dict) -> tuple[float, float]:
    """(largest, mean) |difference| of each shard's pivot from shard 1's; PivotMismatch when
    one is over PIVOT_TOLERANCE on average."""
    diffs = pivot_diffs(done)
    odd = [(i, largest, mean) for i, (largest, mean) in diffs.items() if mean > PIVOT_TOLERANCE]
    if odd:
        urls = sorted({done[i][0] for i in [0, *(i for i, _, _ in odd)]})
        about = dict(zip(urls, await asyncio.gather(*(servers[u].about() for u in urls))))
        lines = [f"  shard 1 on {done[0][0]} ({about[done[0][0]]}): the reference"]
        lines += [f"  shard {i + 1} on {done[i][0]} ({about[done[i][0]]}): differs by {mean:.1f}/255 on average, "
                  f"{largest:.0f}/255 at most" for i, largest, mean in odd]
        raise PivotMismatch("the shards' pivots differ, so their servers do not run the same models or versions; "
                            "the sweep is not assembled and nothing is written.\n" + "\n".join(lines) + "\n"
                            "Give every server the same model files, Bokeh adapter, pack version and ComfyUI, or leave "
                            "the odd one out of --servers.")
    return max(diffs.values())


@dataclasses.dataclass
class _Progress:
    """What a sweep has so far, kept when it is stopped (Ctrl-C): the graph, the shards and the
    finished ones (shard index -> (server, prompt, images))."""

    graph: SweepGraph | None = None
    shards: list = dataclasses.field(default_factory=list)
    done: dict = dataclasses.field(default_factory=dict)


async def _sweep(urls, build_prompt, on_event, progress, state: _Progress, stall: float) -> tuple[SweepGraph, SweepResult, dict]:
    import aiohttp
    from tqdm import tqdm

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as session:
        servers = [ComfyServer(u, session) for u in urls]
        graph, fit, faults, missing = await _probe(servers, build_prompt, stall)
        if not fit:
            lines = "\n".join(f"  {url}: " + (f"missing model files:\n{missing[url].lines()}" if url in missing else why)
                              for url, why in faults.items())
            error = NoServerLeft(f"no server can take the work:\n{lines}")
            error.exit_code = 2 if missing.keys() == faults.keys() else 1
            raise error
        most = sweep_levels.MAX_TARGETS
        shards = [Shard(i, levels) for i, levels in enumerate(split(graph.levels, len(fit), most))]
        state.graph, state.shards = graph, shards
        log.info("%s in %s on %s: %s", _count(len(graph.levels), "target"), _count(len(shards), "shard"),
                 _count(len(fit), "server"), "; ".join(str(s) for s in shards))
        # One step more per shard than the sampler's: its images fetched, so the bar is full only when
        # every shard is in.
        with tqdm(total=len(shards) * (graph.steps + 1), desc=f"sweep on {len(fit)} server{'s' if len(fit) > 1 else ''}", unit="step",
                  disable=not progress, file=sys.stderr) as bar:
            done = await _render(fit, graph, shards, faults, on_event, bar, state.done, stall)
        pivot_diff = await _pivot_check(done, {s.url: s for s in servers})
    images = np.stack([done[0][2][0]] + [img for i in range(len(shards)) for img in done[i][2][1:]])
    result = SweepResult(ks=[graph.pivot_k, *graph.levels], images=images, shards=shards,
                         rendered_by={i: done[i][0] for i in done}, faults=faults, pivot_diff=pivot_diff)
    prompts = [done[0][1]] + [done[i][1] for i in range(len(shards)) for _ in shards[i].levels]
    return graph, result, prompts


class Stopped(Exception):
    """The user stopped the sweep; ``message`` says what was finished and where it was written."""


def sweep(urls: list[str], build_prompt, out_dir, on_event=None, progress: bool = True,
          stall: float = comfy_client.STALL, note: str = "") -> SweepResult:
    """Render the sweep ``build_prompt(node definitions)`` makes over the servers at ``urls`` and
    write it to ``out_dir``. ``on_event(kind, url, shard)`` hears "submitted", "started", "done"
    and "failed" as they happen. A server whose run shows no progress for ``stall`` seconds
    leaves and its shard goes to another. Raises SweepError when the sweep cannot be made, and
    Stopped on Ctrl-C (the finished shards written as a partial sweep)."""
    start = time.monotonic()
    state = _Progress()
    try:
        graph, result, prompts = asyncio.run(_sweep(urls, build_prompt, on_event, progress, state, stall))
    except KeyboardInterrupt:  # asyncio.run cancelled the runs: each took its prompt off its server
        raise Stopped(write_partial(Path(out_dir), state)) from None
    write_outputs(Path(out_dir), graph, result, prompts, note)
    result.seconds = time.monotonic() - start
    return result


def main(args, build_prompt) -> int:
    """scripts/bokeh_sweep.py --servers: 0 when the sweep is written, 1 when it cannot be made,
    2 for a --servers list that is not one or when every server lacks model files, 130 on Ctrl-C."""
    try:
        urls = comfy_client.parse_servers(args.servers)
    except ValueError as e:
        print(f"--servers: {e}", file=sys.stderr)
        return 2
    out_dir = Path(args.output).resolve()
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():
            result = sweep(urls, build_prompt, out_dir, stall=args.stall_timeout,
                           note=sweep_files.CHECK_NOTE if args.check else "")
    except SweepError as e:
        print(f"The sweep failed: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    except Stopped as e:
        print(f"Stopped. The shards queued or running on the servers were taken off them. {e}", file=sys.stderr)
        return 130
    print(f"\nDone in {result.seconds:.1f} s. Wrote to {out_dir}:\n  " + "\n  ".join(result.files))
    print("Rendered: " + "; ".join(f"{s} on {result.rendered_by[s.index]}" for s in result.shards))
    largest, mean = result.pivot_diff
    print("Pivots of the shards: " + ("identical" if largest == 0 else f"within {largest:.0f}/255 (mean {mean:.2f}/255)"))
    if result.faults:
        print("Left out:\n  " + "\n  ".join(f"{url}: {why}" for url, why in result.faults.items()))
    print("\n" + result.report)
    return 0
