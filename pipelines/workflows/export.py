"""The ComfyUI workflow that reproduces a job, with the pack's nodes.

``workflow_for_job(job) -> (api_json, ui_json)``: the studio's "export as ComfyUI workflow" calls it
with a job from its history (as run: seed drawn). ``api_json`` is what ComfyUI's Export (API) writes and
``POST /prompt`` and ``python app.py workflow run`` take; ``ui_json`` is what ComfyUI's Save writes
and its "Open" and drag-and-drop load. Run headless, the API workflow gives the same frames as
``engine.run(job)`` (tests/test_workflows.py).

Files the job reads (a start image, an input video) are named by their paths: headless runs open
them there; in ComfyUI, copy them into ComfyUI's input folder (LoadImage / LoadVideo take a name there).
"""
from __future__ import annotations

from typing import Any

from ..errors import KinetographError
from ..families import PRESETS
from ..jobs import ExtendJob, InterpolateJob, JobSpec


class Graph:
    """A small API-format graph builder: ``add`` returns the new node's id; ``link(id, index)``."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict] = {}

    def add(self, class_type: str, **inputs) -> str:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id

    @staticmethod
    def link(node_id: str, index: int) -> list:
        return [node_id, index]


def model_inputs(model: str) -> dict[str, Any]:
    """Load Video Model's inputs for a model reference: a preset by name, anything else by path/repo."""
    if model in PRESETS:
        return {"model": model, "model_path": "", "dtype": "auto", "memory_mode": "auto", "vram_budget_gb": 0.0,
                "ram_budget_gb": 0.0}
    return {"model": "tiny-ltx", "model_path": str(model), "dtype": "auto", "memory_mode": "auto",
            "vram_budget_gb": 0.0, "ram_budget_gb": 0.0}


def _seed(job) -> int:
    if job.seed is None:
        raise KinetographError("Only a job as run (its seed drawn) can be exported: give the job from the "
                               "result (result.job), or set a seed.")
    return int(job.seed)


def add_generate(graph: Graph, job: JobSpec, model_node: str) -> str:
    images = {}
    for key in ("image", "last_image"):
        path = getattr(job, key)
        if path:
            images[key] = graph.link(graph.add("LoadImage", image=str(path)), 0)
    return graph.add("KinetographGenerate", model=graph.link(model_node, 0), task=job.task, prompt=job.prompt,
                     negative_prompt=job.negative_prompt or "", frames=job.frames or 0, width=job.width or 0,
                     height=job.height or 0, fps=float(job.fps or 0.0), steps=job.steps or 0,
                     guidance=-1.0 if job.guidance is None else float(job.guidance), seed=_seed(job), **images)


def add_save(graph: Graph, source: str, prefix: str, job_output: int | None = 2) -> str:
    inputs = {"fps": graph.link(source, 1), "filename_prefix": prefix, "images": graph.link(source, 0)}
    if job_output is not None:
        inputs["job"] = graph.link(source, job_output)
    return graph.add("KinetographSaveVideo", **inputs)


def timeline_text(cues) -> str:
    return "\n".join(f"{'[cut] ' if len(c) > 2 and c[2] else ''}{float(c[0]):g}: {c[1]}" for c in cues)


def workflow_for_job(job) -> tuple[dict, dict]:
    """(API-format, UI-format) workflow that makes ``job``'s video with the pack's nodes."""
    graph = Graph()
    if isinstance(job, JobSpec):
        model = graph.add("KinetographLoadModel", **model_inputs(job.model))
        if job.transformer:
            raise KinetographError("A job with a single-file transformer cannot be exported yet: the nodes take a "
                                   "diffusers folder or preset only.")
        source = add_generate(graph, job, model)
        add_save(graph, source, "Kinetograph/" + (job.name or "video"))
    elif isinstance(job, ExtendJob):
        model = graph.add("KinetographLoadModel", **model_inputs(job.model))
        extra: dict[str, Any] = {}
        if job.input:
            parts = graph.add("GetVideoComponents", video=graph.link(graph.add("LoadVideo", file=str(job.input)), 0))
            extra.update(images=graph.link(parts, 0), source_fps=graph.link(parts, 2))
        if job.timeline:
            extra["timeline"] = graph.link(graph.add("KinetographPromptTimeline",
                                                     timeline=timeline_text(job.timeline)), 0)
        source = graph.add(
            "KinetographExtend", model=graph.link(model, 0), seconds=float(job.seconds), prompt=job.prompt or "",
            negative_prompt=job.negative_prompt or "", fps=float(job.fps or 0.0),
            segment_frames=job.segment_frames or 0, context_frames=job.context_frames or 0,
            overlap=-1 if job.overlap is None else job.overlap, anchor=float(job.anchor), steps=job.steps or 0,
            guidance=-1.0 if job.guidance is None else float(job.guidance), seed=_seed(job), width=job.width or 0,
            height=job.height or 0, **extra)
        add_save(graph, source, "Kinetograph/" + (job.name or "extended"))
    elif isinstance(job, InterpolateJob):
        if job.start or job.end is not None:
            raise KinetographError("An interpolation of part of a video (start/end) cannot be exported yet; export "
                                   "the whole video's.")
        parts = graph.add("GetVideoComponents", video=graph.link(graph.add("LoadVideo", file=str(job.input)), 0))
        generative = job.method == "generative"
        source = graph.add(
            "KinetographInterpolate", images=graph.link(parts, 0), fps=30.0, source_fps=graph.link(parts, 2),
            mode="factor" if job.factor else "target fps", factor=job.factor or 2, target_fps=float(job.fps or 60.0),
            slowmo=bool(job.slowmo), quality=job.quality or "standard", method=job.method,
            model="ltx-video", model_path=(job.model or "") if generative else "", prompt=job.prompt or "",
            steps=job.steps or 0, seed=(_seed(job) if generative else 0))
        add_save(graph, source, "Kinetograph/interpolated", job_output=None)
    else:
        raise KinetographError(f"{type(job).__name__} is not a job that can be exported.")
    return graph.nodes, ui_workflow(graph.nodes)


