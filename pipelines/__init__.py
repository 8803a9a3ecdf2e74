"""Kinetograph engine: no UI code, no ComfyUI imports.

Inside this package use relative imports only, so it works both as the top-level
``pipelines`` package (app.py, tests) and as ``<pack>.pipelines`` inside ComfyUI.
Heavy modules (torch, diffusers) are imported lazily by the modules that need them.
"""
from .errors import JobCancelled, KinetographError

__all__ = ["KinetographError", "JobCancelled"]
