"""The training loop: a new adapter on a ComfyUI FLUX model, AdamW (or Prodigy), the cosine
schedule, optional clipping, saves in the pack's checkpoint format, resumable.

Memory (spec bokeh-training.md 1.6): the base model stays as loaded (bf16 on a GPU), the adapter,
its gradients and the optimiser state are float32 on the model's device; block checkpointing on
by default; text encodings and photo latents are computed once (training/batches.py).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from ..attention.errors import BokehInputError
from ..attention.families import flux_blocks
from .adapter_io import new_adapter, save_adapter
from .batches import BatchMaker
from .binding import bind_for_training
from .recipe import Recipe, lr_multiplier
from .step import adapter_loss

log = logging.getLogger(__name__)

STATE_SUFFIX = ".state"  # resume file beside the adapter; not an adapter suffix, so never listed as one
FORMAT = 1


def make_optimizer(params, recipe: Recipe):
    if recipe.optimizer == "prodigy":
        try:
            from prodigyopt import Prodigy
        except ImportError:
            raise BokehInputError("The Prodigy optimiser needs the optional package prodigyopt (pip install prodigyopt "
                                  "in ComfyUI's Python), or choose adamw.") from None
        # The authors' settings (spec 1.6); the rest are the library's defaults.
        return Prodigy(params, lr=recipe.learning_rate(), weight_decay=recipe.weight_decay,
                       use_bias_correction=True, safeguard_warmup=True)
    return torch.optim.AdamW(params, lr=recipe.learning_rate(), weight_decay=recipe.weight_decay)


class Trainer:
    """Train a Bokeh adapter. ``model``: a FLUX ModelPatcher (FLUX.1 Kontext for the photo
    flavour, FLUX.1-dev for text); ``vae``, ``clip``: ComfyUI's VAE and text encoder;
    ``samples``: training/data.py Samples; ``base``: the base model's name for the metadata."""

    def __init__(self, model, vae, clip, samples, recipe: Recipe, base: str = "", render=None):
        self.recipe = recipe.check()
        self.base = base
        n_double, n_single, hidden = flux_blocks(model)
        self.adapter = new_adapter(hidden, range(n_double + n_single), rank=recipe.rank, context=recipe.context,
                                   embed_hidden=recipe.embed_hidden, alpha=recipe.alpha, flavour=recipe.flavour,
                                   seed=recipe.seed, device=model.load_device)
        self.model = bind_for_training(model, self.adapter)
        self.maker = BatchMaker(samples, vae, clip, model, recipe, render)
        self.generator = torch.Generator().manual_seed(recipe.seed + 1)
        self.params = [p for p in self.adapter.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, recipe)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_multiplier(s, recipe.warmup, recipe.steps, recipe.schedule_speed))
        self.step = 0
        self.losses: list[float] = []
        self.kinds: list[str] = []

    def train_step(self) -> float:
        """One optimiser step on a freshly drawn batch; returns its loss."""
        r = self.recipe
        # ComfyUI runs nodes under inference mode; tensors made there cannot enter autograd.
        with torch.inference_mode(False), torch.enable_grad():
            batch = self.maker.make(self.generator, step=self.step)
            loss = adapter_loss(self.model, self.adapter, batch, r.gradient_checkpointing)
            if not torch.isfinite(loss):
                raise BokehInputError(f"Training step {self.step + 1}: the loss is {float(loss)}; lower the learning rate "
                                      "or check the data.")
            loss.backward()
            if r.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.params, r.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.losses.append(float(loss.detach()))
        self.kinds.append(batch.extra.get("kind", ""))
        return self.losses[-1]

    def run(self, out: Path | None = None, progress=None, until: int | None = None) -> Path | None:
        """Train up to ``until`` (default: the recipe's steps), saving to ``out`` every
        ``save_every`` steps and at the end. ``progress(step, total, loss)`` after each step."""
        total = min(self.recipe.steps, until or self.recipe.steps)
        start = time.monotonic()
        while self.step < total:
            loss = self.train_step()
            if progress is not None:
                progress(self.step, total, loss)
            if self.step % 50 == 0 or self.step == total:
                log.info("bokeh training step %d/%d loss %.5f (%.2f s/step)", self.step, total, loss,
                         (time.monotonic() - start) / max(1, self.step))
            if out is not None and self.recipe.save_every and self.step % self.recipe.save_every == 0 and self.step < total:
                self.save(out)
        return self.save(out) if out is not None else None

    # -- files ---------------------------------------------------------------------------
    def metadata(self) -> dict:
        return {"format": FORMAT, "base": self.base, "steps": self.step, "flavour": self.recipe.flavour,
                "recipe": self.recipe.as_dict(), "trainer": "BokehDepth recipe (bokeh-training.md), Bokeh Diffusion for ComfyUI"}

    def save(self, out) -> Path:
        """The adapter (pack format, .safetensors) and its resume state (``<out>.state``)."""
        out = Path(out)
        save_adapter(self.adapter, out, self.metadata())
        state = {
            "format": FORMAT, "step": self.step, "losses": torch.tensor(self.losses, dtype=torch.float64),
            "adapter": {k: v.detach().cpu() for k, v in self.adapter.state_dict().items()},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(), "recipe": self.recipe.as_dict(),
            "schedule": self.maker.schedule if self.maker.schedule is not None else torch.zeros(0, dtype=torch.int8),
        }
        tmp = out.with_name(out.name + STATE_SUFFIX + ".tmp")
        torch.save(state, tmp)
        tmp.replace(out.with_name(out.name + STATE_SUFFIX))
        log.info("Saved Bokeh adapter %s (step %d)", out.name, self.step)
        return out

    def resume(self, out) -> None:
        """Continue from the state saved beside ``out``: weights, optimiser, schedule, RNG, losses.
        The recipe must be the one the state was made with (steps may grow)."""
        path = Path(out).with_name(Path(out).name + STATE_SUFFIX)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise BokehInputError(f"No training state {path.name} to resume from; start without resume.") from None
        except Exception:  # the restricted unpickler refuses anything but plain data
            raise BokehInputError(f"{path.name} is not a training state this trainer wrote; start without resume.") from None
        saved = dict(state.get("recipe", {}))
        mine = self.recipe.as_dict()
        differ = sorted(k for k in mine if k != "steps" and saved.get(k) != mine[k])
        if differ:
            raise BokehInputError(f"{path.name} was trained with other settings ({', '.join(differ)}); resume with the same settings.")
        device = next(self.adapter.parameters()).device
        self.adapter.load_state_dict({k: v.to(device) for k, v in state["adapter"].items()})
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        schedule = state.get("schedule")  # this epoch's I2I/T2I steps (recipe i2i_mix "epoch")
        self.maker.schedule = schedule if schedule is not None and len(schedule) else None
        self.step = int(state["step"])
        self.losses = [float(v) for v in state["losses"]]
