"""The command line: the README's first generation in a real subprocess, the rest in-process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import app
from pipelines.video_io import iter_frames, probe_video, read_metadata

REPO = Path(__file__).resolve().parents[1]
TINY = ["--frames", "9", "--width", "64", "--height", "64", "--steps", "2"]


def run_cli(*args):
    """python app.py ... in a fresh interpreter, as a user runs it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(REPO / "app.py"), *args], capture_output=True, text=True,
                          env=env, cwd=os.environ.get("CLI_TEST_CWD", REPO), timeout=300)


def test_readme_generation_writes_a_playable_reproducible_mp4(tmp_path):
    out = tmp_path / "a.mp4"
    args = ["generate", "--task", "t2v", "--model", "tiny-ltx", "--prompt", "a red fox", "--frames", "9",
            "--width", "64", "--height", "64", "--steps", "2", "--seed", "3", "--quiet"]
    first = run_cli(*args, "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert str(out) in first.stdout
    info = probe_video(out)
    assert info.frame_count == 9 and info.codec == "h264"
    meta = read_metadata(out)
    assert meta["job"]["prompt"] == "a red fox" and meta["seed"] == 3

    second = run_cli(*args, "--out", str(out))  # same command again: a new file, same frames
    assert second.returncode == 0, second.stderr
    again = tmp_path / "a-1.mp4"
    assert again.exists() and "already exists" in second.stdout
    assert np.array_equal(np.stack(list(iter_frames(out))), np.stack(list(iter_frames(again))))


@pytest.mark.parametrize("task, model", [("t2v", "tiny-wan"), ("i2v", "tiny-ltx"), ("i2v", "tiny-wan"),
                                         ("keyframes", "tiny-ltx"), ("keyframes", "tiny-wan")])
def test_each_task_through_the_cli(task, model, sample_images, tmp_path, capsys):
    args = ["generate", "--task", task, "--model", model, "--prompt", "a red fox", *TINY, "--seed", "5",
            "--out", str(tmp_path / "v.mp4"), "--quiet", "--json"]
    if task in ("i2v", "keyframes"):
        args += ["--image", sample_images[0]]
    if task == "keyframes":
        args += ["--last-image", sample_images[1]]
    assert app.main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["frames"] == 9 and printed["seed"] == 5
    assert read_metadata(printed["path"])["job"]["task"] == task


def test_user_errors_print_one_line_and_exit_2(tmp_path):
    result = run_cli("generate", "--model", "tiny-ltx", "--prompt", "x", "--frames", "0",
                     "--out", str(tmp_path / "x.mp4"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: --frames = 0") and "Traceback" not in result.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_models_lists_families_presets_and_availability(capsys):
    assert app.main(["models"]) == 0
    text = capsys.readouterr().out
    for word in ("tiny-ltx", "tiny-wan", "tiny-animatediff", "wan2.1-14b", "svd-xt", "SkyReels", "8k+1", "4k+1"):
        assert word in text
    assert app.main(["models", "--json"]) == 0
    catalog = json.loads(capsys.readouterr().out)
    assert {p["id"] for p in catalog["presets"]} >= {"tiny-ltx", "ltx-video", "wan2.1-t2v-1.3b"}


def test_info_prints_embedded_settings(tmp_path, capsys):
    out = tmp_path / "v.mp4"
    assert app.main(["generate", "--model", "tiny-wan", "--prompt", "hello", *TINY, "--seed", "1",
                     "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert app.main(["info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["job"]["prompt"] == "hello"


def test_no_subcommand_starts_the_studio(monkeypatch):
    import studio.app

    calls = []
    monkeypatch.setattr(studio.app, "launch", lambda **kw: calls.append(kw))
    assert app.main([]) == 0
    assert app.main(["ui", "--port", "8123", "--host", "127.0.0.1", "--gpu-jobs", "2"]) == 0
    # GRADIO_SERVER_NAME/PORT and KINETOGRAPH_GPU_JOBS then apply
    assert calls[0] == {"host": None, "port": None, "outputs": None, "gpu_jobs": None}
    assert calls[1]["port"] == 8123 and calls[1]["host"] == "127.0.0.1" and calls[1]["gpu_jobs"] == 2


def test_plan_needs_no_weights_and_prints_json(capsys):
    assert app.main(["plan", "--model", "wan2.1-14b", "--frames", "81", "--width", "832", "--height", "480",
                     "--budget-gb", "8", "--ram-gb", "64", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["predicted_peak_vram_gb"] <= 8 and plan["predicted_peak_ram_gb"] <= 64
    assert plan["placement"]["transformer"]["placement"] != "gpu"  # 14B cannot sit whole in 8 GB
    assert app.main(["plan", "--model", "wan2.1-14b", "--budget-gb", "80", "--ram-gb", "64"]) == 0
    assert "Predicted peak VRAM" in capsys.readouterr().out


def test_plan_measures_a_local_folder(capsys):
    from pipelines.models import ensure_tiny_model

    assert app.main(["plan", "--model", str(ensure_tiny_model("tiny-wan")), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert set(plan["placement"]) >= {"transformer", "vae", "text_encoder"}


def _moving_square_video(path, frames=10, fps=8.0):
    from pipelines.video_io import write_video

    video = np.zeros((frames, 64, 96, 3), np.uint8)
    video[:] = (30, 60, 90)
    for i in range(frames):
        video[i, 20:40, 10 + 4 * i:30 + 4 * i] = (250, 200, 40)
    return write_video(path, video, fps)


def test_interpolate_doubles_the_frame_rate(tmp_path, capsys):
    src = _moving_square_video(tmp_path / "clip.mp4")
    out = tmp_path / "smooth.mp4"
    assert app.main(["interpolate", str(src), "--factor", "2", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "19 frames" in printed and "ms per output frame" in printed  # the time is per frame written
    info = probe_video(out)
    assert info.frame_count == 19 and abs(info.fps - 16.0) < 1e-6
    assert app.main(["interpolate", str(src), "--fps", "20", "--quiet"]) == 0  # default name beside the input
    assert probe_video(tmp_path / "clip-20fps.mp4").fps == 20


def test_interpolate_quality_choices_are_the_engines():
    """app.py lists the names itself (importing the engine would slow every command's start)."""
    from pipelines.interpolation.flow import QUALITY_SETTINGS

    interpolate = app.build_parser()._subparsers._group_actions[0].choices["interpolate"]
    quality = next(action for action in interpolate._actions if action.dest == "quality")
    assert list(quality.choices) == list(QUALITY_SETTINGS)


def test_interpolate_quality_best_is_recorded_with_the_result(tmp_path, capsys):
    from pipelines.video_io import read_metadata

    src = _moving_square_video(tmp_path / "clip.mp4")
    out = tmp_path / "best.mp4"
    assert app.main(["interpolate", str(src), "--factor", "2", "--quality", "best", "--out", str(out), "--quiet"]) == 0
    settings = read_metadata(out)["interpolation"]
    assert settings["quality"] == "best" and settings["motion_estimates"] == 2
    assert probe_video(out).frame_count == 19


def test_interpolate_bad_input_is_a_clear_error(tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"no video here")
    assert app.main(["interpolate", str(broken), "--factor", "2", "--quiet"]) == 2
    assert "broken.mp4" in capsys.readouterr().err
    src = _moving_square_video(tmp_path / "clip.mp4")
    assert app.main(["interpolate", str(src), "--factor", "1000", "--quiet"]) == 2
    assert not list(tmp_path.glob("clip-x1000*"))


def test_terminal_progress_shows_nested_stages_beside_the_current_bar(capsys):
    from pipelines.events import Events

    bar = app.TerminalProgress()
    events = Events([bar])
    events.nested("interpolate", 0, 10).progress("denoise", 1, 4)  # no bar yet: nothing to annotate, no error
    events.progress("interpolate", 2, 10)
    events.nested("interpolate", 2, 10).progress("denoise", 3, 4)
    assert bar.bar.n == 2 and bar.bar.postfix == "denoise 3/4"
    bar.close()
    assert "denoise 3/4" in capsys.readouterr().err
    quiet = app.TerminalProgress(enabled=False)
    Events([quiet]).progress("interpolate", 1, 2)
    assert quiet.bar is None
