"""The example workflows in ``example_workflows/`` (ComfyUI's template folder for a pack), each in UI
and API format: text-to-video, image-to-video, first/last frame, extend, interpolate; tiny-model
variants (run anywhere in seconds, make noise) and real-model variants.

``python -m pipelines.workflows.examples`` writes them; a test checks the files equal what this makes.
"""
from __future__ import annotations

import json
from pathlib import Path

from .export import Graph, add_save, model_inputs, ui_workflow

FOLDER = Path(__file__).resolve().parents[2] / "example_workflows"
TINY = {"model": "tiny-ltx", "frames": 9, "width": 64, "height": 64, "steps": 2}
REAL = {"model": "ltx-video", "frames": 0, "width": 0, "height": 0, "steps": 0}


def _generate(graph: Graph, model: str, settings: dict, task: str, prompt: str, images: dict) -> str:
    return graph.add("KinetographGenerate", model=graph.link(model, 0), task=task, prompt=prompt, negative_prompt="",
                     frames=settings["frames"], width=settings["width"], height=settings["height"], fps=0.0,
                     steps=settings["steps"], guidance=-1.0, seed=1, **images)


def t2v(settings: dict) -> dict:
    graph = Graph()
    model = graph.add("KinetographLoadModel", **model_inputs(settings["model"]))
    source = _generate(graph, model, settings, "t2v", "a red fox running through fresh snow, golden hour", {})
    add_save(graph, source, "Kinetograph/t2v")
    return graph.nodes


def i2v(settings: dict) -> dict:
    graph = Graph()
    model = graph.add("KinetographLoadModel", **model_inputs(settings["model"]))
    image = graph.add("LoadImage", image="first.png")
    source = _generate(graph, model, settings, "i2v", "the camera slowly pushes in", {"image": graph.link(image, 0)})
    add_save(graph, source, "Kinetograph/i2v")
    return graph.nodes


def first_last(settings: dict) -> dict:
    graph = Graph()
    model = graph.add("KinetographLoadModel", **model_inputs(settings["model"]))
    first = graph.add("LoadImage", image="first.png")
    last = graph.add("LoadImage", image="last.png")
    source = _generate(graph, model, settings, "keyframes", "the red square glides into the blue one",
                       {"image": graph.link(first, 0), "last_image": graph.link(last, 0)})
    add_save(graph, source, "Kinetograph/first_last")
    return graph.nodes


def extend(settings: dict) -> dict:
    graph = Graph()
    model = graph.add("KinetographLoadModel", **model_inputs(settings["model"]))
    clip = _generate(graph, model, settings, "t2v", "a red fox wakes up in the snow", {})
    timeline = graph.add("KinetographPromptTimeline",
                         timeline="0-1: the fox stands up and shakes off the snow\n1-2: the fox trots away")
    tiny = settings is TINY
    source = graph.add(
        "KinetographExtend", model=graph.link(model, 0), seconds=0.5 if tiny else 4.0, prompt="", negative_prompt="",
        fps=0.0, segment_frames=17 if tiny else 0, context_frames=0, overlap=-1, anchor=1.0, steps=settings["steps"],
        guidance=-1.0, seed=1, width=0, height=0, images=graph.link(clip, 0), source_fps=graph.link(clip, 1),
        timeline=graph.link(timeline, 0))
    add_save(graph, source, "Kinetograph/extended")
    return graph.nodes


def interpolate(settings: dict) -> dict:
    graph = Graph()
    model = graph.add("KinetographLoadModel", **model_inputs(settings["model"]))
    clip = _generate(graph, model, settings, "t2v", "a paper boat drifting on a pond", {})
    smooth = graph.add("KinetographInterpolate", images=graph.link(clip, 0), fps=24.0, mode="factor", factor=2,
                       target_fps=60.0, slowmo=False, quality="standard", source_fps=graph.link(clip, 1))
    add_save(graph, smooth, "Kinetograph/interpolated", job_output=None)
    graph.add("KinetographVideoInfo", fps=graph.link(smooth, 1), images=graph.link(smooth, 0))
    return graph.nodes


EXAMPLES = {
    "kinetograph_t2v_tiny": (t2v, TINY), "kinetograph_i2v_tiny": (i2v, TINY),
    "kinetograph_first_last_tiny": (first_last, TINY), "kinetograph_extend_tiny": (extend, TINY),
    "kinetograph_interpolate_tiny": (interpolate, TINY),
    "kinetograph_t2v_ltx": (t2v, REAL), "kinetograph_i2v_ltx": (i2v, REAL),
    "kinetograph_first_last_ltx": (first_last, REAL), "kinetograph_extend_ltx": (extend, REAL),
    "kinetograph_interpolate_ltx": (interpolate, REAL),
    "kinetograph_t2v_wan": (t2v, {**REAL, "model": "wan2.1-t2v-1.3b"}),
}


def example_files() -> dict[str, str]:
    """File name -> text, for every example in both formats."""
    files = {}
    for name, (build, settings) in EXAMPLES.items():
        api = build(settings)
        files[f"{name}_api.json"] = json.dumps(api, indent=2) + "\n"
        files[f"{name}.json"] = json.dumps(ui_workflow(api), indent=2) + "\n"
    return files


def write(folder: Path = FOLDER) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in example_files().items():
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    return written


if __name__ == "__main__":
    for path in write():
        print(path)
