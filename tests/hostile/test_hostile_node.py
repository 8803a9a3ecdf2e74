"""Hostile input through the ComfyUI node (issue 17): every case returns a correct result or raises the
pack's KinetographError with a message in the node's words (its input names, never CLI flags)."""
from __future__ import annotations

import math
import sys

import pytest
import torch
from pack_helpers import loaded_pack

PACK = "kinetograph_hostile_pack"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pack():
    with loaded_pack(PACK) as module:
        yield module


@pytest.fixture(scope="module")
def node(pack):
    return pack.NODE_CLASS_MAPPINGS["KinetographInterpolate"]


@pytest.fixture(scope="module")
def error_type(pack):
    return sys.modules[PACK + ".pipelines.errors"].KinetographError


def frames(count=3, h=24, w=32, dtype=torch.float32, channels=3):
    ramp = torch.linspace(0, 1, count * h * w * channels).reshape(count, h, w, channels)
    return ramp.to(dtype)


def call(node, images, **kwargs):
    args = {"fps": 16.0, "mode": "factor", "factor": 2, "target_fps": 60.0, "slowmo": False, "quality": "standard"}
    args.update(kwargs)
    return getattr(node(), node.FUNCTION)(images, **args)


def outcome(node, error_type, images, **kwargs):
    """('ok', (out, fps)) or ('error', message); any other exception fails the test."""
    try:
        return "ok", call(node, images, **kwargs)
    except error_type as error:
        message = str(error)
        assert "--" not in message, message  # the node's words, not the CLI's
        assert "Traceback" not in message
        return "error", message


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64, torch.uint8])
def test_image_dtypes(node, error_type, dtype):
    images = frames(dtype=dtype) if dtype != torch.uint8 else (frames() * 255).to(torch.uint8)
    kind, result = outcome(node, error_type, images)
    assert kind == "ok", result
    out, fps = result
    assert out.shape == (5, 24, 32, 3) and out.dtype == torch.float32 and fps == 32.0


@pytest.mark.parametrize("images, ok", [
    (frames(channels=4), True),                    # RGBA batch
    (frames(count=1), False),                      # one frame
    (frames(count=0), False),                      # no frames
    (frames(h=1, w=1), True),                      # one pixel
    (frames(h=7, w=9), True),                      # odd size
    (torch.full((3, 16, 16, 3), float("nan")), False),  # refused with the frame's number, not blacked out
    (torch.full((3, 16, 16, 3), float("inf")), False),
    (torch.full((3, 16, 16, 3), -5.0), False),
    (torch.zeros(3, 16, 16), False),               # no channel axis
    (torch.zeros(3, 16, 16, 2), False),            # two channels
    ("not a tensor", False),
    (frames().numpy(), False),
])
def test_odd_batches(node, error_type, images, ok):
    kind, result = outcome(node, error_type, images)
    assert (kind == "ok") == ok, result
    if kind == "ok":
        out, _ = result
        assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


NUMBERS = [float("nan"), float("inf"), float("-inf"), 1e308, -1, 0, 2**63, "1e2", "", None, True]


@pytest.mark.parametrize("name", ["fps", "target_fps", "factor", "steps", "seed"])
@pytest.mark.parametrize("value", NUMBERS)
def test_hostile_numbers(node, error_type, name, value):
    kwargs = {name: value}
    if name == "target_fps":
        kwargs["mode"] = "target fps"
    if name in ("steps", "seed"):
        kwargs.update(method="generative", model="tiny-ltx", model_path="./no-such-model-folder")
    kind, result = outcome(node, error_type, frames(), **kwargs)
    if kind == "error" and name in ("fps", "target_fps", "factor") and value not in (None,):
        assert name in result, result  # the message names the node's input


def test_target_fps_error_names_the_node_input(node, error_type):
    kind, message = outcome(node, error_type, frames(), mode="target fps", target_fps=float("nan"))
    assert kind == "error" and message.startswith("target_fps must be"), message
    kind, message = outcome(node, error_type, frames(), fps=float("nan"))
    assert kind == "error" and message.startswith("fps must be"), message


@pytest.mark.parametrize("kwargs", [
    {"mode": "speed"}, {"mode": None}, {"quality": "ultra"}, {"method": "rife"}, {"method": None},
    {"method": "generative", "model": "tiny-ltx", "model_path": "../../etc/passwd"},
    {"method": "generative", "model": "tiny-ltx", "model_path": "\x00"},
    {"method": "generative", "model": "tiny-ltx", "model_path": "./no-such", "prompt": "x" * 1_000_001},
    {"method": "generative", "model": "", "model_path": ""},
])
def test_hostile_settings(node, error_type, kwargs):
    kind, result = outcome(node, error_type, frames(), **kwargs)
    assert kind == "error"
    assert len(result) < 2000


def test_generative_with_one_step_the_node_says_steps(node, error_type):
    kind, message = outcome(node, error_type, frames(count=2, h=32, w=32), method="generative", model="tiny-ltx",
                            steps=1, seed=1)
    # the keyframes pipeline has its own schedule: one step is fine there
    assert kind == "ok" or "steps" in message


def test_big_factor_count_is_bounded(node, error_type):
    kind, result = outcome(node, error_type, frames(count=2), factor=10**9)
    assert kind == "error" and "factor" in result
    assert not math.isnan(16.0)
