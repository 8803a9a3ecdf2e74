"""Importing the repository as ComfyUI does: the root folder as a package under an arbitrary name."""
from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def loaded_pack(name: str, nodes_module=None):
    """The pack imported as package ``name``; its modules are removed afterwards. ``nodes_module``:
    what the top-level ``nodes`` module is meanwhile (ComfyUI's own, or None: absent); the one that
    was there before is put back."""
    saved = sys.modules.pop("nodes", None)
    if nodes_module is not None:
        sys.modules["nodes"] = nodes_module
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        for loaded in [n for n in sys.modules if n == name or n.startswith(name + ".")]:
            del sys.modules[loaded]
        sys.modules.pop("nodes", None)
        if saved is not None:
            sys.modules["nodes"] = saved
