"""Checkpoint format and model folder of the Bokeh adapter."""