# ------------------------------------------------------------------------------ UI format
def ui_workflow(api: dict) -> dict:
    """The UI-format workflow (ComfyUI's Save) of an API-format one: nodes laid out left to right by
    depth, widget values in each node's widget order (a seed widget followed by its "fixed" control),
    links as [id, from node, from slot, to node, to slot, type]."""
    from .runner import node_types, validate

    types = node_types()
    order = validate(api, types)
    depth: dict[str, int] = {}
    for node_id in order:
        parents = [str(v[0]) for v in api[node_id]["inputs"].values() if _is_link(v)]
        depth[node_id] = 1 + max((depth[p] for p in parents), default=-1)
    rows: dict[int, int] = {}
    nodes, links = [], []
    outputs: dict[tuple[str, int], list[int]] = {}
    for node_id in order:
        node, cls = api[node_id], types[api[node_id]["class_type"]]
        spec = _input_spec(cls)
        inputs, widgets = [], []
        for name, (kind, options) in spec.items():
            value = node["inputs"].get(name)
            is_widget = (isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN")) \
                and not options.get("forceInput")
            entry = {"name": name, "type": "COMBO" if isinstance(kind, list) else kind, "link": None}
            if _is_link(value):
                source_id, slot = str(value[0]), value[1]
                link_id = len(links) + 1
                links.append([link_id, int(source_id), slot, int(node_id), len(inputs),
                              str(types[api[source_id]["class_type"]].RETURN_TYPES[slot])])
                entry["link"] = link_id
                outputs.setdefault((source_id, slot), []).append(link_id)
            if is_widget:
                entry["widget"] = {"name": name}
                widgets.append(value if not _is_link(value) and value is not None else options.get(
                    "default", kind[0] if isinstance(kind, list) else None))
                if options.get("control_after_generate") or (kind == "INT" and name in ("seed", "noise_seed")):
                    widgets.append("fixed")
            if not is_widget or entry["link"] is not None:
                inputs.append(entry)
            elif is_widget:
                inputs.append(entry)
        column = depth[node_id]
        row = rows.get(column, 0)
        rows[column] = row + 1
        names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
        nodes.append({
            "id": int(node_id), "type": node["class_type"], "pos": [60 + 380 * column, 60 + 420 * row],
            "size": [340, 380], "flags": {}, "order": len(nodes), "mode": 0,
            "inputs": inputs,
            "outputs": [{"name": str(names[i]).lower(), "type": str(t), "links": [], "slot_index": i}
                        for i, t in enumerate(cls.RETURN_TYPES)],
            "properties": {"Node name for S&R": node["class_type"]},
            "widgets_values": widgets,
        })
    for entry in nodes:
        for output in entry["outputs"]:
            output["links"] = outputs.get((str(entry["id"]), output["slot_index"]), [])
    return {"last_node_id": max((n["id"] for n in nodes), default=0), "last_link_id": len(links), "nodes": nodes,
            "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4}


def _input_spec(cls) -> dict[str, tuple[Any, dict]]:
    types = cls.INPUT_TYPES()
    out = {}
    for section in ("required", "optional"):
        for name, entry in (types.get(section) or {}).items():
            out[name] = (entry[0], entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {})
    return out


def _is_link(value) -> bool:
    from .runner import _is_link as is_link

    return is_link(value)
