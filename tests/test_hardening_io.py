"""Issue 17, items 2 and 3: output paths checked before any work, names that never leave their
folder, temporary files per writer, clean-up on SIGTERM/SIGHUP, stale partials; inputs opened
safely (only regular files, limits, probe time limits) and images of every common mode."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app
from pipelines import output_paths, video_io
from pipelines.errors import KinetographError
from pipelines.jobs import GenerateJob
from pipelines.output_paths import busy_with, check_file_name, check_output_path, remove_stale_temporaries
from pipelines.video_io import (
    VideoWriter,
    probe_video,
    read_image,
    read_metadata,
    unique_output_path,
    write_video,
)

REPO = Path(__file__).resolve().parents[1]
FOOTAGE = REPO.parent / "shared" / "footage"
INTERNAL_NAMES = ("unique_output_path", "overwrite=True", "VideoWriter", "audio_source=None")
TINY = ["--frames", "9", "--width", "64", "--height", "64", "--steps", "2", "--seed", "1"]


def frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = [np.stack([x / width * 200 + 3 * t, y / height * 200, np.full_like(x, 60 + t % 100)], axis=-1)
           for t in range(count)]
    return np.clip(np.array(out), 0, 255).astype(np.uint8)


def all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def dead_pid() -> int:
    """The pid of a process that has exited (and was reaped): not alive."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def finishes_within(seconds: float, call):
    """Run ``call`` in a thread; fail (instead of hanging the suite) if it takes longer."""
    outcome = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: it hangs"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# ------------------------------------------------------------------------- output paths
def test_output_under_an_existing_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(KinetographError, match=r"notes.txt is a file, not a folder"):
        check_output_path(tmp_path / "notes.txt" / "sub" / "clip.mp4")
    assert all_files(tmp_path) == ["notes.txt"]


def test_output_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "clip.mp4").mkdir()
    with pytest.raises(KinetographError, match="is a folder"):
        check_output_path(tmp_path / "clip.mp4")
    with pytest.raises(KinetographError, match="names a folder"):
        check_output_path(f"{tmp_path}/videos/")


def test_output_name_messages_say_what_is_wrong(tmp_path):
    with pytest.raises(KinetographError) as only_suffix:
        check_output_path(tmp_path / ".mp4")
    assert "no name before .mp4" in str(only_suffix.value) and "must end in" not in str(only_suffix.value)
    with pytest.raises(KinetographError) as spaced:
        check_output_path(str(tmp_path / "clip.mp4 "))
    assert "spaces" in str(spaced.value) and "must end in" not in str(spaced.value)
    with pytest.raises(KinetographError, match="must end in .mp4"):
        check_output_path(tmp_path / "clip.mov")
    assert check_output_path(tmp_path / "Clip.MP4") == tmp_path / "Clip.MP4"  # the suffix in any case
    with pytest.raises(KinetographError, match="empty"):
        check_output_path("")
    with pytest.raises(KinetographError, match="control characters"):
        check_output_path(tmp_path / "a\nb.mp4")


def test_output_name_too_long_for_the_filesystem_is_refused_before_work(tmp_path):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    with pytest.raises(KinetographError, match="too long"):
        check_output_path(tmp_path / ("a" * limit + ".mp4"))
    # fits as a final name, but not its hidden temporary names (".<stem>.<pid>-<random>.partial.mp4")
    with pytest.raises(KinetographError, match="too long"):
        check_output_path(tmp_path / ("a" * (limit - 10) + ".mp4"))
    short = check_output_path(tmp_path / ("a" * (limit - 60) + ".mp4"))
    write_video(short, frames(2), fps=8, preset="ultrafast")  # what the check allows, the writer writes
    assert short.exists()


def test_output_name_that_is_not_utf8_is_refused(tmp_path):
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/clip-\xff.mp4")
    with pytest.raises(KinetographError, match="not valid UTF-8"):
        check_output_path(name)
    assert all_files(tmp_path) == []


