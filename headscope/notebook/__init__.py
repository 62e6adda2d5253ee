"""Headscope in a Jupyter notebook, with no server: `from headscope.notebook import show, analyze, patch, attribute`."""

from headscope.notebook.patching import Attribution, Patching, attribute, patch
from headscope.notebook.show import Result, View, analyze, show

__all__ = ["Attribution", "Patching", "Result", "View", "analyze", "attribute", "patch", "show"]
