"""The "Kinetograph: Interpolate Frames" ComfyUI node, loaded the way ComfyUI loads the pack
(the repository root as a package under an arbitrary name; see test_pack.py)."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pack_helpers import loaded_pack

PACK = "kinetograph_node_pack"
KNOWN_TYPES = {"IMAGE", "MASK", "LATENT", "INT", "FLOAT", "STRING", "BOOLEAN", "VIDEO", "AUDIO"}


@pytest.fixture(scope="module")
def pack():
    with loaded_pack(PACK) as module:
        assert "nodes" not in sys.modules  # ComfyUI's own top-level `nodes` stays free
        yield module


@pytest.fixture(scope="module")
def node_cls(pack):
    return pack.NODE_CLASS_MAPPINGS["KinetographInterpolate"]


@pytest.fixture(scope="module")
def error_type(pack):
    return sys.modules[PACK + ".pipelines.errors"].KinetographError


def moving_square(count: int = 6, h: int = 48, w: int = 64, speed: int = 3) -> torch.Tensor:
    """A textured square moving ``speed`` px per frame over a textured background, IMAGE batch."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([xx * 3, yy * 4, (xx + yy) * 2], axis=-1).astype(np.float32) % 256
    patch = (rng.random((16, 16, 3)) * 200 + 40).astype(np.float32)
    frames = []
    for i in range(count):
        frame = background.copy()
        x0 = 6 + speed * i
        frame[16:32, x0:x0 + 16] = patch
        frames.append(frame / 255.0)
    return torch.from_numpy(np.stack(frames)).to(torch.float32)


def run(node_cls, images, **kwargs):
    args = {"fps": 16.0, "mode": "factor", "factor": 2, "target_fps": 60.0, "slowmo": False, "quality": "standard"}
    args.update(kwargs)
    node = node_cls()
    return getattr(node, node_cls.FUNCTION)(images, **args)


def test_registered(pack, node_cls):
    assert pack.NODE_CLASS_MAPPINGS["KinetographInterpolate"] is node_cls
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["KinetographInterpolate"] == "Kinetograph: Interpolate Frames"
    assert node_cls.CATEGORY == "Kinetograph"


def test_input_and_return_types_are_well_formed(pack, node_cls):
    max_factor = sys.modules[PACK + ".pipelines.interpolation"].MAX_FACTOR
    spec = node_cls.INPUT_TYPES()
    assert set(spec) == {"required", "optional"}
    required, optional = spec["required"], spec["optional"]
    assert list(required) == ["images", "fps", "mode", "factor", "target_fps", "slowmo", "quality"]
    # optional, so that workflows saved before the generative method still load unchanged
    assert list(optional) == ["method", "model", "model_path", "prompt", "steps", "seed", "source_fps"]
    assert optional["source_fps"] == ("FLOAT", {"forceInput": True, "tooltip": optional["source_fps"][1]["tooltip"]})
    for name, (kind, options) in {**required, **optional}.items():
        assert options.get("tooltip"), name
        if options.get("forceInput"):
            continue
        if isinstance(kind, list):  # COMBO
            assert kind and all(isinstance(v, str) for v in kind)
            assert options["default"] in kind
            continue
        assert kind in KNOWN_TYPES, name
        if kind in ("INT", "FLOAT"):
            assert options["min"] <= options["default"] <= options["max"], name
            assert isinstance(options["default"], int if kind == "INT" else float), name
        if kind == "BOOLEAN":
            assert isinstance(options["default"], bool)
    assert required["mode"][0] == ["factor", "target fps"]
    assert required["quality"][0] == ["standard", "best"]
    assert (required["factor"][1]["min"], required["factor"][1]["max"]) == (2, max_factor)
    assert required["fps"][1]["default"] == 16.0 and required["target_fps"][1]["default"] == 60.0
    assert required["slowmo"][1]["default"] is False
    assert optional["method"][0] == ["flow", "generative"] and optional["method"][1]["default"] == "flow"
    assert optional["model"][0] == ["tiny-ltx", "tiny-wan", "ltx-video", "wan2.1-14b"]  # presets that do keyframes
    assert optional["model"][1]["default"] == "ltx-video"
    assert optional["steps"][1]["default"] == 0 and optional["seed"][1]["default"] == 0
    assert isinstance(node_cls.RETURN_TYPES, tuple) and node_cls.RETURN_TYPES == ("IMAGE", "FLOAT")
    assert len(node_cls.RETURN_NAMES) == len(node_cls.OUTPUT_TOOLTIPS) == 2
    assert callable(getattr(node_cls(), node_cls.FUNCTION))