def test_output_folder_that_cannot_be_written_is_refused(tmp_path, monkeypatch):
    if os.geteuid() != 0:  # a real read-only folder (root writes anywhere, so it gets a simulated one)
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(KinetographError, match="not writable"):
                check_output_path(locked / "clip.mp4")
        finally:
            locked.chmod(0o700)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(output_paths.tempfile, "mkstemp", read_only)
    with pytest.raises(KinetographError) as error:
        check_output_path(tmp_path / "clip.mp4")
    assert "read-only filesystem" in str(error.value) and "choose another --out" in str(error.value)


def test_output_folder_that_cannot_be_created_is_refused(tmp_path):
    with pytest.raises(KinetographError, match="cannot be created|not writable|cannot be written"):
        check_output_path("/proc/kinetograph-test/clip.mp4")


def test_generate_checks_the_output_before_any_work(tmp_path, monkeypatch):
    from pipelines import engine
    from pipelines.tasks import generate as task

    def no_work(*args, **kwargs):
        raise AssertionError("the job ran before its output path was checked")

    monkeypatch.setattr(task, "_frames", no_work)
    (tmp_path / "file").write_text("x")
    job = GenerateJob(prompt="a fox", out=str(tmp_path / "file" / "clip.mp4"))
    with pytest.raises(KinetographError, match="is a file, not a folder"):
        engine.run(job)
    with pytest.raises(KinetographError, match="too long"):
        engine.run(GenerateJob(prompt="a fox", name="n" * 300), output_dir=tmp_path / "out")


def test_interpolate_checks_the_output_before_reading_frames(tmp_path, monkeypatch):
    from pipelines.interpolation import interpolate_video

    src = write_video(tmp_path / "clip.mp4", frames(4), fps=8, preset="ultrafast")
    (tmp_path / "file").write_text("x")

    def no_reading(*args, **kwargs):
        raise AssertionError("the input was read before the output path was checked")

    monkeypatch.setattr(video_io, "probe_video", no_reading)
    monkeypatch.setattr(video_io, "iter_frames", no_reading)
    with pytest.raises(KinetographError, match="is a file, not a folder"):
        interpolate_video(src, tmp_path / "file" / "out.mp4", factor=2)


@pytest.mark.parametrize("name", ["../x", "a/b", "/tmp/abs", "..", ".", "", "  ", "a\\b", "x/../../y",
                                  "a\nb", "a\x00b", "bell\x07", "\u202eevil"])
def test_name_is_a_file_name_not_a_path(name):
    with pytest.raises(KinetographError) as error:
        GenerateJob(prompt="a fox", name=name).check()
    if "/" in name or ".." in name or name == "." or "\\" in name:
        assert "--name is a file name, not a path" in str(error.value)
        assert "--out PATH" in str(error.value)
    assert check_file_name("fox_2-b.c") == "fox_2-b.c"


