"""Kinetograph ComfyUI nodes: thin adapters over ``pipelines``.

The node classes arrive with the ComfyUI issue; until then the pack loads and
registers nothing, so ComfyUI starts cleanly with it installed.
"""
NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
