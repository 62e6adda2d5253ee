"""Headscope's models, in PyTorch. Nothing here imports app/: the web layer depends on this, never back."""
