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


def test_requirements_leave_comfyuis_torch_alone_and_hold_no_dev_tools():
    """requirements.txt is what ComfyUI installs into its own environment (issue 20)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    names = [re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
             for line in (root / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert names and not {"torch", "torchvision", "torchaudio"} & set(names)
    assert not {"pytest", "pytest-timeout", "ruff", "hypothesis", "scikit-image", "gradio"} & set(names)
    assert not any("==" in line for line in (root / "requirements.txt").read_text().splitlines()
                   if not line.lstrip().startswith("#"))  # ranges: other packs share these libraries
    pinned = {line.split("==")[0].lower().replace("_", "-") for line in (root / "constraints.txt").read_text().splitlines()
              if "==" in line}
    assert set(names) <= pinned and "torch" in pinned  # the standalone install stays reproducible
