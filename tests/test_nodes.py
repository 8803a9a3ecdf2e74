"""Every node of the pack, loaded as ComfyUI loads it (the repository root as a package under an
arbitrary name, beside an unrelated top-level ``nodes`` module): well-formed INPUT_TYPES /
RETURN_TYPES, each node's bad input refused in ComfyUI's words, the ComfyUI glue (progress with
previews, cancel within a step, memory freed before loading) and Save Video's embedded job
(``app.py rerun``) and workflow (ComfyUI drag-and-drop)."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
from pack_helpers import loaded_pack

PACK = "kinetograph_all_nodes_pack"
SOCKETS = {"IMAGE", "MASK", "LATENT", "VIDEO", "AUDIO", "KINETOGRAPH_MODEL", "KINETOGRAPH_JOB", "KINETOGRAPH_TIMELINE"}
WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN"}
ALL_NODES = ["KinetographLoadModel", "KinetographGenerate", "KinetographExtend", "KinetographPromptTimeline",
             "KinetographInterpolate", "KinetographSaveVideo", "KinetographVideoInfo"]


@pytest.fixture(scope="module")
def pack():
    """The pack imported while an unrelated top-level ``nodes`` module exists (ComfyUI has one)."""
    impostor = types.ModuleType("nodes")
    impostor.NODE_CLASS_MAPPINGS = {"NotOurs": object}
    with loaded_pack(PACK, nodes_module=impostor) as module:
        assert sys.modules["nodes"] is impostor  # untouched
        yield module


@pytest.fixture(scope="module")
def nodes(pack):
    return pack.NODE_CLASS_MAPPINGS


@pytest.fixture(scope="module")
def error_type(pack):
    return sys.modules[PACK + ".pipelines.errors"].KinetographError


@pytest.fixture
def glue(pack, tmp_path, monkeypatch):
    module = sys.modules[PACK + ".nodes._comfy"]
    monkeypatch.setitem(module.HEADLESS, "output_dir", str(tmp_path / "output"))
    return module


def call(nodes, name, *args, **kwargs):
    cls = nodes[name]
    return getattr(cls(), cls.FUNCTION)(*args, **kwargs)


def tiny_model(nodes):
    return call(nodes, "KinetographLoadModel", "tiny-ltx")[0]


GEN = dict(task="t2v", prompt="a fox", negative_prompt="", frames=9, width=64, height=64, fps=0.0, steps=2,
           guidance=-1.0, seed=3)


# ---------------------------------------------------------------------------- registration
def test_every_node_is_registered_with_a_display_name(pack, nodes):
    assert list(nodes) == ALL_NODES
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(ALL_NODES)
    assert all(name.startswith("Kinetograph: ") for name in pack.NODE_DISPLAY_NAME_MAPPINGS.values())


@pytest.mark.parametrize("name", ALL_NODES)
def test_input_and_return_types_are_well_formed(nodes, name):
    cls = nodes[name]
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"} and "required" in spec
    for section in ("required", "optional"):
        for input_name, entry in (spec.get(section) or {}).items():
            assert isinstance(entry, tuple) and len(entry) == 2, input_name
            kind, options = entry
            assert isinstance(options, dict) and options.get("tooltip"), input_name
            if isinstance(kind, list):  # COMBO
                assert kind and all(isinstance(v, str) for v in kind) and options["default"] in kind, input_name
            elif kind in WIDGETS and not options.get("forceInput"):
                assert "default" in options, input_name
                if kind in ("INT", "FLOAT"):
                    assert options["min"] <= options["default"] <= options["max"], input_name
                    assert isinstance(options["default"], int if kind == "INT" else float), input_name
            else:
                assert kind in SOCKETS | WIDGETS, (input_name, kind)
    for hidden in (spec.get("hidden") or {}).values():
        assert hidden in ("PROMPT", "EXTRA_PNGINFO", "UNIQUE_ID")
    assert isinstance(cls.RETURN_TYPES, tuple) and cls.RETURN_TYPES
    assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES) == len(cls.OUTPUT_TOOLTIPS)
    assert all(isinstance(t, str) for t in cls.RETURN_TYPES)
    assert cls.CATEGORY == "Kinetograph" and cls.DESCRIPTION
    assert callable(getattr(cls(), cls.FUNCTION))


def test_no_comfyui_means_no_video_type_and_no_video_outputs(pack, nodes):
    glue = sys.modules[PACK + ".nodes._comfy"]
    assert glue.HAS_VIDEO is False and glue.mm is None and glue.folder_paths is None
    assert "VIDEO" not in nodes["KinetographGenerate"].RETURN_TYPES
    assert "video" not in nodes["KinetographSaveVideo"].INPUT_TYPES()["optional"]


# ------------------------------------------------------------------------------- behaviour
def test_generate_save_and_rerun_give_the_same_video(nodes, glue, tmp_path):
    images, fps, job = call(nodes, "KinetographGenerate", tiny_model(nodes), **GEN)
    assert images.shape == (9, 64, 64, 3) and images.dtype == torch.float32 and fps == 24.0
    prompt = {"1": {"class_type": "KinetographGenerate", "inputs": {}}}
    workflow = {"nodes": [{"id": 1}], "links": []}
    saved = call(nodes, "KinetographSaveVideo", fps, "clips/fox", images=images, job=job, prompt=prompt,
                 extra_pnginfo={"workflow": workflow})
    path = Path(saved["result"][0])
    assert path == tmp_path / "output" / "clips" / "fox_00001_.mp4"
    assert saved["ui"] == {"images": [{"filename": "fox_00001_.mp4", "subfolder": "clips", "type": "output"}],
                           "animated": (True,)}
    with av.open(str(path)) as container:  # ComfyUI's drag-and-drop reads these two tags
        assert json.loads(container.metadata["prompt"]) == prompt
        assert json.loads(container.metadata["workflow"]) == workflow
    from app import main
    from pipelines.video_io import read_frames

    again = tmp_path / "again.mp4"
    assert main(["rerun", str(path), "--out", str(again), "--quiet"]) == 0
    assert np.array_equal(read_frames(again), read_frames(path))
    second = call(nodes, "KinetographSaveVideo", fps, "clips/fox", images=images)
    assert Path(second["result"][0]).name == "fox_00002_.mp4"  # ComfyUI's counter, never overwriting


def test_frames_changed_after_the_job_are_saved_without_a_rerunnable_job(nodes, glue, tmp_path):
    images, fps, job = call(nodes, "KinetographGenerate", tiny_model(nodes), **GEN)
    path = call(nodes, "KinetographSaveVideo", fps, "cut", images=images[:5], job=job)["result"][0]
    from pipelines.results import job_from_output
    from pipelines.video_io import read_metadata

    meta = read_metadata(path)
    assert meta["source_job"]["job"]["seed"] == 3 and "other frame count" in meta["notes"][0]
    with pytest.raises(Exception, match="carries no job to re-run"):
        job_from_output(path)


def test_image_to_video_and_first_last_frame_take_image_inputs(nodes, glue, sample_images):
    from pipelines.video_io import read_image

    first, last = (torch.from_numpy(read_image(p)).float().div(255)[None] for p in sample_images)
    model = tiny_model(nodes)
    out, _, job = call(nodes, "KinetographGenerate", model, **{**GEN, "task": "i2v"}, image=first)
    assert out.shape[0] == 9 and job.rerunnable is False and job.job.image == "ComfyUI IMAGE input 'image'"
    out, _, _ = call(nodes, "KinetographGenerate", model, **{**GEN, "task": "keyframes"}, image=first, last_image=last)
    assert out.shape == (9, 64, 64, 3)


def test_extend_and_timeline(nodes, glue):
    model = tiny_model(nodes)
    images, fps, _ = call(nodes, "KinetographGenerate", model, **GEN)
    (timeline,) = call(nodes, "KinetographPromptTimeline", "0-0.2: a fox\n[cut] 0.3: a hare")
    assert timeline == ((0.0, "a fox", False), (0.3, "a hare", True))
    ext = dict(seconds=0.5, prompt="it runs", negative_prompt="", fps=0.0, segment_frames=17, context_frames=0,
               overlap=-1, anchor=1.0, steps=2, guidance=-1.0, seed=1, width=0, height=0)
    out, out_fps, job = call(nodes, "KinetographExtend", model, **ext, images=images, source_fps=fps)
    assert out_fps == fps and out.shape[0] == 9 + 12 and out.shape[1:] == (64, 64, 3)
    assert job.rerunnable is False
    out, _, job = call(nodes, "KinetographExtend", model, **{**ext, "width": 64, "height": 64}, timeline=timeline)
    assert out.shape[0] == 12 and job.rerunnable and job.job.timeline == timeline and job.job.out is None


def test_video_info(nodes):
    result = call(nodes, "KinetographVideoInfo", 24.0, images=torch.zeros(12, 32, 48, 3))
    assert result["result"] == (12, 48, 32, 24.0, 0.5, "12 frames, 48x32, 24 fps, 0.500 s")
    assert result["ui"]["text"] == ["12 frames, 48x32, 24 fps, 0.500 s"]


def test_inside_comfyui_progress_previews_cancel_and_memory(nodes, glue, monkeypatch):
    """With ComfyUI's modules present: the bar moves with every denoising step and shows the frames as they
    form; ComfyUI's models are unloaded before ours loads; its Cancel stops the job within a step."""
    comfy = SimpleNamespace(updates=[], previews=[], calls=[], checks=0, interrupt_after=None)

    class Bar:
        def __init__(self, total):
            comfy.calls.append(("bar", total))

        def update_absolute(self, value, total=None, preview=None):
            (comfy.previews if preview is not None else comfy.updates).append((value, total, preview))

    class Interrupted(Exception):
        pass

    def throw_if_interrupted():
        comfy.checks += 1
        if comfy.interrupt_after is not None and comfy.checks > comfy.interrupt_after:
            raise Interrupted

    monkeypatch.setattr(glue, "utils", SimpleNamespace(ProgressBar=Bar))
    monkeypatch.setattr(glue, "mm", SimpleNamespace(
        intermediate_device=lambda: torch.device("cpu"), get_torch_device=lambda: torch.device("cpu"),
        unload_all_models=lambda: comfy.calls.append("unload_all_models"),
        free_memory=lambda n, dev: comfy.calls.append(("free_memory", n)),
        soft_empty_cache=lambda: comfy.calls.append("soft_empty_cache"),
        throw_exception_if_processing_interrupted=throw_if_interrupted))
    call(nodes, "KinetographGenerate", tiny_model(nodes), **{**GEN, "steps": 4})
    assert comfy.calls[:3] == ["unload_all_models", "soft_empty_cache", ("bar", 1000)]
    values = [v for v, _, _ in comfy.updates]
    assert values == sorted(values) and values[-1] == 1000 and {250, 500, 750} <= set(values)
    assert len(comfy.previews) == 4 and comfy.previews[0][2][0] == "JPEG"
    # a budget frees only that much of ComfyUI's memory
    budget = call(nodes, "KinetographLoadModel", "tiny-ltx", "", "auto", "auto", 2.0, 0.0)[0]
    call(nodes, "KinetographGenerate", budget, **GEN)
    assert ("free_memory", 2 * 1024**3) in comfy.calls
    comfy.checks, comfy.interrupt_after = 0, 2  # Cancel pressed during the first denoising steps
    with pytest.raises(Interrupted):
        call(nodes, "KinetographGenerate", tiny_model(nodes), **{**GEN, "steps": 20, "seed": 9})
    assert comfy.checks == 3  # stopped at the next check, within a step


