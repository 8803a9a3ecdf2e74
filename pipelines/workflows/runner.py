"""Run API-format ComfyUI workflows made of Kinetograph's nodes, without ComfyUI.

``python app.py workflow run FILE.json [--out DIR]`` and ``workflow validate FILE.json`` call
``load_workflow_file``, ``validate`` and ``run_workflow``. An API-format workflow is what ComfyUI's
"Export (API)" writes and what ``POST /prompt`` takes: ``{node_id: {"class_type", "inputs": {name:
value | [source_node_id, output_index]}}}`` (also accepted: the ``{"prompt": ...}`` body of a /prompt
request, or an mp4 written by Kinetograph: Save Video, whose "prompt" tag holds its workflow).

The node classes are the pack's own (``NODE_CLASS_MAPPINGS``), run exactly as ComfyUI runs them, plus
headless stand-ins for the few core nodes the examples and exported workflows use (LoadImage,
LoadVideo, GetVideoComponents). Checked before anything runs, each a clear error: unknown node types,
links to missing nodes or outputs, cycles, inputs missing or unknown, values of the wrong type or out
of range, a combo value not among its choices, a link whose type the input does not take. As in
ComfyUI, only output nodes (Save Video, Video Info) and what they depend on run.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import JobCancelled, KinetographError

ROOT = Path(__file__).resolve().parents[2]
PACK_NAME = "kinetograph_pack"  # the repository root as a package, when this module is top-level `pipelines`
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
MAX_NODES = 10_000


class WorkflowError(KinetographError):
    """A workflow file that cannot run: the message names the node and the input to change."""


# --------------------------------------------------------------------------------- the pack
def pack():
    """The node pack's root package (imported once): ``<root>.nodes`` reached through it, as ComfyUI does."""
    package = __package__ or ""
    if package.endswith("pipelines.workflows") and package != "pipelines.workflows":
        return importlib.import_module(package[: -len(".pipelines.workflows")])
    if PACK_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK_NAME, ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK_NAME] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[PACK_NAME]
            raise
    return sys.modules[PACK_NAME]


def _glue():
    return sys.modules[pack().__name__ + ".nodes._comfy"]


def node_types() -> dict[str, type]:
    """Every node type a headless workflow may use: the pack's, then the core stand-ins."""
    return {**pack().NODE_CLASS_MAPPINGS, **CORE_NODES}


def display_name(class_type: str) -> str:
    return pack().NODE_DISPLAY_NAME_MAPPINGS.get(class_type, class_type)


def _is_kinetograph_error(exc: BaseException, name: str = "KinetographError") -> bool:
    """The pack's engine may be a second copy of ``pipelines`` (imported through the pack), so its
    exceptions are recognised by class name."""
    return any(cls.__name__ == name for cls in type(exc).__mro__)


# ------------------------------------------------------------------------------ core stand-ins
class LoadImage:
    """Headless stand-in for ComfyUI's LoadImage: ``image`` is a file name in the input folders (the
    workflow's folder, then assets/samples; ``--input-dir``) or a path."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("STRING", {"default": ""})}}

    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    def load_image(self, image):
        import torch

        from ..video_io import read_image

        array = read_image(str(find_input(image, "image")))
        tensor = torch.from_numpy(array).float().div(255.0)[None]
        return tensor, torch.zeros(tensor.shape[1:3])[None]


class _Video:
    """A minimal VIDEO (``get_components``) for the headless LoadVideo."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get_components(self):
        from fractions import Fraction
        from types import SimpleNamespace

        import torch

        from ..video_io import probe_video, read_frames

        frames = torch.from_numpy(read_frames(self.path)).float().div(255.0)
        return SimpleNamespace(images=frames, audio=None, frame_rate=Fraction(probe_video(self.path).fps)
                               .limit_denominator(1001), metadata=None)


