"""The web studio driven through gradio_client on tiny models: every named endpoint, cancel, restore
settings, bad and hostile input (clear errors, the server keeps serving, nothing written outside the
outputs folder), two clients served in order."""
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

TINY = dict(model="tiny-ltx", frames=9, width=64, height=64, steps=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from studio import jobs
    from studio.app import build

    root = tmp_path_factory.mktemp("studio")
    config = jobs.StudioConfig(outputs=root / "outputs", uploads=root / "uploads", max_upload_seconds=60)
    demo = build(config)
    demo.queue(default_concurrency_limit=4)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=True,
                allowed_paths=[str(config.outputs), str(config.uploads)], max_file_size=config.max_upload_bytes)
    url = f"http://127.0.0.1:{port}/"
    yield {"url": url, "config": config, "root": root, "demo": demo}
    demo.close()
    demo.runner.worker.shutdown(wait=False, cancel_running=True)


@pytest.fixture(scope="module")
def client(studio):
    return Client(studio["url"], verbose=False)


@pytest.fixture(scope="module")
def made(client, studio):
    """One generated clip, shared by the tests that extend, interpolate and restore it."""
    video, meta = client.predict(prompt="a red fox", seed=3, api_name="/generate", **TINY)
    return video, meta


def files_outside(root: Path, config) -> set[str]:
    keep = (config.outputs, config.uploads)
    return {str(p) for p in root.rglob("*") if p.is_file() and not any(p.is_relative_to(k) for k in keep)}


def test_generate_returns_the_video_and_its_metadata(made, studio):
    video, meta = made
    assert Path(video).is_file() and Path(video).stat().st_size > 0
    assert meta["frames"] == 9 and meta["width"] == 64 and meta["seed"] == 3
    assert meta["job"]["prompt"] == "a red fox" and meta["job"]["model"] == "tiny-ltx"
    assert Path(meta["output"]).is_relative_to(studio["config"].outputs)  # written in the outputs folder


def test_extend_an_uploaded_video(client, made, studio):
    video, meta = client.predict(video=handle_file(made[0]), source="upload", model="tiny-ltx", seconds=0.5,
                                 prompt="it runs", segment_frames=17, steps=2, seed=1, api_name="/extend")
    assert Path(video).is_file()
    assert meta["kind"] == "extend" and meta["frames"] > made[1]["frames"]
    assert Path(meta["output"]).is_relative_to(studio["config"].outputs)  # not beside the uploaded copy


def test_extend_the_last_result_with_a_timeline(client, made):
    _video, meta = client.predict(source="last result", model="tiny-ltx", seconds=0.5, segment_frames=17,
                                  timeline="0-0.2: it runs\n0.2: it stops", steps=2, seed=1, api_name="/extend")
    assert meta["kind"] == "extend" and meta["job"]["timeline"]


def test_interpolate_by_factor_and_to_an_fps(client, made, studio):
    _video, meta = client.predict(video=handle_file(made[0]), factor=2, api_name="/interpolate")
    assert meta["kind"] == "interpolate" and meta["fps"] == pytest.approx(2 * made[1]["fps"])
    assert Path(meta["output"]).is_relative_to(studio["config"].outputs)
    _video, meta = client.predict(video=handle_file(made[0]), by="fps", fps=60, quality="best",
                                  api_name="/interpolate")
    assert meta["fps"] == pytest.approx(60)


def test_restore_settings_from_an_output(client, made):
    restored = client.predict(output=handle_file(made[0]), api_name="/restore_settings")
    assert restored["kind"] == "generate" and restored["job"]["seed"] == 3
    assert restored["job"]["prompt"] == "a red fox" and restored["job"]["frames"] == 9


def test_run_again_and_vary_seed(client, made):
    again_video, again = client.predict(output=made[1]["output"], api_name="/rerun")
    assert again["seed"] == 3 and again["output"] != made[1]["output"]
    _v, varied = client.predict(output=made[1]["output"], vary_seed=True, api_name="/rerun")
    assert varied["seed"] != 3


def test_cancel_a_running_job(studio):
    client = Client(studio["url"], verbose=False)
    before = set(studio["config"].outputs.rglob("*.mp4"))
    job = client.submit(prompt="long one", model="tiny-ltx", frames=33, width=128, height=128, steps=500,
                        api_name="/generate")
    runner = studio["demo"].runner
    deadline = time.time() + 60
    while time.time() < deadline and 0 not in runner.worker.queue_positions().values():
        time.sleep(0.05)
    assert "Cancelling 1" in client.predict(api_name="/cancel")
    with pytest.raises(AppError, match="cancelled"):
        job.result(timeout=60)
    assert set(studio["config"].outputs.rglob("*.mp4")) == before  # nothing written
    _v, meta = client.predict(prompt="after cancel", seed=1, api_name="/generate", **TINY)  # still serving
    assert meta["frames"] == 9


