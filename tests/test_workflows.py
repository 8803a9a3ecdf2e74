"""Workflows without ComfyUI (pipelines/workflows): every example runs headless and writes its video,
hostile workflow files are refused with clear messages, and the workflow exported for a job gives the
same frames as engine.run of that job."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines import engine
from pipelines.errors import KinetographError
from pipelines.jobs import ExtendJob, GenerateJob, InterpolateJob
from pipelines.video_io import read_frames, read_metadata
from pipelines.workflows import examples, runner
from pipelines.workflows.export import workflow_for_job

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "example_workflows"
SAMPLES = ROOT / "assets" / "samples"
TINY_API = sorted(EXAMPLES.glob("*_tiny_api.json"))


def test_example_files_are_what_the_builder_makes():
    files = examples.example_files()
    assert sorted(files) == sorted(p.name for p in EXAMPLES.glob("*.json"))
    for name, text in files.items():
        assert (EXAMPLES / name).read_text(encoding="utf-8") == text, f"{name}: run python -m pipelines.workflows.examples"
    tasks = {"t2v", "i2v", "first_last", "extend", "interpolate"}
    assert {p.name.split("_")[1].replace("first", "first_last") for p in TINY_API} == tasks
    assert {n for n in files if n.endswith("_ltx_api.json")} == {f"kinetograph_{t}_ltx_api.json" for t in tasks}


@pytest.mark.parametrize("path", TINY_API, ids=[p.stem for p in TINY_API])
def test_every_tiny_example_runs_headless_and_writes_its_video(path, tmp_path):
    prompt, _ui = runner.load_workflow_file(path)
    seen = []
    result = runner.run_workflow(prompt, out_dir=tmp_path, input_dirs=[SAMPLES],
                                 progress=lambda *event: seen.append(event))
    assert result.files and all(f.is_file() and f.stat().st_size > 0 for f in result.files)
    assert all(f.parent.parent == tmp_path for f in result.files)
    started = [e[0] for e in seen if e[4] == -1]
    assert started == runner.validate(prompt)  # one start line per node, in order
    assert any(e[4] > 0 for e in seen)  # and the generation's own progress
    with __import__("av").open(str(result.files[0])) as container:
        assert json.loads(container.metadata["prompt"]) == prompt


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*_api.json")), ids=lambda p: p.stem)
def test_every_example_validates_and_its_ui_format_matches(path):
    prompt, _ = runner.load_workflow_file(path)
    assert runner.validate(prompt)
    ui = json.loads(path.with_name(path.name.replace("_api.json", ".json")).read_text())
    assert {str(n["id"]): n["type"] for n in ui["nodes"]} == {k: v["class_type"] for k, v in prompt.items()}
    links = sum(1 for node in prompt.values() for v in node["inputs"].values() if isinstance(v, list))
    assert len(ui["links"]) == links == ui["last_link_id"]


def test_cli_workflow_run_and_validate(tmp_path):
    example = EXAMPLES / "kinetograph_t2v_tiny_api.json"
    done = subprocess.run([sys.executable, "app.py", "workflow", "validate", str(example)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "valid; 3 of its 3 nodes would run" in done.stdout
    done = subprocess.run([sys.executable, "app.py", "workflow", "run", str(example), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "[2/3] node 2: Kinetograph: Generate Video" in done.stderr
    video = tmp_path / "Kinetograph" / "t2v_00001_.mp4"
    assert f"wrote {video}" in done.stdout and read_metadata(video)["job"]["seed"] == 1
    # the video carries its workflow: it runs again from the file alone
    again = subprocess.run([sys.executable, "app.py", "workflow", "run", str(video), "--out", str(tmp_path / "b"),
                            "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert np.array_equal(read_frames(tmp_path / "b" / "Kinetograph" / "t2v_00001_.mp4"), read_frames(video))
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    done = subprocess.run([sys.executable, "app.py", "workflow", "run", str(bad)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr


# ------------------------------------------------------------------------------- hostile files
def _t2v():
    return json.loads((EXAMPLES / "kinetograph_t2v_tiny_api.json").read_text())


def _edit(change):
    prompt = _t2v()
    change(prompt)
    return prompt


HOSTILE = [
    (lambda p: p.update({"9": {"class_type": "KSamplerAdvanced", "inputs": {}}}), "node 9: unknown node type "
                                                                                  "'KSamplerAdvanced'"),
    (lambda p: p["3"]["inputs"].update(images=["7", 0]), "links to node 7, which is not in the workflow"),
    (lambda p: p["3"]["inputs"].update(images=["2", 9]), "links to output 9 of node 2, which has 3 output"),
    (lambda p: p["3"]["inputs"].update(images=["2", 2]), "input 'images': takes IMAGE, but node 2's output 2 is "
                                                         "KINETOGRAPH_JOB"),
    (lambda p: p["2"]["inputs"].update(steps="many"), "input 'steps': takes a whole number, got 'many'"),
    (lambda p: p["2"]["inputs"].update(steps=2.5), "takes a whole number, got 2.5"),
    (lambda p: p["2"]["inputs"].update(steps=True), "takes a whole number, got True"),
    (lambda p: p["2"]["inputs"].update(steps=100000), "100000 is above its maximum 500"),
    (lambda p: p["2"]["inputs"].update(fps=float("nan")), "takes a number, got nan"),
    (lambda p: p["2"]["inputs"].update(task="v2v"), "'v2v' is not one of its choices: t2v, i2v, keyframes"),
    (lambda p: p["2"]["inputs"].update(prompt=["x"]), "takes text, got \\['x'\\]"),
    (lambda p: p["2"]["inputs"].update(model="tiny-ltx"), "takes a KINETOGRAPH_MODEL link"),
    (lambda p: p["2"]["inputs"].pop("seed"), "required input 'seed' \\(INT\\) is missing"),
    (lambda p: p["2"]["inputs"].update(colour="red"), "unknown input 'colour'"),
    (lambda p: p["2"].update(inputs=[1, 2]), "'inputs' must be an object"),
    (lambda p: p.update({"4": "a node"}), "node 4 is not"),
    (lambda p: p.pop("3"), "no output node"),
    (lambda p: p.update({"4": {"class_type": "KinetographInterpolate", "inputs": {
        "images": ["5", 0], "fps": 16.0, "mode": "factor", "factor": 2, "target_fps": 60.0, "slowmo": False,
        "quality": "standard"}}, "5": {"class_type": "KinetographInterpolate", "inputs": {
            "images": ["4", 0], "fps": 16.0, "mode": "factor", "factor": 2, "target_fps": 60.0, "slowmo": False,
            "quality": "standard"}}, "6": {"class_type": "KinetographSaveVideo", "inputs": {
                "fps": 24.0, "filename_prefix": "x", "images": ["5", 0]}}}), "has a cycle: node 5 .* -> node 4 .* -> "
                                                                              "node 5"),
    (lambda p: p["2"]["inputs"].update(model=["2", 0]), "takes KINETOGRAPH_MODEL, but node 2's output 0 is IMAGE"),
]


@pytest.mark.parametrize("change, message", HOSTILE, ids=[m[:30] for _, m in HOSTILE])
def test_hostile_workflows_are_refused_before_anything_runs(change, message):
    with pytest.raises(runner.WorkflowError, match=message):
        runner.validate(_edit(change))


def test_a_self_loop_is_a_cycle():
    prompt = _t2v()
    prompt["2"]["inputs"]["image"] = ["2", 0]
    with pytest.raises(runner.WorkflowError, match="cycle: node 2 .* -> node 2"):
        runner.validate(prompt)


@pytest.mark.parametrize("text, message", [
    ("not json", "is not valid JSON"),
    ("[1, 2]", "holds no nodes"),
    ("{}", "holds no nodes"),
    ('{"nodes": [], "links": []}', "UI-format workflow .* Export \\(API\\)"),
    ('{"1": 5}', None),
])
def test_broken_files_are_refused(tmp_path, text, message):
    path = tmp_path / "w.json"
    path.write_text(text)
    if message is None:
        with pytest.raises(runner.WorkflowError, match="node 1 is not"):
            runner.validate(runner.load_workflow_file(path)[0])
        return
    with pytest.raises(runner.WorkflowError, match=message):
        runner.load_workflow_file(path)


def test_binary_and_missing_files_are_refused(tmp_path):
    path = tmp_path / "w.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(runner.WorkflowError, match="not UTF-8"):
        runner.load_workflow_file(path)
    with pytest.raises(runner.WorkflowError, match="no such file"):
        runner.load_workflow_file(tmp_path / "nope.json")
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video")
    with pytest.raises(runner.WorkflowError, match="cannot be read as a video"):
        runner.load_workflow_file(fake)


def test_a_node_error_names_the_node_and_the_input(tmp_path):
    prompt = _t2v()
    prompt["2"]["inputs"]["prompt"] = "   "
    with pytest.raises(KinetographError, match="node 2 \\(Kinetograph: Generate Video\\): Text-to-video needs a "
                                               "prompt: set the 'prompt' input"):
        runner.run_workflow(prompt, out_dir=tmp_path)
    assert not list(tmp_path.rglob("*.mp4"))


# ------------------------------------------------------------------------------------- export
@pytest.mark.parametrize("job", [
    GenerateJob(task="t2v", model="tiny-ltx", prompt="a fox", frames=9, width=64, height=64, steps=2, seed=5),
    GenerateJob(task="keyframes", model="tiny-wan", prompt="a fox", image=str(SAMPLES / "first.png"),
                last_image=str(SAMPLES / "last.png"), frames=9, width=64, height=64, steps=2, seed=6, guidance=2.0),
    ExtendJob(model="tiny-ltx", seconds=1.0, timeline=((0.0, "a fox", False), (0.5, "a hare", True)),
              segment_frames=17, steps=2, seed=7, width=64, height=64),
], ids=["t2v", "keyframes", "extend-timeline"])
def test_exported_workflow_gives_the_frames_of_engine_run(job, tmp_path):
    made = engine.run(dataclass_replace(job, out=str(tmp_path / "engine.mp4")))
    api, ui = workflow_for_job(made.job)
    assert {str(n["id"]) for n in ui["nodes"]} == set(api)
    result = runner.run_workflow(json.loads(json.dumps(api)), out_dir=tmp_path / "flow")
    (video,) = result.files
    ours, theirs = read_frames(video).astype(int), read_frames(made.path).astype(int)
    if isinstance(job, ExtendJob):
        # Known difference: Extend Video's frames are the extension's lossless output (extend_in_memory, crf 0)
        # and engine.run's file is that at crf 18; both are then x264-encoded from slightly different RGB, so
        # the decoded frames differ by the codec's loss (about 3-4 levels on the tiny models' noise, its worst
        # case), not equal bit for bit. Same length, same job.
        assert ours.shape == theirs.shape and np.abs(ours - theirs).mean() < 5.0
    else:
        assert np.array_equal(ours, theirs)
    meta = read_metadata(video)
    # the same job (a file input became a LoadImage's IMAGE: recorded, but not re-runnable with `rerun`)
    recorded = meta["job"] if "job" in meta else meta["source_job"]["job"]
    ignore = ("out", "image", "last_image")
    assert {k: v for k, v in recorded.items() if k not in ignore} == \
        {k: v for k, v in read_metadata(made.path)["job"].items() if k not in ignore}
    assert ("job" in meta) == (not getattr(job, "image", None))


def test_exported_interpolation_gives_the_frames_of_engine_run(tmp_path):
    clip = engine.run(GenerateJob(model="tiny-ltx", prompt="x", frames=9, width=64, height=64, steps=2, seed=2,
                                  out=str(tmp_path / "clip.mp4"))).path
    made = engine.run(InterpolateJob(input=str(clip), factor=2, out=str(tmp_path / "x2.mp4")))
    api, _ui = workflow_for_job(made.job)
    (video,) = runner.run_workflow(api, out_dir=tmp_path / "flow").files
    assert np.array_equal(read_frames(video), read_frames(made.path))


def test_export_refuses_a_job_without_a_seed():
    with pytest.raises(KinetographError, match="job as run"):
        workflow_for_job(GenerateJob(prompt="x"))


def dataclass_replace(job, **changes):
    import dataclasses

    return dataclasses.replace(job, **changes)