def test_factor_two_doubles_frames_and_fps(node_cls):
    images = moving_square()
    out, fps = run(node_cls, images, fps=16.0, factor=2)
    assert out.shape == (11, 48, 64, 3)
    assert out.dtype == torch.float32
    assert fps == 32.0
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.allclose(out[0], images[0], atol=1 / 255)
    assert torch.allclose(out[-1], images[-1], atol=1 / 255)
    assert torch.allclose(out[2], images[1], atol=1 / 255)  # input frames land on even outputs
    # an in-between is not a copy of either neighbour: the square moved half way
    assert not torch.allclose(out[1], images[0], atol=2 / 255)
    assert not torch.allclose(out[1], images[1], atol=2 / 255)


def test_target_fps_gives_the_planned_frame_count(pack, node_cls):
    make_plan = sys.modules[PACK + ".pipelines.interpolation"].make_plan
    out, fps = run(node_cls, moving_square(), fps=10.0, mode="target fps", target_fps=25.0)
    assert fps == 25.0
    assert out.shape[0] == make_plan(10.0, target_fps=25.0).frames_out(6) == 13


def test_slowmo_keeps_fps_and_multiplies_frames(node_cls):
    out, fps = run(node_cls, moving_square(), fps=10.0, factor=3, slowmo=True)
    assert fps == 10.0
    assert out.shape[0] == 16  # 5 gaps x 3 + 1


def test_quality_best_runs(node_cls):
    out, fps = run(node_cls, moving_square(count=3), quality="best")
    assert out.shape == (5, 48, 64, 3) and fps == 32.0


class Interrupted(Exception):
    """What the fake ComfyUI raises when its Cancel button was pressed."""


@pytest.fixture
def inside_comfyui(monkeypatch, pack):
    """The node as if inside ComfyUI: a recording ProgressBar and an interrupt flag that
    ``throw_exception_if_processing_interrupted`` checks (and counts)."""
    module = sys.modules[PACK + ".nodes.interpolate"]
    glue = sys.modules[PACK + ".nodes._comfy"]
    comfy = SimpleNamespace(module=module, updates=[], previews=[], checks=0, interrupt=False)

    class Bar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            if preview is None:
                comfy.updates.append((value, total))
            else:
                comfy.previews.append(preview)

    def throw_if_interrupted():
        comfy.checks += 1
        if comfy.interrupt:
            raise Interrupted

    monkeypatch.setattr(glue, "utils", SimpleNamespace(ProgressBar=Bar))
    monkeypatch.setattr(glue, "mm", SimpleNamespace(
        intermediate_device=lambda: torch.device("cpu"),
        throw_exception_if_processing_interrupted=throw_if_interrupted))
    return comfy


def test_progress_and_interrupt_inside_comfyui(inside_comfyui, node_cls):
    out, _ = run(node_cls, moving_square(count=3))
    assert inside_comfyui.updates[-1] == (5, 5) and len(inside_comfyui.updates) == 5
    assert inside_comfyui.checks > 0
    inside_comfyui.interrupt = True
    with pytest.raises(Interrupted):
        run(node_cls, moving_square(count=3))


