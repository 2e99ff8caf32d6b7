"""Train Bokeh Adapter: the trainer of training/ (the headless command's: the same Trainer, recipe,
batches and step) on the MODEL, CLIP and VAE of the graph, with a progress bar, interrupts, a
loss plot, and the adapter saved into models/bokeh_diffusion and handed on as Load Bokeh Adapter
would load it."""

from __future__ import annotations

import csv
import json
import os
import re

import torch
from comfy_api.latest import io

from ..attention.bokeh import PHOTO, TEXT
from ..attention.errors import BokehError, BokehInputError
from ..sweep.plot import loss_plot
from ..training.host import release, trainable
from ..training.recipe import OPTIMIZERS, Recipe
from ..training.trainer import STATE_SUFFIX, Trainer
from ..weights.folder import FOLDER, load_named
from .common import ADVANCED, CATEGORY, BokehAdapterType, BokehTrainingDataType, search_aliases, show_on_node

FLAVOURS = {"photo (FLUX.1 Kontext)": PHOTO, "text-to-image (FLUX.1-dev)": TEXT}
STOP, OVERWRITE, RESUME = "stop", "overwrite", "resume"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,95}")
SUFFIX = ".safetensors"
# Set by the node's own inputs, so not in Settings.
OWN = ("flavour", "steps", "lr", "rank", "batch_size", "optimizer", "seed", "gradient_checkpointing")


def adapter_file_name(name) -> str:
    """The adapter's file name in models/bokeh_diffusion: letters, digits, space, '.', '_', '-'
    (no path), '.safetensors' added when missing."""
    text = name.strip() if isinstance(name, str) else ""
    if text.lower().endswith(SUFFIX):
        text = text[: -len(SUFFIX)]
    if not NAME.fullmatch(text) or ".." in text:
        shown = "".join(c if c.isprintable() else "?" for c in str(name))[:60]
        raise BokehInputError(f"File Name {shown!r}: expected a plain file name (letters, digits, space, '.', '_', '-'; "
                              "no folders, at most 96 characters), e.g. my_bokeh. It is saved in models/bokeh_diffusion.")
    return text + SUFFIX


def parse_settings(text: str) -> dict:
    """Extra recipe settings, one NAME=VALUE a line (JSON values, as bokeh_train.py's --set)."""
    out = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name:
            raise BokehInputError(f"Settings line {line[:40]!r}: expected NAME=VALUE, e.g. max_grad_norm=1.0.")
        if name in OWN:
            raise BokehInputError(f"Settings: {name} is an input of the node; set it there.")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value.strip()
    return out


