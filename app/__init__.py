"""Headscope's web layer: the FastAPI app (main.py), its JSON API (api.py) and page (pages.py)."""
