"""The repository root loads as a ComfyUI custom-node pack (as ComfyUI imports it)."""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_root_imports_as_a_package_without_touching_a_top_level_nodes_module():
    sys.modules.pop("nodes", None)
    spec = importlib.util.spec_from_file_location("kinetograph_pack", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["kinetograph_pack"] = pack
    try:
        spec.loader.exec_module(pack)
        assert isinstance(pack.NODE_CLASS_MAPPINGS, dict)
        assert isinstance(pack.NODE_DISPLAY_NAME_MAPPINGS, dict)
        assert "kinetograph_pack.nodes" in sys.modules
        assert "nodes" not in sys.modules  # ComfyUI's own top-level `nodes` must stay free
    finally:
        for name in [n for n in sys.modules if n == "kinetograph_pack" or n.startswith("kinetograph_pack.")]:
            del sys.modules[name]
