"""What the nodes need from ComfyUI, in one place, each piece guarded (absent outside ComfyUI).

* ``mm`` / ``utils`` / ``folder_paths``: ComfyUI's model management, ProgressBar and model folders;
  None when the pack runs headless (``pipelines.workflows.runner``) or in tests.
* ``HAS_VIDEO``: ComfyUI's native VIDEO type (``comfy_api.latest``) exists in this ComfyUI.
* ``ComfyCancel``: a CancelToken that also answers ComfyUI's Cancel button at every engine checkpoint.
* ``StepBar``: an engine-event subscriber driving ComfyUI's ProgressBar (with the latent preview).
* ``in_comfy_words``: the engine's messages with the command line's words (``--model``, ``python app.py
  models``) replaced by the node's input names.
* ``free_memory``: ask ComfyUI to unload what it holds before a model of ours loads.
* frames: IMAGE batch <-> uint8 frames; VIDEO <-> (IMAGE, fps).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..pipelines.errors import JobCancelled, KinetographError
from ..pipelines.events import Preview, Progress
from ..pipelines.progress import CancelToken

try:  # inside ComfyUI
    import comfy.model_management as mm
    import comfy.utils as utils
except ImportError:  # headless (workflow runner, tests): no progress bar, no interrupt
    mm = None
    utils = None
try:
    import folder_paths
except ImportError:
    folder_paths = None
try:  # ComfyUI's native VIDEO type (0.3.4x and later)
    from comfy_api.latest import InputImpl as _InputImpl
    from comfy_api.latest import Types as _Types

    HAS_VIDEO = True
except Exception:  # noqa: BLE001 - older ComfyUI, or none
    _InputImpl = _Types = None
    HAS_VIDEO = False

CATEGORY = "Kinetograph"
MODEL_TYPE = "KINETOGRAPH_MODEL"
JOB_TYPE = "KINETOGRAPH_JOB"
TIMELINE_TYPE = "KINETOGRAPH_TIMELINE"
DIFFUSERS_FOLDER = "diffusers"  # ComfyUI's models/diffusers: one diffusers folder (with model_index.json) per model

# Set by the headless workflow runner: where outputs go, where input files are found, and a
# function(value, total) receiving each node's progress in place of ComfyUI's ProgressBar.
HEADLESS: dict[str, Any] = {"output_dir": "outputs", "input_dirs": [], "progress": None}


# ----------------------------------------------------------------------- cancel, progress
class ComfyCancel(CancelToken):
    """Raises ComfyUI's own InterruptProcessingException when its Cancel button was pressed, so the
    run shows as interrupted; checked at every denoising step and between frames."""

    def raise_if_cancelled(self) -> None:
        if mm is not None:
            mm.throw_exception_if_processing_interrupted()
        super().raise_if_cancelled()


def progress_bar(total: int):
    """ComfyUI's ProgressBar, the headless runner's stand-in, or None."""
    if utils is not None:
        return utils.ProgressBar(total)
    if HEADLESS.get("progress") is not None:
        return _HeadlessBar(total, HEADLESS["progress"])
    return None


class _HeadlessBar:
    def __init__(self, total: int, sink) -> None:
        self.total, self.sink = total, sink

    def update_absolute(self, value, total=None, preview=None) -> None:
        self.sink(int(value), int(total or self.total))


class StepBar:
    """An engine-event subscriber: the bar moves with the whole job's share done (denoising steps,
    nested within segments or pairs), in thousandths, never backwards; each preview (the frames as
    they form) is shown as the bar's preview image."""

    UNITS = 1000

    def __init__(self) -> None:
        self.total = self.UNITS
        self.bar = progress_bar(self.total)
        self.value = 0
        self.shows_previews = utils is not None

    def __call__(self, event) -> None:
        if self.bar is None:
            return
        if isinstance(event, Progress) and event.stage in ("denoise", "segment", "interpolate"):
            self._show(int(event.fraction * self.total) if event.within or event.stage == "denoise"
                       else int(event.done * self.total / max(1, event.total)))
        elif isinstance(event, Preview) and self.shows_previews:
            self._show(self.value, preview_image(event.frames))

    def finish(self) -> None:
        if self.bar is not None:
            self._show(self.total)

    def _show(self, value: int, preview=None) -> None:
        """Move to ``value`` (never backwards, never past the end), with a preview image if given."""
        self.value = min(max(value, self.value), self.total)
        if preview is None:
            self.bar.update_absolute(self.value, self.total)
        else:
            self.bar.update_absolute(self.value, self.total, preview)