class LoadVideo:
    """Headless stand-in for ComfyUI's LoadVideo (``file`` in the input folders, or a path)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"file": ("STRING", {"default": ""})}}

    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "load_video"

    def load_video(self, file):
        return (_Video(find_input(file, "file")),)


class GetVideoComponents:
    """Headless stand-in for ComfyUI's GetVideoComponents: VIDEO -> IMAGE, AUDIO, fps."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"video": ("VIDEO", {})}}

    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT")
    FUNCTION = "get_components"

    def get_components(self, video):
        components = video.get_components()
        return components.images, components.audio, float(components.frame_rate)


CORE_NODES: dict[str, type] = {"LoadImage": LoadImage, "LoadVideo": LoadVideo, "GetVideoComponents": GetVideoComponents}


def find_input(name, what: str) -> Path:
    if not isinstance(name, str) or not name.strip():
        raise KinetographError(f"'{what}' is empty: give a file name from the input folder or a path.")
    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else [Path(d) / name for d in _glue().HEADLESS["input_dirs"]] + [path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(Path(d)) for d in _glue().HEADLESS["input_dirs"]) or "the current folder"
    raise KinetographError(f"'{what}' {name!r} was not found (looked in {looked}); put the file there or pass "
                           f"--input-dir.")


# ------------------------------------------------------------------------------ reading files
def load_workflow_file(path) -> tuple[dict, dict | None]:
    """(the API-format prompt, the UI workflow if the file carries one) of a .json or a Save Video mp4."""
    path = Path(path)
    if not path.is_file():
        raise WorkflowError(f"{path}: no such file.")
    if path.suffix.lower() in (".mp4", ".mov", ".m4v"):
        return _from_video(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise WorkflowError(f"{path} is not UTF-8 text; give a workflow .json (API format).") from None
    except ValueError as exc:
        raise WorkflowError(f"{path} is not valid JSON: {exc}.") from None
    return as_prompt(data, str(path)), None


def _from_video(path: Path) -> tuple[dict, dict | None]:
    import av

    try:
        with av.open(str(path)) as container:
            tags = dict(container.metadata)
    except av.error.FFmpegError as exc:
        raise WorkflowError(f"{path} cannot be read as a video ({exc}).") from None
    if "prompt" not in tags:
        raise WorkflowError(f"{path} carries no ComfyUI workflow (no 'prompt' tag): only videos written by "
                            f"Kinetograph: Save Video or ComfyUI's SaveVideo do.")
    try:
        prompt = json.loads(tags["prompt"])
        ui = json.loads(tags["workflow"]) if "workflow" in tags else None
    except ValueError as exc:
        raise WorkflowError(f"{path}: its workflow tag is not valid JSON ({exc}).") from None
    return as_prompt(prompt, str(path)), ui


def as_prompt(data: Any, where: str = "the workflow") -> dict:
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data.get("prompt", {}):
        data = data["prompt"]  # the body of a POST /prompt
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise WorkflowError(f"{where} is a UI-format workflow (as ComfyUI's Save writes it). Run the API-format "
                            f"one: in ComfyUI use Workflow > Export (API); the examples come as *_api.json.")
    if not isinstance(data, dict) or not data:
        raise WorkflowError(f"{where} holds no nodes: an API-format workflow is a JSON object of "
                            f"{{node_id: {{\"class_type\": ..., \"inputs\": {{...}}}}}}.")
    if len(data) > MAX_NODES:
        raise WorkflowError(f"{where} has {len(data)} nodes; at most {MAX_NODES} are run.")
    return {str(k): v for k, v in data.items()}


# ---------------------------------------------------------------------------------- checking
def _is_link(value) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and not isinstance(value[0], bool) and isinstance(value[1], int) and not isinstance(value[1], bool))


def _where(node_id: str, class_type: str) -> str:
    return f"node {node_id} ({display_name(class_type)})"


def _spec(cls) -> dict[str, tuple[Any, dict, bool]]:
    """input name -> (type, options, required)."""
    types = cls.INPUT_TYPES()
    out = {}
    for section, required in (("required", True), ("optional", False)):
        for name, entry in (types.get(section) or {}).items():
            kind, options = entry[0], (entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {})
            out[name] = (kind, options, required)
    return out


def _type_name(kind) -> str:
    return "COMBO" if isinstance(kind, list) else str(kind)


