"""Kinetograph ComfyUI nodes: thin adapters over ``pipelines``.

Registered (V1 API, category "Kinetograph"):

* ``KinetographInterpolate`` ("Kinetograph: Interpolate Frames"): raise a frame batch's
  frame rate (factor or target fps, optional slow motion) with ``pipelines.interpolation``:
  the weight-free "flow" method, or "generative" (a first+last-frame video model).

Only relative imports: the pack is imported by ComfyUI under an arbitrary package name,
and a top-level ``nodes`` module is ComfyUI's own.
"""
from .interpolate import KinetographInterpolate

NODE_CLASS_MAPPINGS: dict[str, type] = {
    "KinetographInterpolate": KinetographInterpolate,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "KinetographInterpolate": "Kinetograph: Interpolate Frames",
}