def preview_image(frames):
    """ComfyUI's preview tuple for a preview's middle frame, enlarged to be seen."""
    from PIL import Image

    frame = Image.fromarray(frames[len(frames) // 2])
    scale = max(1, 256 // max(frame.size))
    return ("JPEG", frame.resize((frame.width * scale, frame.height * scale), Image.NEAREST), 512)


# --------------------------------------------------------------------------------- errors
_CLI_WORDS = (
    (re.compile(r"\(?see `?python app\.py models`?\)?|run `python app\.py models` to list them\.?|`python app\.py "
                r"models`"), "see the model list of 'Kinetograph: Load Video Model'"),
    (re.compile(r"\.venv/bin/hf download"), "hf download"),
    (re.compile(r"`python app\.py [a-z]+`"), "the matching Kinetograph node"),
)
_FLAG = re.compile(r"(?:(?P<verb>[Pp]ass|[Gg]ive|[Aa]dd|[Uu]se) )?--(?P<name>[a-z][a-z0-9-]*)(?: (?:PATH|FILE|N))?")


def in_comfy_words(message: str, inputs: dict[str, str] | None = None) -> str:
    """The engine's message with its command-line words replaced: ``--model`` becomes the node's
    input name (``inputs`` maps flag names to input names), ``python app.py models`` the loader's list."""
    inputs = inputs or {}
    for pattern, words in _CLI_WORDS:
        message = pattern.sub(words, message)

    def flag(match) -> str:
        name = inputs.get(match["name"], match["name"].replace("-", "_"))
        what = f"the '{name}' input"
        return f"set {what}" if match["verb"] else what

    return _FLAG.sub(flag, message)


def comfy_errors(inputs: dict[str, str] | None = None):
    """Decorator for a node's function: a KinetographError leaves in ComfyUI's words (same type,
    message only, no engine traceback); anything else is a bug and passes unchanged."""

    def wrap(function):
        @functools.wraps(function)
        def run(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except JobCancelled:
                raise
            except KinetographError as exc:
                # The engine names the settings at fault as fields; as flags they get the node's input words.
                as_flags = exc.worded({name: "--" + name.replace("_", "-") for name in exc.fields})
                raise type(exc)(in_comfy_words(as_flags, inputs)) from None

        return run

    return wrap


# --------------------------------------------------------------------------------- memory
def free_memory(budget_gb: float | None = None) -> None:
    """Before one of our models loads: ask ComfyUI to unload its own models (all of them, or, with a
    budget, as much as the budget) and empty the CUDA cache, so the two never fight over VRAM."""
    if mm is None:
        return
    device = mm.get_torch_device()
    if budget_gb:
        mm.free_memory(int(budget_gb * 1024**3), device)
    else:
        mm.unload_all_models()
    mm.soft_empty_cache()


def intermediate_device():
    return mm.intermediate_device() if mm is not None else torch.device("cpu")


# ------------------------------------------------------------------------- files, folders
def output_directory() -> Path:
    return Path(folder_paths.get_output_directory() if folder_paths is not None else HEADLESS["output_dir"])


def diffusers_folders() -> dict[str, str]:
    """Diffusers model folders in ComfyUI's models folders: ``"diffusers/<name>" -> path`` for each
    folder holding a model_index.json (in models/diffusers and any extra_model_paths.yaml entry)."""
    if folder_paths is None:
        return {}
    found: dict[str, str] = {}
    try:
        bases = folder_paths.get_folder_paths(DIFFUSERS_FOLDER)
    except Exception:  # noqa: BLE001 - a ComfyUI without that folder name
        return {}
    for base in bases:
        root = Path(base)
        if not root.is_dir():
            continue
        for index in sorted(root.glob("*/model_index.json")) + sorted(root.glob("*/*/model_index.json")):
            name = f"{DIFFUSERS_FOLDER}/{index.parent.relative_to(root).as_posix()}"
            found.setdefault(name, str(index.parent))
    return found


def models_folder_hint() -> str:
    """Where a user puts a diffusers model folder, in this ComfyUI (or in general, headless)."""
    if folder_paths is not None:
        try:
            return folder_paths.get_folder_paths(DIFFUSERS_FOLDER)[0]
        except Exception:  # noqa: BLE001
            pass
    return "ComfyUI/models/diffusers"


# ----------------------------------------------------------------------------------- frames
def to_image(frames) -> torch.Tensor:
    """RGB uint8 ``T×H×W×3`` frames -> an IMAGE batch (float32 0..1) on ComfyUI's intermediate device."""
    tensor = torch.from_numpy(frames) if not isinstance(frames, torch.Tensor) else frames
    return tensor.to(device=intermediate_device(), dtype=torch.float32).div_(255.0)


def check_image(images, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (3, 4) \
            or min(images.shape[:3]) < 1:
        what = f"a tensor of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise KinetographError(f"'{name}' must be an IMAGE batch (frames × height × width × 3); got {what}. "
                               f"Connect the IMAGE output of a loader or of another Kinetograph node.")
    return images[..., :3]


def to_uint8(images: torch.Tensor):
    """An IMAGE batch -> RGB uint8 ``T×H×W×3`` numpy frames."""
    return (images[..., :3].detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy())


def video_from_images(images: torch.Tensor, fps: float):
    """ComfyUI's VIDEO for an IMAGE batch at ``fps`` (None where this ComfyUI has no VIDEO type)."""
    if not HAS_VIDEO:
        return None
    from fractions import Fraction

    return _InputImpl.VideoFromComponents(_Types.VideoComponents(images=images, audio=None,
                                                                 frame_rate=Fraction(fps).limit_denominator(1001)))


def images_from_video(video) -> tuple[torch.Tensor, float]:
    """(IMAGE batch, fps) of ComfyUI's VIDEO."""
    try:
        components = video.get_components()
    except AttributeError:
        raise KinetographError("'video' must be a VIDEO (from Load Video, Create Video or a Kinetograph "
                               "node).") from None
    return components.images, float(components.frame_rate)


# ------------------------------------------------------------------------ job records
@dataclass
class JobRecord:
    """A job as run by a node, travelling on a KINETOGRAPH_JOB link to Save Video, which embeds it so
    that ``python app.py rerun`` can make the video again. ``rerunnable`` is False where the job's
    inputs were frames in memory (an IMAGE link), which no file records."""

    kind: str
    job: Any
    model: dict | None
    seed: int | None
    frame_count: int
    fps: float
    rerunnable: bool = True
    notes: list[str] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)
