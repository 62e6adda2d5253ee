"""Headscope in a Jupyter notebook, with no server: `from headscope.notebook import show, analyze`."""

from headscope.notebook.show import Result, View, analyze, show

__all__ = ["Result", "View", "analyze", "show"]