def _accepts(expected, given: str) -> bool:
    if isinstance(expected, list):
        return given in ("COMBO", "*")
    if expected == "*" or given == "*":
        return True
    return given in str(expected).split(",") or expected == given


def validate(prompt: dict, types: dict[str, type] | None = None) -> list[str]:
    """Check the whole workflow; return the node ids to run, in order. Raises WorkflowError."""
    types = types if types is not None else node_types()
    problems: list[str] = []
    specs: dict[str, dict] = {}
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            problems.append(f"node {node_id} is not {{\"class_type\": ..., \"inputs\": {{...}}}}.")
            continue
        class_type = node["class_type"]
        if class_type not in types:
            problems.append(f"node {node_id}: unknown node type {class_type!r}. Headless runs know: "
                            f"{', '.join(sorted(types))}.")
            continue
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            problems.append(f"{_where(node_id, class_type)}: 'inputs' must be an object of input values and links.")
            continue
        specs[node_id] = _spec(types[class_type])
    if problems:
        raise WorkflowError("The workflow cannot run:\n  " + "\n  ".join(problems))
    for node_id, node in prompt.items():
        class_type, inputs = node["class_type"], node.get("inputs", {})
        spec = specs[node_id]
        where = _where(node_id, class_type)
        for name in inputs:
            if name not in spec:
                problems.append(f"{where}: unknown input {name!r}; it takes {', '.join(spec) or 'no inputs'}.")
        for name, (kind, options, required) in spec.items():
            if name not in inputs:
                if required:
                    problems.append(f"{where}: required input {name!r} ({_type_name(kind)}) is missing.")
                continue
            problem = _check_value(prompt, types, inputs[name], kind, options)
            if problem:
                problems.append(f"{where}, input {name!r}: {problem}")
    if problems:
        raise WorkflowError("The workflow cannot run:\n  " + "\n  ".join(problems))
    outputs = [n for n, node in prompt.items() if getattr(types[node["class_type"]], "OUTPUT_NODE", False)]
    if not outputs:
        raise WorkflowError("The workflow has no output node, so nothing would run: add Kinetograph: Save Video "
                            "(or Video Info) at the end.")
    return _order(prompt, outputs)


def _check_value(prompt, types, value, kind, options) -> str | None:
    if _is_link(value):
        source_id, index = str(value[0]), value[1]
        if source_id not in prompt:
            return f"links to node {source_id}, which is not in the workflow."
        source_types = types[prompt[source_id]["class_type"]].RETURN_TYPES
        if not 0 <= index < len(source_types):
            return (f"links to output {index} of node {source_id}, which has {len(source_types)} output(s) "
                    f"({', '.join(map(str, source_types))}).")
        given = _type_name(source_types[index])
        if not _accepts(kind, given):
            return f"takes {_type_name(kind)}, but node {source_id}'s output {index} is {given}."
        return None
    if isinstance(kind, list):
        return None if value in kind else f"{value!r} is not one of its choices: {', '.join(map(str, kind))}."
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"takes a whole number, got {value!r}."
        return _range(value, options)
    if kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"takes a number, got {value!r}."
        return _range(value, options)
    if kind == "STRING":
        return None if isinstance(value, str) else f"takes text, got {value!r}."
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"takes true or false, got {value!r}."
    return f"takes a {kind} link ([node_id, output_index]) from a node that outputs {kind}, not the value {value!r}."


def _range(value, options) -> str | None:
    low, high = options.get("min"), options.get("max")
    if low is not None and value < low:
        return f"{value!r} is below its minimum {low}."
    if high is not None and value > high:
        return f"{value!r} is above its maximum {high}."
    return None


