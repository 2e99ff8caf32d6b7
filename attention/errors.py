"""Typed errors. Each message names what was found, what was expected, and what to do."""


class BokehError(Exception):
    """Base of every error this pack raises on purpose."""


class BokehAdapterError(BokehError):
    """The adapter file is missing, unreadable, pickled, of another kind, or damaged."""


class BokehModelError(BokehError):
    """The model the adapter is applied to is not a FLUX model that fits the adapter."""


class BokehInputError(BokehError):
    """A node input (blur level, list, latent, image) is empty, malformed, NaN or out of range."""


class BokehHostError(BokehError):
    """The running ComfyUI lacks something this pack needs."""


class BokehConflictError(BokehError):
    """Another node on the model's path stops the adapter from working (e.g. replaces FLUX's forward)."""