def test_models_found_in_comfyuis_diffusers_folder(nodes, glue, monkeypatch, tmp_path):
    from pipelines.models import ensure_tiny_model

    folder = tmp_path / "models" / "diffusers"
    folder.mkdir(parents=True)
    (folder / "my-ltx").symlink_to(ensure_tiny_model("tiny-ltx"))
    monkeypatch.setattr(glue, "folder_paths", SimpleNamespace(get_folder_paths=lambda name: [str(folder)]))
    choices = nodes["KinetographLoadModel"].INPUT_TYPES()["required"]["model"][0]
    assert "diffusers/my-ltx" in choices and "tiny-ltx" in choices
    model = call(nodes, "KinetographLoadModel", "diffusers/my-ltx")[0]
    assert model.ref == str(folder / "my-ltx") and model.family == "ltx"


# ------------------------------------------------------------------- bad input, per node
BAD = [
    ("KinetographLoadModel", ("no-such-model",), {}, "'model' 'no-such-model' is neither a preset nor a folder in "
                                                     "ComfyUI/models/diffusers"),
    ("KinetographLoadModel", ("tiny-ltx", "/nowhere/at/all"), {}, "Put a diffusers model folder .* in "
                                                                  "ComfyUI/models/diffusers"),
    ("KinetographLoadModel", ("tiny-ltx", "", "float8"), {}, "'dtype' must be one of"),
    ("KinetographLoadModel", ("tiny-ltx", "", "auto", "turbo"), {}, "'memory_mode' must be one of"),
    ("KinetographGenerate", ("MODEL",), {**GEN, "prompt": "  "}, "needs a prompt: set the 'prompt' input"),
    ("KinetographGenerate", ("MODEL",), {**GEN, "task": "i2v"}, "needs a start image: set the 'image' input"),
    ("KinetographGenerate", ("MODEL",), {**GEN, "steps": 501}, "'steps' input = 501 is out of range"),
    ("KinetographGenerate", ("not a model",), GEN, "'model' must come from Kinetograph: Load Video Model"),
    ("KinetographGenerate", ("MODEL",), {**GEN, "task": "i2v", "image": torch.zeros(3, 4)}, "'image' must be an "
                                                                                             "IMAGE batch"),
    ("KinetographExtend", ("MODEL",), dict(seconds=0.5, prompt="", negative_prompt="", fps=0.0, segment_frames=0,
                                          context_frames=0, overlap=-1, anchor=1.0, steps=2, guidance=-1.0, seed=1,
                                          width=0, height=0), "needs a prompt .*the 'prompt' input.* or a"),
    ("KinetographExtend", ("MODEL",), dict(seconds=0.5, prompt="x", negative_prompt="", fps=0.0, segment_frames=0,
                                          context_frames=0, overlap=-1, anchor=1.0, steps=2, guidance=-1.0, seed=1,
                                          width=0, height=0, images=torch.zeros(9, 64, 64, 3)),
     "'fps' is 0: give the frame rate of 'images'"),
    ("KinetographPromptTimeline", ("the fox runs",), {}, "'timeline', line 1: 'the fox runs' is not 'START-END"),
    ("KinetographPromptTimeline", (7,), {}, "'timeline' must be text"),
    ("KinetographSaveVideo", (24.0, "x"), {}, "Nothing to save: connect 'images'"),
    ("KinetographSaveVideo", (24.0, "../escape"), {"images": torch.zeros(2, 8, 8, 3)}, "must stay inside the "
                                                                                      "output folder"),
    ("KinetographSaveVideo", (24.0, "x"), {"images": torch.zeros(2, 8, 8, 3), "job": "a job"}, "'job' must come "
                                                                                              "from the job output"),
    ("KinetographVideoInfo", (24.0,), {}, "Nothing to describe"),
    ("KinetographVideoInfo", (0.0,), {"images": torch.zeros(2, 8, 8, 3)}, "'fps' must be above 0"),
    ("KinetographInterpolate", (torch.zeros(1, 8, 8, 3), 16.0, "factor", 2, 60.0, False, "standard"), {},
     "at least 2 frames"),
]


@pytest.mark.parametrize("name, args, kwargs, message", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_refused_in_comfyuis_words(nodes, glue, error_type, name, args, kwargs, message):
    if args and args[0] == "MODEL":
        args = (tiny_model(nodes), *args[1:])
    with pytest.raises(error_type, match=message) as caught:
        call(nodes, name, *args, **kwargs)
    text = str(caught.value)
    assert "--" not in text and "python app.py" not in text and ".venv" not in text, text