def test_generative_progress_moves_with_denoising_steps(inside_comfyui, node_cls):
    """method generative: the bar counts hundredths of a frame and moves during each pair's denoising,
    never backwards, and ends full."""
    out, _ = run(node_cls, moving_square(count=3), method="generative", model="tiny-ltx", steps=4, seed=1)
    units = inside_comfyui.module.GENERATION_UNITS_PER_FRAME
    assert out.shape[0] == 5 and inside_comfyui.updates[-1] == (5 * units, 5 * units)
    values = [value for value, _ in inside_comfyui.updates]
    assert values == sorted(values)
    # between frame 1 (written) and frame 2 (the first in-between), the 4 denoising steps fill the gap
    assert [v for v in values if units < v < 2 * units] == [units + units // 4, units + units // 2,
                                                          units + 3 * units // 4]
    # the frames of each generation as they form, as ComfyUI's preview tuple (format, PIL image, max size)
    assert len(inside_comfyui.previews) == 2 * 4  # two pairs, four denoising steps each
    kind, image, size = inside_comfyui.previews[0]
    assert kind == "JPEG" and size == 512 and min(image.size) >= 1


def test_fps_follows_the_source_and_a_lower_target_is_refused(node_cls, error_type):
    """Issue 20: the fps comes from the upstream node when connected; a target below it would drop frames."""
    out, fps = run(node_cls, moving_square(count=4), fps=16.0, source_fps=25.0, factor=2)
    assert fps == 50.0 and out.shape[0] == (4 - 1) * 2 + 1
    with pytest.raises(error_type, match="target_fps 20 is below the input's 25 fps.*drop"):
        run(node_cls, moving_square(count=3), source_fps=25.0, mode="target fps", target_fps=20.0)
    tooltip = node_cls.INPUT_TYPES()["required"]["factor"][1]["tooltip"]
    assert "(N-1)*factor+1" in tooltip


def test_one_frame_is_refused_with_advice(node_cls, error_type):
    with pytest.raises(error_type, match="at least 2 frames and the input has 1.*batch of frames"):
        run(node_cls, moving_square(count=1))


@pytest.mark.parametrize("kwargs, message", [
    ({"fps": 0.0}, "fps must be from 0.001 to"),
    ({"fps": 10.0, "mode": "target fps", "target_fps": 500.0}, "choose at most 160 fps"),
    ({"fps": 30.0, "mode": "target fps", "target_fps": 24.0, "slowmo": True}, "raise target_fps or turn slow motion off"),
    ({"mode": "speed"}, "mode must be one of factor, target fps"),
])
def test_bad_settings_are_refused_with_advice(node_cls, error_type, kwargs, message):
    with pytest.raises(error_type, match=message):
        run(node_cls, moving_square(count=2), **kwargs)


def test_generative_method_returns_the_planned_frames(node_cls):
    """method generative: a tiny first+last-frame model makes each in-between; inputs kept, fps doubled."""
    images = moving_square(count=3)
    out, fps = run(node_cls, images, method="generative", model="tiny-ltx", steps=2, seed=4)
    assert out.shape == (5, 48, 64, 3) and out.dtype == torch.float32 and fps == 32.0
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    for k in range(3):  # the input frames come through unchanged (up to the uint8 round trip)
        assert torch.allclose(out[2 * k], images[k], atol=0.5 / 255)
    assert not torch.allclose(out[1], images[0], atol=2 / 255)  # generated, not a copy
    again, _ = run(node_cls, images, method="generative", model="tiny-ltx", steps=2, seed=4)
    assert torch.equal(out, again)  # same seed, same frames
    by_path, _ = run(node_cls, images, method="generative", model="ltx-video", model_path=" tiny-ltx ", steps=2,
                     seed=4)
    assert torch.equal(out, by_path)  # model_path, when set, wins over the model combo


def test_generative_method_refuses_a_model_without_keyframes(node_cls, error_type):
    with pytest.raises(error_type, match="first and a last frame.*tiny-ltx"):
        run(node_cls, moving_square(count=2), method="generative", model="tiny-ltx", model_path="tiny-svd")
    with pytest.raises(error_type, match="Unknown interpolation method .rife.: set method to flow or generative"):
        run(node_cls, moving_square(count=2), method="rife")
