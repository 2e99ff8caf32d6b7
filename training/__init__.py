"""The trainer and its bokeh synthesis (shared/spec/bokeh-training.md). Importing this package
does nothing: each module is imported where it is used."""