class BokehTrainAdapter(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BokehTrainAdapter",
            display_name="Train Bokeh Adapter",
            category=f"{CATEGORY}/training",
            **search_aliases("train", "training", "lora", "fine-tune"),
            description="Trains a new Bokeh adapter on this FLUX model with the BokehDepth / Bokeh Diffusion recipe "
            "(rendered bokeh from sharp photos with depth, real photos with K, grounded groups), saves it in "
            "models/bokeh_diffusion and outputs it for Apply Bokeh Adapter. Settings not on the node follow the "
            "authors' recipe.",
            is_output_node=True,
            inputs=[
                io.Model.Input("model", display_name="Model", tooltip="FLUX.1 Kontext (photo adapter) or FLUX.1-dev "
                               "(text-to-image adapter), as loaded; it stays frozen and unchanged."),
                io.Clip.Input("clip", display_name="CLIP", tooltip="The FLUX text encoders (T5-XXL + CLIP-L, DualCLIPLoader "
                              "type flux): every caption is encoded once."),
                io.Vae.Input("vae", display_name="VAE", tooltip="The FLUX VAE: photos and renders are encoded once."),
                BokehTrainingDataType.Input("training_data", display_name="Training Data", tooltip="From Bokeh Training Data."),
                io.Combo.Input("flavour", display_name="Adapter", options=list(FLAVOURS), default=next(iter(FLAVOURS)),
                               tooltip="Photo: BokehDepth's adapter for FLUX.1 Kontext (image-to-image and text-to-image "
                               "steps). Text-to-image: Bokeh Diffusion's adapter for FLUX.1-dev."),
                io.Int.Input("steps", display_name="Steps", default=1000, min=1, max=1_000_000,
                             tooltip="Optimiser steps."),
                io.Float.Input("learning_rate", display_name="Learning Rate", default=1e-4, min=1e-7, max=10.0, step=1e-7,
                               tooltip="AdamW: 1e-4 (the recipe's default). Prodigy finds its own rate: use 1.0."),
                io.Int.Input("rank", display_name="Rank", default=128, min=1, max=1024,
                             tooltip="Rank of the query/key/value updates (the authors: 128)."),
                io.Int.Input("batch_size", display_name="Batch Size", default=4, min=1, max=64,
                             tooltip="Rows per batch (the authors: 4; a grounded group has 4 rows too)."),
                io.Int.Input("seed", display_name="Seed", default=0, min=0, max=2**31 - 1,
                             tooltip="Seeds the adapter's initial weights and every random draw: the same seed and "
                             "data give the same training."),
                io.String.Input("file_name", display_name="File Name", default="my_bokeh",
                                tooltip="Saved as models/bokeh_diffusion/<name>.safetensors, with its resume state "
                                "(.state) and loss log (.loss.csv) beside it."),
                io.Combo.Input("if_exists", display_name="If File Exists", options=[STOP, OVERWRITE, RESUME], default=STOP,
                               tooltip="stop: refuse to replace a file; overwrite: train anew and replace it; resume: "
                               "continue its training (same settings; Steps is the new total)."),
                io.Combo.Input("optimizer", display_name="Optimizer", options=list(OPTIMIZERS), default=OPTIMIZERS[0], **ADVANCED,
                               tooltip="AdamW, or Prodigy (the authors'; needs pip install prodigyopt)."),
                io.Boolean.Input("gradient_checkpointing", display_name="Gradient Checkpointing", default=True, **ADVANCED,
                                 tooltip="Recompute each block in the backward pass: much less memory for activations, longer steps (1.7x on the tiny CPU benchmark)."),
                io.String.Input("settings", display_name="Settings", default="", multiline=True, optional=True, **ADVANCED,
                                tooltip="Other recipe settings, one NAME=VALUE a line (see the README's Training section), "
                                "e.g. max_grad_norm=1.0, k_levels=8, flat_focus=image. Empty: the authors' recipe."),
            ],
            outputs=[
                BokehAdapterType.Output(display_name="Bokeh Adapter", tooltip="The trained adapter, as Load Bokeh Adapter "
                                        "loads the saved file: connect it to Apply Bokeh Adapter."),
                io.Image.Output(display_name="Loss Plot", tooltip="The training loss per step and its running mean."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, file_name=None, settings=None) -> bool | str:
        try:  # at queue time; linked values are checked when the node runs
            if isinstance(file_name, str):
                adapter_file_name(file_name)
            if isinstance(settings, str):
                parse_settings(settings)
        except BokehError as e:
            return str(e)
        return True

    @classmethod
    def execute(cls, model, clip, vae, training_data, flavour, steps, learning_rate, rank, batch_size, seed, file_name,
                if_exists=STOP, optimizer="adamw", gradient_checkpointing=True, settings="") -> io.NodeOutput:
        return io.NodeOutput(*train(cls, model, clip, vae, training_data, flavour, steps, learning_rate, rank, batch_size,
                                    seed, file_name, if_exists, optimizer, gradient_checkpointing, settings))


def target_path(name: str, if_exists: str):
    import folder_paths

    out = os.path.join(folder_paths.get_folder_paths(FOLDER)[0], name)
    exists = os.path.exists(out)
    if if_exists not in (STOP, OVERWRITE, RESUME):
        raise BokehInputError(f"If File Exists {if_exists!r}: expected {STOP}, {OVERWRITE} or {RESUME}.")
    if exists and if_exists == STOP:
        raise BokehInputError(f"models/bokeh_diffusion/{name} exists. Choose another File Name, or set If File Exists "
                              "to overwrite (train anew) or resume (continue it).")
    if if_exists == RESUME and not os.path.exists(out + STATE_SUFFIX):
        raise BokehInputError(f"No training state {name}{STATE_SUFFIX} to resume from; set If File Exists to stop or overwrite.")
    return out


def make_recipe(flavour, steps, learning_rate, rank, batch_size, seed, optimizer, gradient_checkpointing, extra) -> Recipe:
    if flavour not in FLAVOURS:
        raise BokehInputError(f"Adapter {flavour!r}: expected one of {', '.join(FLAVOURS)}.")
    values = {"flavour": FLAVOURS[flavour], "steps": int(steps), "lr": float(learning_rate), "rank": int(rank),
              "batch_size": int(batch_size), "seed": int(seed), "optimizer": optimizer,
              "gradient_checkpointing": bool(gradient_checkpointing)}
    return Recipe.from_dict({**values, **parse_settings(extra)})


def train(cls, model, clip, vae, samples, flavour, steps, learning_rate, rank, batch_size, seed, name, if_exists,
          optimizer, gradient_checkpointing, extra):
    import comfy.model_management as mm
    import comfy.utils

    name = adapter_file_name(name)
    if not isinstance(samples, list) or not samples:
        raise BokehInputError("Training Data is empty; connect Bokeh Training Data.")
    recipe = make_recipe(flavour, steps, learning_rate, rank, batch_size, seed, optimizer, gradient_checkpointing, extra)
    out = target_path(name, if_exists)
    mm.throw_exception_if_processing_interrupted()
    with torch.inference_mode(False):  # the executor runs nodes in inference mode; training needs autograd
        model, _ = trainable(model)
        base = type(getattr(model.model, "model_config", model.model)).__name__
        trainer = Trainer(model, vae, clip, samples, recipe, base=f"ComfyUI {base}")
        try:
            if if_exists == RESUME:
                trainer.resume(out)
            bar = comfy.utils.ProgressBar(recipe.steps)
            bar.update_absolute(trainer.step, recipe.steps)
            rows = []

            def progress(step, total, loss):
                rows.append([step, f"{loss:.6f}", trainer.kinds[-1], f"{trainer.scheduler.get_last_lr()[0]:.3g}"])
                bar.update_absolute(step, total)
                mm.throw_exception_if_processing_interrupted()

            trainer.run(out=out, progress=progress)
        finally:
            release(trainer.model)
    write_log(out, rows, fresh=if_exists != RESUME)
    losses = trainer.losses
    show_on_node(cls, f"{name}: {trainer.step} steps, last loss {losses[-1]:.4f}")
    plot = loss_plot(losses, f"{name}: loss over {trainer.step} steps")
    return load_named(name), plot


def write_log(out: str, rows: list, fresh: bool) -> None:
    """The loss log beside the adapter, with bokeh_train.py's columns (appended when resuming)."""
    path = out + ".loss.csv"
    with open(path, "w" if fresh else "a", newline="") as f:
        writer = csv.writer(f)
        if f.tell() == 0:
            writer.writerow(["step", "loss", "batch", "lr"])
        writer.writerows(rows)
