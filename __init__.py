"""ComfyUI entry point: the repository root is the node pack.

Only relative imports here: inside ComfyUI a top-level module named ``nodes`` is
ComfyUI's own, so our nodes package must be reached as ``<pack>.nodes``.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
