"""ComfyUI entry point: the repository root is the node pack.

Only relative imports here: inside ComfyUI a top-level module named ``nodes`` is
ComfyUI's own, so our nodes package must be reached as ``<pack>.nodes``.
"""
if __package__:  # loaded by ComfyUI as a package
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:  # read as a plain file (pytest collecting from a checkout whose folder name is no identifier)
    NODE_CLASS_MAPPINGS: dict = {}
    NODE_DISPLAY_NAME_MAPPINGS: dict = {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
