"""Bokeh Training Data: a training set from a sub-folder of ComfyUI's input directory, read by
training/data.py (the headless trainer's reader: the same files, rules and errors)."""

from __future__ import annotations

import os

from comfy_api.latest import io

from ..attention.errors import BokehInputError
from ..training import data
from .common import CATEGORY, BokehTrainingDataType, search_aliases, show_on_node

MANIFEST = "manifest.csv"  # a manifest with the authors' columns, read instead of the folder's files
SIZES = (16, 2048)
NOT_DATASETS = {"clipspace"}  # the mask editor's folder, left out as core's dataset nodes do


def dataset_folders() -> list[str]:
    """The sub-folders of ComfyUI's input directory (one level, no hidden ones): the only folders
    a client can choose, by name."""
    import folder_paths

    root = folder_paths.get_input_directory()
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return sorted(n for n in names if not n.startswith(".") and n not in NOT_DATASETS and os.path.isdir(os.path.join(root, n)))


def _shown(name) -> str:
    text = name if isinstance(name, str) else type(name).__name__
    text = "".join(c if c.isprintable() else "?" for c in text)
    return repr(text if len(text) <= 80 else text[:77] + "...")


def unlisted_folder(folder) -> str | None:
    """Why ``folder`` is not a dataset folder a client may use, or None."""
    if isinstance(folder, str) and folder in dataset_folders():
        return None
    return (f"Dataset folder {_shown(folder)} is not a sub-folder of ComfyUI's input folder. Put the training photos "
            "into a folder inside ComfyUI/input, refresh the page and pick it from the list.")


def read_dataset(folder: str, size: int) -> list:
    """The samples of the listed input sub-folder ``folder``: its ``manifest.csv`` (the authors'
    columns; paths must stay inside the folder) or else its images with their side files."""
    import folder_paths

    reason = unlisted_folder(folder)
    if reason is not None:
        raise BokehInputError(reason)
    if not (isinstance(size, int) and SIZES[0] <= size <= SIZES[1] and size % 16 == 0):
        raise BokehInputError(f"Size {size!r}: expected a multiple of 16 from {SIZES[0]} to {SIZES[1]} (512 as the authors).")
    path = os.path.join(folder_paths.get_input_directory(), folder)
    manifest = os.path.join(path, MANIFEST)
    if os.path.isfile(manifest):
        return data.from_manifest(manifest, size, inside=True)
    return data.from_folder(path, size)


class BokehTrainingData(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BokehTrainingData",
            display_name="Bokeh Training Data",
            category=f"{CATEGORY}/training",
            **search_aliases("dataset", "training data", "train"),
            description="Reads a training set for Train Bokeh Adapter from a folder inside ComfyUI/input: photos with "
            "captions (NAME.txt), depth maps (NAME.depth.npy) and subject masks (NAME.mask.png) for rendered bokeh, or "
            "defocused photos with K (NAME.k.txt or EXIF). A manifest.csv with the authors' columns is read instead "
            "when the folder has one.",
            inputs=[
                io.Combo.Input(
                    "folder", display_name="Folder", options=dataset_folders(),
                    tooltip="A folder inside ComfyUI/input (refresh the page after adding one). Beside each image NAME.png: "
                    "NAME.txt captions (one per line), NAME.depth.npy metric depth (larger = farther), NAME.mask.png "
                    "subject mask, NAME.k.txt the K of a defocused photo (else read from EXIF)."),
                io.Int.Input("size", display_name="Size", default=512, min=SIZES[0], max=SIZES[1], step=16,
                             tooltip="Square training size in pixels: the short side is scaled to it and the middle "
                             "cropped (the authors: 512)."),
            ],
            outputs=[BokehTrainingDataType.Output(display_name="Training Data",
                                                  tooltip="The samples, for Train Bokeh Adapter.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, folder, size=512) -> bool | str:
        # At queue time: only a folder of the listing is ever opened.
        return unlisted_folder(folder) or True

    @classmethod
    def fingerprint_inputs(cls, folder, size=512):
        # Files added to the folder change the data: re-read when the folder's listing changes.
        import folder_paths

        path = os.path.join(folder_paths.get_input_directory(), folder) if unlisted_folder(folder) is None else ""
        try:
            return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(path) if e.is_file()))
        except OSError:
            return float("nan")

    @classmethod
    def execute(cls, folder, size=512) -> io.NodeOutput:
        samples = read_dataset(folder, size)
        sharp, with_k = sum(s.sharp for s in samples), sum(s.k is not None for s in samples)
        show_on_node(cls, f"{len(samples)} samples: {sharp} sharp with depth, {with_k} with K")
        return io.NodeOutput(samples)