def test_cli_name_with_dotdot_refuses_and_writes_nothing(tmp_path):
    out_dir = tmp_path / "outputs"
    result = subprocess.run(
        [sys.executable, str(REPO / "app.py"), "generate", "--model", "tiny-ltx", "--prompt", "x", *TINY,
         "--name", "../escaped", "--output-dir", str(out_dir), "--quiet"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "--name is a file name, not a path" in result.stderr
    assert all_files(tmp_path) == []  # nothing inside the output folder, nothing outside it


def test_cli_name_writes_inside_the_output_folder(tmp_path, capsys):
    out_dir = tmp_path / "outputs"
    assert app.main(["generate", "--model", "tiny-ltx", "--prompt", "x", *TINY, "--name", "fox",
                     "--output-dir", str(out_dir), "--quiet"]) == 0
    written = all_files(tmp_path)
    assert len(written) == 2 and all(name.startswith("outputs/") for name in written)  # video + sidecar
    assert any(name.endswith("/fox-1.mp4") for name in written)


def test_cli_empty_out_is_refused(tmp_path, capsys):
    assert app.main(["generate", "--model", "tiny-ltx", "--prompt", "x", *TINY, "--out", "", "--quiet"]) == 2
    assert "empty" in capsys.readouterr().err


def test_existing_output_messages_name_no_internals(tmp_path, capsys):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"earlier")
    with pytest.raises(KinetographError) as error:
        VideoWriter(path, fps=8)
    assert "choose another --out" in str(error.value)
    assert not any(internal in str(error.value) for internal in INTERNAL_NAMES)
    src = write_video(tmp_path / "src.mp4", frames(4), fps=8, preset="ultrafast")
    assert app.main(["interpolate", str(src), "--factor", "2", "--out", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" not in err  # interpolate has no --overwrite
    assert not any(internal in err for internal in INTERNAL_NAMES)
    assert path.read_bytes() == b"earlier"


# ------------------------------------------------------------------ temporary names per writer
def test_two_writers_of_one_output_never_share_a_temporary_file(tmp_path):
    path = tmp_path / "clip.mp4"
    first, second = VideoWriter(path, fps=8, preset="ultrafast"), VideoWriter(path, fps=8, preset="ultrafast")
    first.write(frames(3))
    second.write(frames(3)[::-1])
    assert first.partial_path != second.partial_path
    assert first.partial_path.name.startswith(f".clip.{os.getpid()}-")
    with pytest.raises(KinetographError, match="being written by another job") as early:  # before any work
        VideoWriter(path, fps=8)
    assert first.close() == path
    with pytest.raises(KinetographError, match="already exists") as error:  # an explicit name: a clear error
        second.close()
    for message in (str(early.value), str(error.value)):
        assert "choose another --out" in message and not any(name in message for name in INTERNAL_NAMES)
    assert all_files(tmp_path) == ["clip.json", "clip.mp4"]  # the first's result, no temporaries left


def test_second_writer_of_a_default_name_takes_the_next_free_name(tmp_path):
    path = tmp_path / "fox-1.mp4"
    first = VideoWriter(path, fps=8, preset="ultrafast", rename_if_taken=True)
    second = VideoWriter(path, fps=8, preset="ultrafast", rename_if_taken=True)
    first.write(frames(3))
    second.write(frames(5))
    assert first.close() == path
    assert second.close() == tmp_path / "fox-1-1.mp4"
    assert probe_video(path).frame_count == 3 and probe_video(tmp_path / "fox-1-1.mp4").frame_count == 5
    assert all_files(tmp_path) == ["fox-1-1.json", "fox-1-1.mp4", "fox-1.json", "fox-1.mp4"]


def test_two_processes_writing_one_output_both_end_correctly(tmp_path):
    """Two real processes, same --out, same time: one writes it, the other says so clearly;
    neither leaves a temporary file."""
    src = write_video(tmp_path / "src.mp4", frames(24, 96, 128), fps=8, preset="ultrafast")
    out = tmp_path / "same.mp4"
    command = [sys.executable, str(REPO / "app.py"), "interpolate", str(src), "--factor", "4", "--out", str(out),
               "--quiet"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
            for _ in range(2)]
    outcomes = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], outcomes
    failed = next(err for code, err in outcomes if code == 2)  # at close, or before working if the other had begun
    assert ("already exists" in failed or "being written by another job" in failed) and failed.count("\n") == 1
    assert probe_video(out).frame_count == 93
    assert all_files(tmp_path) == ["same.json", "same.mp4", "src.json", "src.mp4"]


# ------------------------------------------------------------------------- stale partials
def test_stale_partial_of_a_dead_process_is_removed_and_never_blocks(tmp_path):
    pid = dead_pid()
    old = time.time() - 120
    stale = tmp_path / f".fox-7.{pid}-0badf00d.partial.mp4"
    young = tmp_path / f".fox-7.{pid}-1badf00d.muxing.mp4"  # dead too, but just written: kept for now
    legacy = tmp_path / ".fox-7.partial.mp4"  # the first writer's name, without a pid
    for temporary in (stale, young, legacy):
        temporary.write_bytes(b"half a video")
    os.utime(stale, (old, old))
    os.utime(legacy, (old, old))
    assert not busy_with(tmp_path / "fox-7.mp4")
    assert unique_output_path(tmp_path / "fox-7.mp4") == tmp_path / "fox-7.mp4"  # never blocks the name

    write_video(tmp_path / "other.mp4", frames(2), fps=8, preset="ultrafast")  # a writer starts in the folder
    assert not stale.exists() and not legacy.exists()
    assert young.exists()
    assert remove_stale_temporaries(tmp_path, older_than_s=0) == [young]


def test_partial_of_a_live_process_blocks_the_name_and_is_kept(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".fox-7.{sleeper.pid}-0badf00d.partial.mp4"
        live.write_bytes(b"being written")
        old = time.time() - 600
        os.utime(live, (old, old))
        assert busy_with(tmp_path / "fox-7.mp4")
        assert unique_output_path(tmp_path / "fox-7.mp4") == tmp_path / "fox-7-1.mp4"
        assert remove_stale_temporaries(tmp_path) == [] and live.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


# ---------------------------------------------------------------- SIGTERM / SIGHUP clean-up
def _start(args, cwd):
    return subprocess.Popen([sys.executable, str(REPO / "app.py"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _wait_for(condition, process, seconds=240):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        assert process.poll() is None, f"finished before it could be stopped: {process.stderr.read()}"
        time.sleep(0.02)
    raise AssertionError("the job never reached the point to stop it at")


def test_sigterm_while_writing_leaves_no_partial(tmp_path):
    src = write_video(tmp_path / "src.mp4", frames(400, 144, 192), fps=8, preset="ultrafast")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    process = _start(["interpolate", str(src), "--factor", "8", "--out", str(out_dir / "slow.mp4"), "--quiet"],
                     tmp_path)
    _wait_for(lambda: any(".partial.mp4" in name for name in os.listdir(out_dir)), process)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=60)
    err = process.stderr.read()
    assert code == 143, err
    assert err.count("\n") == 1 and err.startswith("cancelled:") and "SIGTERM" in err
    assert os.listdir(out_dir) == []  # no partial, no muxing file, no sidecar, no video


def test_sighup_while_generating_leaves_nothing(tmp_path):
    out_dir, previews = tmp_path / "outputs", tmp_path / "previews"
    process = _start(["generate", "--model", "tiny-ltx", "--prompt", "x", "--frames", "9", "--width", "64",
                      "--height", "64", "--steps", "400", "--seed", "1", "--output-dir", str(out_dir),
                      "--preview-dir", str(previews), "--quiet"], tmp_path)
    _wait_for(lambda: previews.exists() and any(previews.iterdir()), process)  # denoising has begun
    process.send_signal(signal.SIGHUP)
    code = process.wait(timeout=60)
    err = process.stderr.read()
    assert code == 129, err
    assert err.count("\n") == 1 and "SIGHUP" in err
    assert not out_dir.exists() or all_files(out_dir) == []


def test_signal_handlers_are_restored_after_main(capsys):
    before = signal.getsignal(signal.SIGTERM)
    app.main(["models", "--json"])
    assert signal.getsignal(signal.SIGTERM) is before


# ------------------------------------------------------------------------------- inputs
@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.mp4"
    os.mkfifo(path)
    return path


def test_named_pipe_is_refused_without_hanging(fifo, capsys):
    from pipelines.results import file_record

    for call in (lambda: probe_video(fifo), lambda: read_image(fifo), lambda: read_metadata(fifo),
                 lambda: file_record(fifo), lambda: video_io.frame_times(fifo)):
        with pytest.raises(KinetographError, match=r"named pipe \(FIFO\), not a regular file"):
            finishes_within(10, call)
    assert finishes_within(10, lambda: app.main(["info", str(fifo)])) == 2
    assert "named pipe" in capsys.readouterr().err
    assert finishes_within(10, lambda: app.main(["interpolate", str(fifo), "--factor", "2", "--quiet"])) == 2
    assert "named pipe" in capsys.readouterr().err
    image_job = ["generate", "--task", "i2v", "--model", "tiny-ltx", "--image", str(fifo), *TINY, "--quiet",
                 "--out", str(fifo.parent / "v.mp4")]
    assert finishes_within(60, lambda: app.main(image_job)) == 2
    assert "named pipe" in capsys.readouterr().err


def test_devices_and_system_files_are_refused():
    with pytest.raises(KinetographError, match="character device"):
        probe_video("/dev/null")
    with pytest.raises(KinetographError, match="system file"):
        finishes_within(10, lambda: read_image("/proc/self/status"))
    with pytest.raises(KinetographError, match="system file"):
        finishes_within(10, lambda: probe_video("/proc/self/environ"))


def test_folder_and_missing_paths_are_told_apart(tmp_path):
    with pytest.raises(KinetographError) as folder:
        probe_video(tmp_path)
    assert "is a folder" in str(folder.value) and "does not exist" not in str(folder.value)
    with pytest.raises(KinetographError, match="is a folder"):
        read_image(tmp_path)
    with pytest.raises(KinetographError, match="is a folder"):
        read_metadata(tmp_path)
    with pytest.raises(KinetographError, match="does not exist"):
        probe_video(tmp_path / "missing.mp4")
    with pytest.raises(KinetographError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "file").write_text("x")
    with pytest.raises(KinetographError, match="does not exist"):
        probe_video(tmp_path / "file" / "clip.mp4")


def test_size_and_duration_limits(tmp_path, monkeypatch):
    clip = write_video(tmp_path / "clip.mp4", frames(16), fps=8, preset="ultrafast")  # 2 s
    Image.fromarray(frames(1)[0]).save(tmp_path / "still.png")
    assert probe_video(clip).frame_count == 16
    monkeypatch.setattr(video_io, "MAX_INPUT_SECONDS", 1.5)
    with pytest.raises(KinetographError, match="lasts .* more than"):
        probe_video(clip)
    monkeypatch.setattr(video_io, "MAX_INPUT_BYTES", 100)
    with pytest.raises(KinetographError, match="GB, more than"):
        probe_video(clip)
    with pytest.raises(KinetographError, match="GB, more than"):
        read_image(tmp_path / "still.png")
    assert video_io.MAX_INPUT_BYTES != 20 * 10**9  # patched; the real limits are generous:
    monkeypatch.undo()
    assert video_io.MAX_INPUT_BYTES >= 10**10 and video_io.MAX_INPUT_SECONDS >= 3600


def test_probing_has_a_time_limit_and_garbage_fails_fast(tmp_path, monkeypatch):
    seen = []
    real_open = video_io.av.open

    def spy(*args, **kwargs):
        seen.append(kwargs.get("timeout"))
        return real_open(*args, **kwargs)

    clip = write_video(tmp_path / "clip.mp4", frames(8), fps=8, preset="ultrafast")
    monkeypatch.setattr(video_io.av, "open", spy)
    probe_video(clip)
    assert seen and all(timeout is not None for timeout in seen)
    monkeypatch.undo()

    data = clip.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (tmp_path / "garbage.mp4").write_bytes(os.urandom(200_000))
    for name in ("truncated.mp4", "garbage.mp4"):
        started = time.monotonic()
        with pytest.raises(KinetographError, match="not a readable video"):
            finishes_within(30, lambda name=name: probe_video(tmp_path / name))
        assert time.monotonic() - started < 30


# ------------------------------------------------------------------------------- images
def test_float_tiff_is_scaled_not_blacked_out(tmp_path):
    ramp = np.linspace(0.0, 1.0, 32 * 64, dtype=np.float32).reshape(32, 64)
    Image.fromarray(ramp, mode="F").save(tmp_path / "unit.tif")
    notes: list[str] = []
    rgb = read_image(tmp_path / "unit.tif", notes)
    assert rgb.shape == (32, 64, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and abs(int(rgb[16, 0, 0]) - 128) <= 2
    assert notes == []  # 0..1 is the float convention: nothing to say

    Image.fromarray(ramp * 4000 - 1000, mode="F").save(tmp_path / "hdr.tif")  # its own range
    rgb = read_image(tmp_path / "hdr.tif", notes)
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and rgb.mean() > 100
    assert len(notes) == 1 and "-1000" in notes[0] and "3000" in notes[0]

    with_nan = ramp.copy()
    with_nan[0, :4] = np.nan
    Image.fromarray(with_nan, mode="F").save(tmp_path / "nan.tif")
    notes.clear()
    rgb = read_image(tmp_path / "nan.tif", notes)
    assert rgb[-1, -1, 0] == 255 and (rgb[0, :4] == 0).all() and "NaN" in notes[0]


def test_sixteen_and_thirty_two_bit_greys(tmp_path):
    wide = (np.arange(32 * 64).reshape(32, 64) * 31).astype(np.uint16)  # up to 63457
    Image.fromarray(wide).save(tmp_path / "grey16.png")
    rgb = read_image(tmp_path / "grey16.png")
    assert rgb[-1, -1, 0] == round(63457 / 257) and (rgb[..., 0] == rgb[..., 2]).all()
    big = (np.arange(32 * 64).reshape(32, 64) * 100_000).astype(np.int32)
    Image.fromarray(big, mode="I").save(tmp_path / "grey32.tif")
    notes: list[str] = []
    rgb = read_image(tmp_path / "grey32.tif", notes)
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and "32-bit integer" in notes[0]


def test_transparency_is_composited_onto_white_and_said(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 8:, 3] = 255  # left half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    notes: list[str] = []
    rgb = read_image(tmp_path / "rgba.png", notes)
    assert (rgb[:, :8] == 255).all() and (rgb[:, 8:] == (200, 0, 0)).all()
    assert len(notes) == 1 and "white" in notes[0] and "rgba.png" in notes[0]

    Image.fromarray(rgba[..., [0, 3]], "LA").save(tmp_path / "la.png")
    rgb = read_image(tmp_path / "la.png")
    assert (rgb[:, :8] == 255).all() and (rgb[:, 8:] == 200).all()

    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([10, 20, 30, 250, 0, 0] + [0] * 762)
    palette.paste(1, (4, 0, 8, 8))
    palette.save(tmp_path / "pal.png", transparency=0)
    notes.clear()
    rgb = read_image(tmp_path / "pal.png", notes)
    assert (rgb[:, :4] == 255).all() and (rgb[:, 4:] == (250, 0, 0)).all() and notes

    opaque = rgba.copy()
    opaque[..., 3] = 255
    Image.fromarray(opaque, "RGBA").save(tmp_path / "opaque.png")
    notes.clear()
    read_image(tmp_path / "opaque.png", notes)
    assert notes == []  # an alpha channel with nothing transparent changes nothing


def test_cmyk_one_bit_and_unsupported_modes(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    rgb = read_image(tmp_path / "cmyk.jpg")
    assert rgb[4, 4, 0] > 200 and rgb[4, 4, 1] < 60 and rgb[4, 4, 2] < 60  # red
    bits = Image.new("1", (8, 8), 0)
    bits.paste(1, (0, 0, 4, 8))
    bits.save(tmp_path / "bits.png")
    rgb = read_image(tmp_path / "bits.png")
    assert (rgb[:, :4] == 255).all() and (rgb[:, 4:] == 0).all()
    with pytest.raises(KinetographError, match="colour mode LAB is not supported"):
        video_io._image_to_rgb(Image.new("LAB", (8, 8), (50, 0, 0)))


def test_image_notes_reach_the_generation_result(tmp_path):
    from pipelines import engine

    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 1] = 180
    rgba[:32, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "start.png")
    result = engine.run(GenerateJob(task="i2v", model="tiny-ltx", image=str(tmp_path / "start.png"), frames=9,
                                    width=64, height=64, steps=2, seed=2, out=str(tmp_path / "v.mp4")))
    assert any("white background" in note for note in result.notes)
    assert any("white background" in note for note in read_metadata(result.path)["notes"])


def _interpolate_in_subprocess(out, limit_bytes=None):
    import resource
    import subprocess
    import sys

    def limit():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    clip = FOOTAGE / "carphone.mp4"
    return subprocess.run([sys.executable, str(REPO / "app.py"), "interpolate", str(clip), "--factor", "2", "--out",
                           str(out), "--quiet"], capture_output=True, text=True, timeout=120, preexec_fn=limit,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.skipif(not (FOOTAGE / "carphone.mp4").is_file(), reason="shared footage not present")
def test_a_file_size_limit_while_writing_is_one_clear_line_and_leaves_nothing(tmp_path):
    done = _interpolate_in_subprocess(tmp_path / "big.mp4", limit_bytes=50_000)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: Could not finish writing")
    assert "file-size limit" in done.stderr and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not (FOOTAGE / "carphone.mp4").is_file(), reason="shared footage not present")
def test_a_full_disk_while_writing_is_one_clear_line_and_leaves_nothing(tmp_path):
    import subprocess

    disk = tmp_path / "small-disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        done = _interpolate_in_subprocess(disk / "big.mp4")
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert "the disk is full" in done.stderr and list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
