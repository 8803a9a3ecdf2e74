"""The segment store: finished segments on disk, with a manifest, so a killed job resumes.

A job's store is a hidden folder beside its output (``.<name>.segments/``) holding, per
finished segment ``i``: ``seg-000i.mp4`` (its frames, lossless H.264) and ``seg-000i.npz``
(the frames the next segment continues from and those still to be crossfaded), and one
``manifest.json`` naming the job and each segment (seed, prompt, hashes of the conditioning
frames and of the files). A segment counts as finished only once all three are on disk: each
file is written under a temporary name and renamed, the manifest last. The same job started
again finds the finished segments and goes on after them; another job's store is replaced.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"


def frames_hash(frames: np.ndarray | None) -> str | None:
    if frames is None:
        return None
    return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class SegmentStore:
    def __init__(self, folder: Path, job_key: str) -> None:
        self.folder = Path(folder)
        self.job_key = job_key
        self.segments: list[dict[str, Any]] = []
        self.resumed = 0

    def open(self) -> SegmentStore:
        """Find the finished segments of this job (checking their files), or start an empty store."""
        manifest = self.folder / MANIFEST
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text())
            except (OSError, ValueError):
                data = {}
            if data.get("job_key") == self.job_key:
                for entry in data.get("segments", []):
                    video, state = self.folder / entry["video"], self.folder / entry["state"]
                    if not (video.is_file() and state.is_file() and _file_hash(video) == entry["video_sha256"]
                            and _file_hash(state) == entry["state_sha256"]):
                        break  # the first damaged segment and all after it are made again
                    self.segments.append(entry)
                self.resumed = len(self.segments)
                return self
        if self.folder.exists():
            shutil.rmtree(self.folder)  # another job's segments (or a damaged store): not ours to reuse
        self.folder.mkdir(parents=True)
        self._write_manifest()
        return self

    def video_path(self, index: int) -> Path:
        return self.folder / f"seg-{index:04d}.mp4"

    def load_state(self, index: int) -> dict[str, np.ndarray]:
        with np.load(self.folder / self.segments[index]["state"]) as data:
            return {k: data[k] for k in data.files}

    def add(self, index: int, record: dict[str, Any], state: dict[str, np.ndarray]) -> None:
        """Record segment ``index`` (its video already at ``video_path(index)``) and its state."""
        state_path = self.folder / f"seg-{index:04d}.npz"
        temporary = self.folder / f".seg-{index:04d}.npz.partial"
        with open(temporary, "wb") as handle:
            np.savez(handle, **state)
        os.replace(temporary, state_path)
        video = self.video_path(index)
        self.segments.append({**record, "index": index, "video": video.name, "state": state_path.name,
                              "video_sha256": _file_hash(video), "state_sha256": _file_hash(state_path)})
        self._write_manifest()

    def _write_manifest(self) -> None:
        temporary = self.folder / f".{MANIFEST}.partial"
        temporary.write_text(json.dumps({"job_key": self.job_key, "segments": self.segments}, indent=1))
        os.replace(temporary, self.folder / MANIFEST)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
