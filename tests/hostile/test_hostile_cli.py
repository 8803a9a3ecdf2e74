"""Hostile input through the command line (issue 17): every case ends with exit 0 and a correct
result, or exit 2 and one `error:` line; never a traceback or a hang; nothing written outside the
output folder, nothing partial or hidden left, existing files byte-identical.

In-process (``app.main``) for speed; a few in a real subprocess, where a traceback would show."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import app

from .conftest import HOSTILE_NUMBERS, assert_clean_outcome, snapshot

REPO = Path(__file__).resolve().parents[2]
TINY = ["--model", "tiny-ltx", "--frames", "9", "--width", "64", "--height", "64", "--steps", "2", "--quiet"]
NO_MODEL = "./no-such-model-folder"  # valid numbers stop at the model (a clear error), not in a generation
pytestmark = pytest.mark.timeout(60)


def run_main(argv, capsys) -> tuple[int, str]:
    try:
        code = app.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse: a value that is not a number at all
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.err


@pytest.fixture
def place(tmp_path, monkeypatch, corpus):
    """cwd = tmp_path (default outputs land there), the output folder tmp_path/out, and the snapshot."""
    import logging

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    # diffusers' warnings go through a handler bound to the stderr of whichever test made it (closed since,
    # under capsys): quiet them here, so that a "--- Logging error ---" artifact is not read as a traceback.
    for name in ("diffusers", "transformers"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.ERROR)
    return tmp_path


def check(place, argv, capsys, allowed=("out/",)) -> tuple[int, str]:
    before = snapshot(place)
    code, err = run_main(argv, capsys)
    if code == 2 and "usage:" in err:  # argparse's own refusal: one 'prog: error:' line
        assert "Traceback" not in err and sum("error:" in line for line in err.splitlines()) == 1, err
        assert snapshot(place) == before
        return code, err
    assert_clean_outcome(code, err, before, snapshot(place), allowed)
    return code, err


# ------------------------------------------------------------------------------ broken media
MEDIA = ["empty file", "random bytes .mp4", "random bytes .png", "text named .mp4", "truncated mp4",
         "zero-frame mp4", "one-frame mp4", "decompression bomb png", "folder named x.mp4", "missing file",
         "rgba png"]


@pytest.mark.parametrize("name", MEDIA)
def test_interpolate_broken_media(name, place, corpus, capsys):
    code, err = check(place, ["interpolate", corpus[name], "--factor", "2", "--out", place / "out" / "o.mp4",
                              "--quiet"], capsys)
    assert code == 2


@pytest.mark.parametrize("name", MEDIA)
def test_info_and_rerun_broken_media(name, place, corpus, capsys):
    info_code, _ = check(place, ["info", corpus[name]], capsys)  # a cut file may still hold its metadata
    rerun_code, _ = check(place, ["rerun", corpus[name], "--output-dir", place / "out", "--quiet"], capsys)
    if name not in ("truncated mp4", "zero-frame mp4", "one-frame mp4"):
        assert info_code == rerun_code == 2


@pytest.mark.parametrize("name", ["empty file", "random bytes .png", "text named .mp4", "decompression bomb png",
                                  "folder named x.mp4", "missing file", "truncated mp4"])
def test_generate_with_a_broken_start_image(name, place, corpus, capsys):
    code, err = check(place, ["generate", "--task", "i2v", *TINY, "--prompt", "x", "--image", corpus[name],
                              "--out", place / "out" / "v.mp4"], capsys)
    assert code == 2


# ---------------------------------------------------------------------------- extreme numbers
GENERATE_NUMBERS = ["--budget-gb", "--ram-gb", "--fps", "--seconds", "--guidance", "--frames", "--width",
                    "--height", "--steps", "--seed"]


@pytest.mark.parametrize("flag", GENERATE_NUMBERS)
@pytest.mark.parametrize("value", HOSTILE_NUMBERS)
def test_generate_numbers(flag, value, place, capsys):
    args = ["generate", "--model", NO_MODEL, "--prompt", "x", flag, value, "--out", place / "out" / "v.mp4", "--quiet"]
    code, err = check(place, args, capsys)
    assert code == 2
    if value in ("nan", "inf", "1e308", str(2**63), "-1"):
        assert flag in err, err  # the error names the flag, in the CLI's words


@pytest.mark.parametrize("flag", ["--budget-gb", "--ram-gb", "--frames", "--width", "--height", "--steps",
                                  "--guidance", "--mode"])
@pytest.mark.parametrize("value", HOSTILE_NUMBERS + ["bogus"])
def test_plan_numbers(flag, value, place, capsys):
    code, err = check(place, ["plan", "--model", "wan2.1-14b", flag, value], capsys)
    if value in ("nan", "inf", "-1", "0", "1e308", str(2**63)) and flag in ("--budget-gb", "--ram-gb"):
        assert code == 2 and flag in err


def test_plan_and_generate_refuse_the_same_memory_options(place, capsys):
    """What plan rejects, generate rejects, with the same words (generate's flag is --memory-mode)."""
    for value in ("nan", "inf", "0", "-1", "1e308"):
        for flag in ("--budget-gb", "--ram-gb"):
            plan_code, plan_err = check(place, ["plan", "--model", "tiny-ltx", flag, value], capsys)
            gen_code, gen_err = check(place, ["generate", *TINY, "--prompt", "x", flag, value,
                                              "--out", place / "out" / "v.mp4"], capsys)
            assert plan_code == gen_code == 2 and plan_err == gen_err
    _, plan_err = check(place, ["plan", "--model", "tiny-ltx", "--mode", "bogus"], capsys)
    code, gen_err = check(place, ["generate", *TINY, "--prompt", "x", "--memory-mode", "bogus",
                                  "--out", place / "out" / "v.mp4"], capsys)
    assert code == 2 and "--memory-mode" in gen_err and plan_err.replace("--mode", "--memory-mode") == gen_err


@pytest.mark.parametrize("flag", ["--fps", "--factor", "--start", "--end"])
@pytest.mark.parametrize("value", ["nan", "inf", "1e308", "-1", "0", str(2**63), "0.001", "1e-9", ""])
def test_interpolate_numbers(flag, value, place, corpus, capsys):
    rate = [] if flag in ("--fps", "--factor") else ["--factor", "2"]
    code, err = check(place, ["interpolate", corpus["good video"], *rate, flag, value,
                              "--out", place / "out" / "o.mp4", "--quiet"], capsys)
    if code == 0:
        assert (place / "out" / "o.mp4").is_file()


def test_interpolate_generative_step_the_scheduler_cannot_take(place, corpus, capsys):
    code, err = check(place, ["interpolate", corpus["good video"], "--factor", "2", "--method", "generative",
                              "--model", "tiny-ltx", "--steps", "0", "--out", place / "out" / "o.mp4", "--quiet"],
                      capsys)
    assert code == 2 and "--steps" in err


def test_generate_one_step_the_scheduler_cannot_take_fails_before_denoising(place, capsys):
    code, err = check(place, ["generate", *TINY[:-3], "--steps", "1", "--prompt", "x", "--quiet",
                              "--out", place / "out" / "v.mp4"], capsys)
    assert code == 2 and "--steps = 1 is too few" in err


def test_empty_out_is_refused(place, corpus, capsys):
    assert check(place, ["generate", "--model", NO_MODEL, "--prompt", "x", "--out", ""], capsys)[0] == 2
    assert check(place, ["interpolate", corpus["good video"], "--factor", "2", "--out", "", "--quiet"], capsys)[0] == 2


# ------------------------------------------------------------------ prompts, names, path tricks
@pytest.mark.parametrize("prompt", ["x" * 1_000_001, "\x00", "   ", "\u202e\u200b"])
def test_hostile_prompts_are_refused(prompt, place, capsys):
    code, err = check(place, ["generate", "--model", NO_MODEL, "--prompt", prompt, "--out",
                              place / "out" / "v.mp4"], capsys)
    assert code == 2 and len(err) < 2000  # the message does not echo a megabyte back


def test_unicode_and_control_characters_in_a_prompt_generate(place, capsys):
    """A real tiny generation: the prompt is stored as given, the file is where --out says."""
    prompt = "a fox 🦊 ünïcödé \x1b[31mred\x1b[0m\ttab\nnewline"
    code, err = check(place, ["generate", *TINY, "--prompt", prompt, "--seed", "1", "--out",
                              place / "out" / "fox 🦊.mp4"], capsys)
    assert code == 0, err
    from pipelines.video_io import read_metadata

    assert read_metadata(place / "out" / "fox 🦊.mp4")["job"]["prompt"] == prompt


def test_generate_out_with_dotdot_stays_where_the_path_says(place, capsys):
    """--out is a path the user chose: out/sub/../v.mp4 is out/v.mp4 (nothing elsewhere)."""
    (place / "out" / "sub").mkdir()
    code, err = check(place, ["generate", *TINY, "--prompt", "x", "--seed", "2", "--out",
                              place / "out" / "sub" / ".." / "v.mp4"], capsys)
    assert code == 0 and (place / "out" / "v.mp4").is_file()


@pytest.mark.parametrize("name", ["../x", "/tmp/kinetograph-hostile-abs", "a" * 300, "a/../../b"])
def test_generate_name_stays_inside_the_output_folder(name, place, capsys):
    code, err = check(place, ["generate", *TINY, "--prompt", "x", "--seed", "2", "--name", name,
                              "--output-dir", place / "out"], capsys)
    assert not Path("/tmp/kinetograph-hostile-abs-2.mp4").exists()


def test_generate_out_under_an_existing_file_fails_before_the_work(place, corpus, capsys):
    code, err = check(place, ["generate", *TINY, "--prompt", "x", "--out", corpus["empty file"] / "v.mp4"], capsys)
    assert code == 2 and "denoise" not in err


def test_generate_out_name_not_utf8(place, capsys):
    out = place / "out" / os.fsdecode(b"bad-\xff\xfe.mp4")
    code, err = check(place, ["generate", *TINY, "--prompt", "x", "--out", out], capsys)
    assert code in (0, 2)


# -------------------------------------------------------------------------------- special files
# In a subprocess with a time limit: a hang is killed there, not in the test session.
def check_process(place, *args, timeout=8):
    before = snapshot(place)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    try:
        result = subprocess.run([sys.executable, str(REPO / "app.py"), *map(str, args)], capture_output=True,
                                text=True, env=env, cwd=place, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung: {args}")
    assert_clean_outcome(result.returncode, result.stderr, before, snapshot(place))
    return result.returncode


@pytest.mark.parametrize("command", ["info", "interpolate"])
def test_fifo_as_input_video_does_not_hang(command, place):
    fifo = place / "corpus" / "pipe.mp4"
    os.mkfifo(fifo)
    extra = ["--factor", "2", "--out", place / "out" / "o.mp4", "--quiet"] if command == "interpolate" else []
    assert check_process(place, command, fifo, *extra) == 2


def test_fifo_as_image_does_not_hang(place):
    fifo = place / "corpus" / "pipe.png"
    os.mkfifo(fifo)
    assert check_process(place, "generate", "--task", "i2v", *TINY, "--prompt", "x", "--image", fifo,
                         "--out", place / "out" / "v.mp4") == 2


def test_dev_zero_as_input_video_does_not_hang(place):
    assert check_process(place, "interpolate", "/dev/zero", "--factor", "2", "--out", place / "out" / "o.mp4",
                         "--quiet") == 2


# -------------------------------------------------------------------- notes (item 4), said aloud
def test_adaptations_are_said_on_the_cli_and_stored(place, capsys):
    """Rounded frames and size are printed as notes and stored in the metadata."""
    from pipelines.video_io import read_metadata

    out = place / "out" / "r.mp4"
    code, err = run_main(["generate", "--model", "tiny-ltx", "--prompt", "x", "--frames", "10", "--width", "70",
                          "--height", "64", "--steps", "2", "--seed", "1", "--out", out], capsys)
    assert code == 0, err
    assert "note: frames 10 -> 9" in err and "note: size 70x64 -> " in err
    notes = read_metadata(out)["notes"]
    assert any(n.startswith("frames 10 -> 9") for n in notes) and any(n.startswith("size 70x64") for n in notes)


# ---------------------------------------------------------------------------------- subprocess
def run_cli(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(REPO / "app.py"), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("args", [
    ("plan", "--model", "tiny-ltx", "--budget-gb", "nan"),
    ("plan", "--model", "tiny-ltx", "--ram-gb", "1e308"),
    ("generate", "--model", NO_MODEL, "--prompt", "x", "--budget-gb", "inf"),
    ("interpolate", "CORPUS/random.mp4", "--factor", "2"),
    ("info", "CORPUS/x.mp4"),
    ("interpolate", "CORPUS/good.mp4", "--fps", "0.0001"),
])
def test_in_a_real_process(args, place, capsys):
    args = [str(a).replace("CORPUS", str(place / "corpus")) for a in args]
    before = snapshot(place)
    result = run_cli(*args, cwd=place)
    assert_clean_outcome(result.returncode, result.stderr, before, snapshot(place))
    assert result.returncode == 2


def test_a_reader_that_stops_early_gets_no_traceback(place):
    """``app.py info X | true``: the pipe is closed before the metadata is printed (the child is still starting)."""
    reader = subprocess.Popen([sys.executable, str(REPO / "app.py"), "info", str(place / "corpus" / "good.mp4")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=place,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    reader.stdout.close()
    _, err = reader.communicate(timeout=120)
    assert reader.returncode == 141 and b"Traceback" not in err and b"Exception ignored" not in err, err


def test_a_transparent_start_image_is_said_to_be_composited(place, corpus, capsys):
    from pipelines.video_io import read_metadata

    out = place / "out" / "alpha.mp4"
    code, err = check(place, ["generate", "--task", "i2v", *TINY[:-1], "--prompt", "x", "--seed", "1",
                              "--image", corpus["rgba png"], "--out", out], capsys)
    assert code == 0, err
    assert "note: image " in err and "transparent areas; they were composited onto a white background" in err
    assert any("composited onto a white background" in n for n in read_metadata(out)["notes"])
