"""Headscope in a Jupyter notebook, with no server: `from headscope.notebook import show, analyze, ablate, importance,
patch, attribute`."""

from headscope.notebook.effects import ablate, importance
from headscope.notebook.patching import Attribution, Patching, attribute, patch
from headscope.notebook.show import Result, View, analyze, show

__all__ = ["Attribution", "Patching", "Result", "View", "ablate", "analyze", "attribute", "importance", "patch", "show"]
