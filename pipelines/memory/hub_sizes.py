"""Plan any hub repo without downloading its weights: sizes from its safetensors headers.

``hub_sizes(repo_id)`` reads ``model_index.json`` and each component's ``config.json`` (small files, via
the normal HF cache) and the tensor headers of its ``.safetensors`` files over HTTP range requests
(``HfApi.parse_safetensors_file_metadata``, the per-file half of ``huggingface_hub.get_safetensors_metadata``:
that function only looks for ``model.safetensors`` at the repo's top level, while diffusers repos keep one
folder per component). The tensors are then grouped exactly as for a local folder (``sizes.measure_folder``).

Offline (``HF_HUB_OFFLINE=1`` or no network) it raises ``KinetographError`` saying what to do.
"""
from __future__ import annotations

import json
from typing import Any

from ..errors import KinetographError
from .sizes import _SAFETENSORS_DTYPES, ModelSizes, _assemble, _component_from_tensors, _numel, _role


def _api() -> Any:
    from huggingface_hub import HfApi

    return HfApi()


def _offline() -> bool:
    from ..models import hub_offline

    return hub_offline()


def _offline_error(repo_id: str, why: str) -> KinetographError:
    return KinetographError(
        f"Cannot read the sizes of {repo_id!r} from the Hugging Face hub ({why}). Planning a hub repo reads only "
        f"its configs and tensor headers, but needs the network: unset HF_HUB_OFFLINE and connect, or download "
        f"the model first (.venv/bin/hf download {repo_id}) and plan the local folder.")


def hub_sizes(repo_id: str, revision: str | None = None, token: str | bool | None = None) -> ModelSizes:
    """Component sizes of a diffusers repo on the hub, from its headers: no weight is downloaded."""
    if _offline():
        raise _offline_error(repo_id, "HF_HUB_OFFLINE is set")
    api = _api()
    try:
        files = api.list_repo_files(repo_id, revision=revision, token=token)
        if "model_index.json" not in files:
            raise KinetographError(f"{repo_id!r} is not a diffusers pipeline repo (no model_index.json); plan a "
                                   f"diffusers repo or a local diffusers folder.")
        index = _read_json(api, repo_id, "model_index.json", revision, token)
        components, configs = {}, {}
        for name, spec in index.items():
            if name.startswith("_") or not isinstance(spec, list):
                continue
            weights = sorted(f for f in files if f.startswith(f"{name}/") and f.endswith(".safetensors")
                             and f.count("/") == 1)
            if not weights:
                continue
            class_name = str(spec[1]) if len(spec) > 1 else ""
            config = _read_json(api, repo_id, f"{name}/config.json", revision, token) \
                if f"{name}/config.json" in files else {}
            configs[name] = (class_name, config)
            tensors: dict[str, tuple[str, int]] = {}
            largest = 0
            for filename in weights:
                meta = api.parse_safetensors_file_metadata(repo_id, filename, revision=revision, token=token)
                size = 0
                for key, info in meta.tensors.items():
                    dtype = _SAFETENSORS_DTYPES.get(info.dtype, "float32")
                    tensors[key] = (dtype, _numel(info.shape))
                    size += info.data_offsets[1] - info.data_offsets[0]
                largest = max(largest, size)
            components[name] = _component_from_tensors(name, _role(name, class_name), tensors, largest)
    except KinetographError:
        raise
    except Exception as exc:  # offline mode, no network, a private or missing repo
        raise _offline_error(repo_id, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}") \
            from exc
    return _assemble(repo_id, components, configs, source=f"hub {repo_id} (safetensors headers)")


def _read_json(api: Any, repo_id: str, filename: str, revision: str | None, token: Any) -> dict[str, Any]:
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(repo_id, filename, revision=revision, token=token)
    with open(path) as f:
        return json.load(f)


def plan_for_hub_repo(repo_id: str, shape: Any, device_facts: Any = None, budget_gb: float | None = None,
                      ram_gb: float | None = None, mode: str | None = None, revision: str | None = None):
    """Plan any diffusers hub repo from its headers (no profile table entry, no weights downloaded)."""
    from .planner import plan_memory

    return plan_memory(hub_sizes(repo_id, revision=revision), shape, device_facts, budget_gb, ram_gb, mode)