def test_bad_input_is_a_clear_error_and_the_server_keeps_serving(client):
    with pytest.raises(AppError, match="start image"):
        client.predict(prompt="x", task="i2v", api_name="/generate", **TINY)
    with pytest.raises(AppError, match="needs a prompt"):
        client.predict(prompt="   ", api_name="/generate", **TINY)
    with pytest.raises(AppError, match="no last result|upload a video"):
        Client(client.src, verbose=False).predict(source="last result", prompt="x", seconds=1,
                                                  api_name="/extend")
    _v, meta = client.predict(prompt="still here", seed=5, api_name="/generate", **TINY)
    assert meta["seed"] == 5


@pytest.mark.parametrize("settings, message", [
    (dict(frames="nan"), "finite|number"),
    (dict(width=1e300), "whole number|out of range"),
    (dict(width=10**12), "out of range"),
    (dict(steps=-3), "out of range"),
    (dict(guidance="inf"), "finite|number"),
    (dict(fps="-inf"), "finite|number"),
    (dict(seed=2**40), "out of range"),
    (dict(name="../../escaped"), "not a path"),
    (dict(name="/tmp/escaped"), "not a path"),
    (dict(name="a\x00b"), "NUL"),
    (dict(model="../../../../etc"), "."),
    (dict(task="rm -rf"), "Unknown task"),
    (dict(prompt="x" * 50000), "characters long"),
])
def test_hostile_generate_values(client, studio, settings, message):
    before = files_outside(studio["root"], studio["config"])
    values = {**TINY, "prompt": "x", **settings}
    with pytest.raises(AppError, match=message):
        client.predict(api_name="/generate", **values)
    assert files_outside(studio["root"], studio["config"]) == before
    assert not list(Path("/tmp").glob("escaped*"))


@pytest.mark.parametrize("endpoint, settings, message", [
    ("/interpolate", dict(factor="nan"), "finite|number"),
    ("/interpolate", dict(by="fps", fps="inf"), "finite|number"),
    ("/interpolate", dict(factor=10**9), "out of range"),
    ("/extend", dict(seconds="nan", prompt="x", source="upload"), "finite|number"),
    ("/extend", dict(seconds=1e12, prompt="x", source="upload"), "out of range"),
    ("/extend", dict(seconds=1, prompt="x", source="upload", name="../../out"), "not a path"),
    ("/extend", dict(seconds=1, timeline="not a cue at all", source="upload"), "timeline"),
])
def test_hostile_extend_and_interpolate_values(client, made, studio, endpoint, settings, message):
    before = files_outside(studio["root"], studio["config"])
    with pytest.raises(AppError, match=message):
        client.predict(video=handle_file(made[0]), api_name=endpoint, **settings)
    assert files_outside(studio["root"], studio["config"]) == before


