"""Built-in tiny models: build, reload through diffusers' from_pretrained, generate (CPU, offline)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipelines import KinetographError, tiny_models
from pipelines.tiny_models import TINY_MODELS, build_tiny_model, tiny_model_names

FRAMES, SIZE = 9, 64
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt"}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models are all per-op overhead: extra threads only help when cores are idle, and on a
    busy 2-core machine they make these runs several times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory) -> Callable[[str], Path]:
    """Builds each tiny model at most once per session and returns its folder."""
    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def folder(name: str) -> Path:
        if name not in built:
            built[name] = build_tiny_model(name, root / name)
        return built[name]

    return folder


def _picture(seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _keyframe_conditions() -> dict[str, Any]:
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    return {
        "conditions": [
            LTXVideoCondition(image=_picture(1), frame_index=0),
            LTXVideoCondition(image=_picture(2), frame_index=FRAMES - 1),
        ]
    }


def _edit_inputs() -> dict[str, Any]:
    # White mask: regenerate everything, so the run exercises the whole VACE path.
    return {
        "video": [_picture(i) for i in range(FRAMES)],
        "mask": [Image.new("L", (SIZE, SIZE), 255)] * FRAMES,
    }


PROMPT = {"prompt": "a red fox runs through snow, 35mm film"}
# Each run: the tiny model, the diffusers class that loads its folder, the task's own inputs.
RUNS = [
    pytest.param("tiny-ltx", "LTXPipeline", lambda: PROMPT, id="ltx-t2v"),
    pytest.param(
        "tiny-ltx", "LTXImageToVideoPipeline", lambda: PROMPT | {"image": _picture(1)}, id="ltx-i2v"
    ),
    pytest.param(
        "tiny-ltx", "LTXConditionPipeline", lambda: PROMPT | _keyframe_conditions(), id="ltx-keyframes"
    ),
    pytest.param("tiny-wan", "WanPipeline", lambda: PROMPT, id="wan-t2v"),
    pytest.param(
        "tiny-wan-i2v", "WanImageToVideoPipeline", lambda: PROMPT | {"image": _picture(1)}, id="wan-i2v"
    ),
    pytest.param(
        "tiny-wan-flf2v",
        "WanImageToVideoPipeline",
        lambda: PROMPT | {"image": _picture(1), "last_image": _picture(2)},
        id="wan-flf2v",
    ),
    pytest.param("tiny-wan-vace", "WanVACEPipeline", lambda: PROMPT | _edit_inputs(), id="wan-vace-edit"),
    pytest.param(
        "tiny-wan-vace",
        "WanVACEPipeline",
        lambda: PROMPT | {"reference_images": [_picture(3)]},
        id="wan-vace-ref",
    ),
    pytest.param("tiny-animatediff", "AnimateDiffPipeline", lambda: PROMPT, id="animatediff-t2v"),
    pytest.param("tiny-svd", "StableVideoDiffusionPipeline", lambda: {"image": _picture(1)}, id="svd-i2v"),
    pytest.param(
        "tiny-skyreels-df", "SkyReelsV2DiffusionForcingPipeline", lambda: PROMPT, id="skyreels-df-t2v"
    ),
]


@pytest.mark.parametrize(("name", "pipeline_class", "task_inputs"), RUNS)
def test_generates_reproducible_frames(tiny_model_folder, name, pipeline_class, task_inputs):
    import diffusers
    import torch

    pipeline = getattr(diffusers, pipeline_class).from_pretrained(
        tiny_model_folder(name), local_files_only=True
    )
    pipeline.set_progress_bar_config(disable=True)

    def generate(seed: int) -> np.ndarray:
        output = pipeline(
            **task_inputs(),
            num_frames=FRAMES,
            height=SIZE,
            width=SIZE,
            num_inference_steps=2,
            output_type="np",
            generator=torch.Generator().manual_seed(seed),
        )
        return np.asarray(output.frames)[0]

    frames = generate(seed=7)
    assert frames.shape == (FRAMES, SIZE, SIZE, 3)
    assert np.isfinite(frames).all()
    assert np.array_equal(frames, generate(seed=7)), "the same seed must give the same frames"
    assert not np.array_equal(frames, generate(seed=8)), "another seed must give other frames"


@pytest.mark.parametrize("name", tiny_model_names())
def test_folder_is_a_diffusers_folder_with_safetensors_only(tiny_model_folder, name):
    folder = tiny_model_folder(name)
    model_index = json.loads((folder / "model_index.json").read_text())
    assert model_index["_class_name"] == TINY_MODELS[name].pipeline_class

    weight_files = [path for path in folder.rglob("*") if path.suffix in WEIGHT_SUFFIXES]
    assert weight_files
    assert {path.suffix for path in weight_files} == {".safetensors"}
    # Every component named in model_index.json was written.
    components = [key for key, value in model_index.items() if isinstance(value, list) and value[0]]
    assert all((folder / component).is_dir() for component in components)


def test_building_twice_gives_identical_files(tmp_path):
    first = build_tiny_model("tiny-wan", tmp_path / "first")
    second = build_tiny_model("tiny-wan", tmp_path / "second")
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert any(path.suffix == ".safetensors" for path in files)
    assert files == sorted(path.relative_to(second) for path in second.rglob("*") if path.is_file())
    for path in files:
        assert (first / path).read_bytes() == (second / path).read_bytes(), path


def test_rebuilding_replaces_the_folder_and_leaves_nothing_beside_it(tmp_path):
    dest = tmp_path / "tiny-ltx"
    build_tiny_model("tiny-ltx", dest)
    (dest / "stale.txt").write_text("from an earlier build")
    assert build_tiny_model("tiny-ltx", dest) == dest
    assert not (dest / "stale.txt").exists()
    assert [path.name for path in tmp_path.iterdir()] == ["tiny-ltx"]


def test_failed_build_leaves_no_folder(tmp_path, monkeypatch):
    def broken_builder():
        raise RuntimeError("boom")

    monkeypatch.setitem(tiny_models.TINY_MODELS, "tiny-wan",
                        dataclasses.replace(tiny_models.TINY_MODELS["tiny-wan"], build=broken_builder))
    with pytest.raises(RuntimeError, match="boom"):
        build_tiny_model("tiny-wan", tmp_path / "tiny-wan")
    assert list(tmp_path.iterdir()) == []


def test_unknown_name_lists_the_known_ones(tmp_path):
    with pytest.raises(KinetographError) as raised:
        build_tiny_model("tiny-nope", tmp_path / "tiny-nope")
    assert all(name in str(raised.value) for name in tiny_model_names())
    assert not (tmp_path / "tiny-nope").exists()


def test_names_and_specs_agree():
    assert tiny_model_names() == list(TINY_MODELS)
    assert all(spec.name == name for name, spec in TINY_MODELS.items())
    assert all(callable(builder) for builder in TINY_MODELS.values())
