"""What a sweep shared out over servers writes (runner/shard.py): the whole sweep as a local
run writes it, or, when stopped, the finished shards as a labelled partial sweep; and the check
that the shards' pivots are the same image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import files as sweep_files

# Largest mean |difference| between two shards' pivots, in 0..255 levels, still taken as the
# same image: the same models give 0 on CPU (measured, tests/test_shard.py); a GPU may round
# differently per batch size. Other models or adapters differ by tens of levels.
PIVOT_TOLERANCE = 2.0


def pivot_diffs(done: dict) -> dict:
    """shard index -> (largest, mean) |difference| of its pivot from the first finished shard's, 0..255."""
    first = min(done)
    ref = done[first][2][0].astype(np.int16)
    out = {}
    for index in sorted(done):
        diff = np.abs(done[index][2][0].astype(np.int16) - ref)
        out[index] = (float(diff.max()), float(diff.mean()))
    return out


def write_partial(out_dir: Path, state) -> str:
    """A stopped sweep's finished shards, written as partial_*.png (K in the name) with
    partial.txt saying what is missing; returns what to tell the user. Shards whose pivot is not
    the first finished shard's are left out, as a whole sweep would refuse them."""
    from PIL import Image

    if not state.done:
        return "No shard was finished; nothing is written."
    diffs = pivot_diffs(state.done)
    kept = [i for i in sorted(state.done) if diffs[i][1] <= PIVOT_TOLERANCE]
    first = state.done[kept[0]]
    rows = [(state.graph.pivot_k, "pivot", first[2][0])]
    rows += [(k, "", img) for i in kept for k, img in zip(state.shards[i].levels, state.done[i][2][1:])]
    missing = [k for s in state.shards if s.index not in kept for k in s.levels]
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for n, (k, role, image) in enumerate(rows):
        names.append(sweep_files.image_name("partial", n, k, role == "pivot"))
        Image.fromarray(image).save(out_dir / names[-1])
    note = (f"A PARTIAL sweep: it was stopped before every shard was rendered.\nRendered: K {', '.join(f'{k:g}' for k, _, _ in rows[1:])} "
            f"and the pivot (K {state.graph.pivot_k:g}).\nNot rendered: K {', '.join(f'{k:g}' for k in missing) or '-'}.\n")
    (out_dir / "partial.txt").write_text(note)
    return (f"Kept the finished shards: {len(rows) - 1} of {len(rows) - 1 + len(missing)} targets and the pivot, written to "
            f"{out_dir} as partial_*.png (see partial.txt); not rendered: K {', '.join(f'{k:g}' for k in missing) or '-'}.")


def write_outputs(out_dir: Path, graph, result, prompts: list[dict], note: str = "") -> None:
    """The whole sweep, written as a local run writes it (runner/files.py write_sweep): the images
    are the servers' 8-bit PNGs, the pivot first."""
    names, result.report = sweep_files.write_sweep(out_dir, result.images, result.ks, 0, graph.prefixes, graph.columns,
                                                   note, prompts)
    result.files += names