def test_hostile_uploads_and_paths(client, studio, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    with pytest.raises(AppError, match="not a video file"):
        client.predict(video=handle_file(str(text)), factor=2, api_name="/interpolate")
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00" * 1000)
    with pytest.raises(AppError):
        client.predict(video=handle_file(str(fake)), factor=2, api_name="/interpolate")
    with pytest.raises(AppError, match="not in the outputs folder|not a Kinetograph output"):
        client.predict(output="/etc/passwd", api_name="/rerun")
    with pytest.raises(AppError, match="not in the outputs folder|not a Kinetograph output"):
        client.predict(output="../../../../etc/hostname", api_name="/rerun")
    with pytest.raises(AppError, match="FileData"):  # a bare server path is no upload: gradio refuses it
        client.predict(output="/etc/hostname", api_name="/restore_settings")
    with pytest.raises(AppError, match="carries no Kinetograph settings|not a Kinetograph output"):
        client.predict(output=handle_file(str(fake)), api_name="/restore_settings")
    _v, meta = client.predict(prompt="fine", seed=2, api_name="/generate", **TINY)  # still serving
    assert meta["seed"] == 2


def test_non_finite_numbers_are_refused_before_any_job():
    from pipelines.errors import KinetographError
    from studio import jobs

    for bad in (float("nan"), float("inf"), "nan", "-inf", True, 1.5, [1]):
        with pytest.raises(KinetographError):
            jobs.as_int(bad, "frames")
    for bad in (float("nan"), float("-inf"), "inf", False, "x"):
        with pytest.raises(KinetographError):
            jobs.as_float(bad, "fps")
    assert jobs.as_int(9.0, "frames") == 9 and jobs.as_int("", "frames") is None
    assert jobs.seed_value(-1) is None and jobs.seed_value(7) == 7 and jobs.seed_value(7, randomise=True) is None


def test_upload_duration_limit(studio, tmp_path):
    import numpy as np

    from pipelines.errors import KinetographError
    from pipelines.video_io import VideoWriter
    from studio import jobs

    clip = tmp_path / "long.mp4"
    with VideoWriter(clip, fps=1) as writer:
        writer.write(np.zeros((5, 32, 32, 3), np.uint8))
    config = jobs.StudioConfig(outputs=tmp_path / "o", uploads=tmp_path / "u", max_upload_seconds=2).prepare()
    with pytest.raises(KinetographError, match="up to 2 s"):
        jobs.stage_upload(str(clip), "Video", config, kind="video")
    small = jobs.StudioConfig(outputs=tmp_path / "o", uploads=tmp_path / "u", max_upload_bytes=10).prepare()
    with pytest.raises(KinetographError, match="up to 0 MB|MB"):
        jobs.stage_upload(str(clip), "Video", small, kind="video")


def test_two_clients_at_once_are_served_in_order(studio):
    first, second = Client(studio["url"], verbose=False), Client(studio["url"], verbose=False)
    runner = studio["demo"].runner
    a = first.submit(prompt="first", seed=11, api_name="/generate", **{**TINY, "steps": 6})
    deadline = time.time() + 30
    while time.time() < deadline and not runner.worker.queue_positions():
        time.sleep(0.05)
    b = second.submit(prompt="second", seed=12, api_name="/generate", **TINY)
    results = {}
    threads = [threading.Thread(target=lambda k=k, j=j: results.__setitem__(k, j.result(timeout=300)))
               for k, j in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (_va, ma), (_vb, mb) = results["a"], results["b"]
    assert ma["seed"] == 11 and mb["seed"] == 12
    assert Path(ma["output"]).stat().st_mtime <= Path(mb["output"]).stat().st_mtime  # first in, first out


def test_import_app_stays_light():
    import subprocess
    import sys

    code = "import app, sys; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], check=True)
    assert out.stdout.strip() == "False"


def test_studio_form_rules_follow_the_family():
    from studio.app import form_rules, model_choices

    ltx, wan = form_rules("ltx-video"), form_rules("tiny-wan")
    assert ltx["frames"]["step"] == 8 and ltx["frames"]["minimum"] == 9 and ltx["width"]["step"] == 32
    assert wan["frames"]["step"] == 4 and wan["width"]["step"] == 16 and wan["frames"]["value"] == 9
    labels = dict((v, k) for k, v in model_choices())
    assert "noise: smoke tests" in labels["tiny-ltx"] and "noise" not in labels["ltx-video"]
    assert "svd-xt" not in dict((v, k) for k, v in model_choices("t2v"))


def test_export_as_comfyui_workflow_makes_the_same_frames_headless(client, made, tmp_path):
    """History's export: the API-format workflow, run by the headless runner, remakes the output."""
    import numpy as np

    from pipelines.video_io import read_frames
    from pipelines.workflows import runner

    _video, meta = made
    files = client.predict(output=meta["output"], api_name="/export_workflow")
    paths = sorted(Path(f["path"] if isinstance(f, dict) else f) for f in files)
    api = json.loads(next(p for p in paths if p.name.endswith(".comfyui_api.json")).read_text())
    ui = json.loads(next(p for p in paths if p.name.endswith(".comfyui.json")).read_text())
    assert {str(n["id"]) for n in ui["nodes"]} == set(api)
    (video,) = runner.run_workflow(api, out_dir=tmp_path / "flow").files
    assert np.array_equal(read_frames(video), read_frames(meta["output"]))


def test_jobs_run_one_at_a_time_by_default_and_in_parallel_when_configured(tmp_path):
    """config.gpu_jobs workers: 1 (default) runs jobs in turn, 2 runs two at once."""
    import dataclasses

    from pipelines.worker import Worker
    from studio import jobs

    def runner_with(gpu_jobs):
        running, most = [], []
        lock = threading.Lock()

        def run(job, events=None, cancel=None, manager=None, **options):
            with lock:
                running.append(job)
                most.append(len(running))
            time.sleep(0.3)
            with lock:
                running.remove(job)
            return job

        config = dataclasses.replace(jobs.StudioConfig(outputs=tmp_path / "o", uploads=tmp_path / "u"),
                                     gpu_jobs=gpu_jobs)
        workers = [Worker(run=run, manager=object()) for _ in range(config.gpu_jobs)]
        return jobs.Runner(config, workers=workers), most

    for gpu_jobs, expected in ((1, 1), (2, 2)):
        runner, most = runner_with(gpu_jobs)
        from pipelines.jobs import InterpolateJob

        tickets = [runner.submit(InterpolateJob(input=f"{i}.mp4", factor=2), "s")[0] for i in range(4)]
        for ticket in tickets:
            ticket.result(timeout=10)
        assert max(most) == expected
        for worker in runner.workers:
            worker.shutdown()
    with pytest.raises(Exception, match="from 1 to 16"):
        jobs.gpu_jobs_setting("0")
