"""The hostile-input corpus (issue 17): broken and odd media, special files, extreme numbers, path
tricks, built under tmp_path so nothing outside it is touched; and the checks every case makes."""
from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

HOSTILE_NUMBERS = ["nan", "inf", "-inf", "1e308", "-1", "0", str(2**63), "1e2", "", "1e-300", "0x10", "١٢"]


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb) with one tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.fixture
def corpus(tmp_path):
    """name -> path of each hostile input, in tmp_path/corpus (the outputs go to tmp_path/out)."""
    from PIL import Image

    from pipelines.video_io import write_video

    root = tmp_path / "corpus"
    root.mkdir()
    items: dict[str, Path] = {}

    def add(name: str, path: Path) -> None:
        items[name] = path

    (root / "empty.mp4").write_bytes(b"")
    add("empty file", root / "empty.mp4")
    rng = np.random.default_rng(0)
    (root / "random.mp4").write_bytes(rng.bytes(4096))
    add("random bytes .mp4", root / "random.mp4")
    (root / "random.png").write_bytes(rng.bytes(4096))
    add("random bytes .png", root / "random.png")
    (root / "text.mp4").write_text("this is not a video\n")
    add("text named .mp4", root / "text.mp4")
    video = np.zeros((6, 32, 48, 3), np.uint8)
    video[:, 8:24, :, 0] = np.arange(6)[:, None, None] * 40
    good = write_video(root / "good.mp4", video, 8.0)
    data = Path(good).read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    add("truncated mp4", root / "truncated.mp4")
    (root / "head.mp4").write_bytes(data[:64])  # the ftyp box and nothing else: no frames
    add("zero-frame mp4", root / "head.mp4")
    write_video(root / "one.mp4", video[:1], 8.0)
    add("one-frame mp4", root / "one.mp4")
    (root / "bomb.png").write_bytes(_png_header(60000, 60000))
    add("decompression bomb png", root / "bomb.png")
    (root / "x.mp4").mkdir()
    add("folder named x.mp4", root / "x.mp4")
    add("missing file", root / "missing.mp4")
    Image.fromarray(np.full((40, 56, 4), 128, np.uint8)).save(root / "alpha.png")
    add("rgba png", root / "alpha.png")
    items["good video"] = Path(good)
    return items


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256; folders as 'dir', special files as 'special')."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = "dir"
        for name in filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if not os.path.isfile(path) or os.path.islink(path):
                out[rel] = "special"
                continue
            out[rel] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return out


def assert_clean_outcome(code: int, err: str, before: dict[str, str], after: dict[str, str],
                         allowed_new: tuple[str, ...] = ("out/",)) -> None:
    """Exit 2 with exactly one 'error:' line, or 0; no traceback; files before unchanged; new files
    only under the allowed folders; nothing hidden or partial left anywhere."""
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, err
    for rel, digest in before.items():
        assert after.get(rel) == digest, f"{rel} changed or vanished"
    for rel in set(after) - set(before):
        name = os.path.basename(rel)
        assert not name.startswith(".") and ".partial" not in name and ".muxing" not in name, f"left behind: {rel}"
        if after[rel] != "dir":
            assert rel.startswith(allowed_new), f"written outside the output folder: {rel}"