def _order(prompt: dict, outputs: list[str]) -> list[str]:
    """The output nodes and their ancestors, each after what it depends on; a cycle is an error."""
    order: list[str] = []
    state: dict[str, str] = {}

    def deps(node_id: str) -> list[str]:
        return [str(v[0]) for v in prompt[node_id].get("inputs", {}).values() if _is_link(v)]

    for start in outputs:
        if state.get(start) == "done":
            continue
        state[start] = "visiting"
        stack = [(start, iter(deps(start)))]
        path = [start]
        while stack:
            node_id, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node_id] = "done"
                order.append(node_id)
                continue
            if state.get(child) == "visiting":
                loop = path[path.index(child):] + [child]
                raise WorkflowError("The workflow has a cycle: " + " -> ".join(
                    f"node {n} ({display_name(prompt[n]['class_type'])})" for n in loop)
                    + ". A node cannot depend on its own output; remove one of these links.")
            if state.get(child) != "done":
                state[child] = "visiting"
                stack.append((child, iter(deps(child))))
                path.append(child)
    return order


# ----------------------------------------------------------------------------------- running
@dataclass
class RunResult:
    outputs: dict[str, Any] = field(default_factory=dict)  # node id -> its "ui" dict (files, text)
    files: list[Path] = field(default_factory=list)
    results: dict[str, tuple] = field(default_factory=dict)  # node id -> its output values


ProgressFn = Callable[[str, str, int, int, int, int], None]  # node id, class, index, count, value, total


def run_workflow(prompt: dict, out_dir: str | Path = "outputs", input_dirs=(), ui_workflow: dict | None = None,
                 progress: ProgressFn | None = None) -> RunResult:
    """Validate, then run the workflow's output nodes and what they need; return what they made.

    ``out_dir``: where Save Video writes (ComfyUI's output folder); ``input_dirs``: where LoadImage /
    LoadVideo look for file names; ``ui_workflow``: embedded as the "workflow" tag beside the prompt;
    ``progress(node_id, class_type, index, count, value, total)``: each node's start (value -1) and its
    progress bar (value of total).
    """
    types = node_types()
    order = validate(prompt, types)
    glue = _glue()
    saved = dict(glue.HEADLESS)
    result = RunResult()
    try:
        glue.HEADLESS.update(output_dir=str(out_dir), input_dirs=[str(d) for d in input_dirs])
        for index, node_id in enumerate(order):
            class_type = prompt[node_id]["class_type"]
            if progress is not None:
                progress(node_id, class_type, index, len(order), -1, 0)
                glue.HEADLESS["progress"] = (lambda value, total, _n=node_id, _c=class_type, _i=index:
                                             progress(_n, _c, _i, len(order), value, total))
            values = _run_node(prompt, types, node_id, result.results, ui_workflow)
            result.results[node_id] = values["result"]
            if values.get("ui"):
                result.outputs[node_id] = values["ui"]
                for item in values["ui"].get("images", []) if isinstance(values["ui"], dict) else []:
                    result.files.append(Path(out_dir) / item.get("subfolder", "") / item["filename"])
    finally:
        glue.HEADLESS.clear()
        glue.HEADLESS.update(saved)
    return result


def _run_node(prompt, types, node_id: str, done: dict, ui_workflow) -> dict:
    node = prompt[node_id]
    class_type = node["class_type"]
    cls = types[class_type]
    kwargs = {}
    for name, value in node.get("inputs", {}).items():
        kwargs[name] = done[str(value[0])][value[1]] if _is_link(value) else value
    hidden = (cls.INPUT_TYPES().get("hidden") or {})
    for name, kind in hidden.items():
        kwargs[name] = {"PROMPT": prompt, "EXTRA_PNGINFO": {"workflow": ui_workflow} if ui_workflow else {},
                        "UNIQUE_ID": node_id}.get(kind)
    try:
        output = getattr(cls(), cls.FUNCTION)(**kwargs)
    except Exception as exc:
        if _is_kinetograph_error(exc, "JobCancelled"):
            raise JobCancelled(str(exc)) from None
        if _is_kinetograph_error(exc):
            raise WorkflowError(f"{_where(node_id, class_type)}: {exc}") from None
        raise
    if isinstance(output, dict):
        values, ui = tuple(output.get("result", ())), output.get("ui")
    else:
        values, ui = tuple(output), None
    if len(values) != len(cls.RETURN_TYPES):
        raise RuntimeError(f"{_where(node_id, class_type)} returned {len(values)} values for its "
                           f"{len(cls.RETURN_TYPES)} outputs.")
    return {"result": values, "ui": ui}
