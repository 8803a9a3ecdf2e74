"""One result and one metadata schema for every task; a job rebuilt from any output.

Every output mp4 embeds (and repeats in its ``.json`` sidecar)::

    {"kinetograph": {"version", "format": 2}, "kind": "generate" | "interpolate",
     "job": <the job as run: seed drawn, sizes rounded>, "model": <where the weights came from, or null>,
     "seed", "inputs": {name: {"path", "sha256", "bytes"}}, "versions", "device", "memory",
     "attempts", "notes", "timings", "created", "video": <written by the VideoWriter>,
     + task details (interpolation: "interpolation" settings, scene cuts ...)}

Format 1 outputs (generation before typed jobs) have no "kind" and are read as "generate";
interpolation outputs of that time carry no job and cannot be re-run (``info`` still reads them).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import KinetographError

__version__ = "0.1.0"
METADATA_FORMAT = 2


@dataclass
class Result:
    """What any job produced: the same shape for every task."""

    path: Path
    kind: str
    job: Any  # the job as run (a GenerateJob or InterpolateJob)
    fps: float
    frame_count: int
    width: int
    height: int
    seed: int | None
    timings: dict[str, float]
    memory: dict[str, Any] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # task-specific (interpolation settings ...)

    def summary(self, skip_notes=()) -> str:
        """What was written, how long it took, the memory plan and the notes (but those in ``skip_notes``:
        a front door that showed them as they came)."""
        lines = [f"wrote {self.path}  ({self.frame_count} frames, {self.width}x{self.height}, {self.fps:g} fps"
                 + (f", seed {self.seed}" if self.seed is not None else "") + ")"]
        if self.timings:
            lines.append("time: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()))
        mem = self.memory
        if mem.get("plan"):
            lines.append(
                f"memory plan: {mem['plan'].get('name', '?')}; VRAM predicted "
                f"{_gb(mem.get('predicted_peak_vram_bytes'))} measured {_gb(mem.get('measured_peak_vram_bytes'))}; "
                f"RAM predicted {_gb(mem.get('predicted_peak_ram_bytes'))} measured "
                f"{_gb(mem.get('measured_peak_ram_bytes'))}")
        lines += [f"note: {n}" for n in self.notes if n not in skip_notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind, "frames": self.frame_count, "fps": self.fps,
                "width": self.width, "height": self.height, "seed": self.seed, "timings": self.timings,
                "memory": self.memory, "notes": self.notes, **self.details}


def _gb(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1e9:.2f} GB"


def base_metadata(kind: str, job, *, model: dict | None = None, seed: int | None = None,
                  inputs: dict[str, Any] | None = None, device: dict | None = None) -> dict[str, Any]:
    """The metadata every output starts from; the task adds memory, timings and its details."""
    return {
        "kinetograph": {"version": __version__, "format": METADATA_FORMAT},
        "kind": kind,
        "job": job.to_dict(),
        "model": model,
        "seed": seed,
        "inputs": inputs or {},
        "versions": versions(),
        "device": device,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def versions() -> dict[str, str]:
    import av
    import diffusers
    import torch
    import transformers

    return {"kinetograph": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__, "av": av.__version__}


def file_record(path: str | Path) -> dict[str, Any]:
    """An input file as an output records it: resolved path, size and content hash."""
    from .video_io import check_input_file

    resolved = check_input_file(Path(path).expanduser(), "Input").resolve()  # a pipe or a device is never opened
    digest = hashlib.sha256()
    size = 0
    with open(resolved, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return {"path": str(resolved), "sha256": digest.hexdigest(), "bytes": size}


# ------------------------------------------------------------------------------ rerun
def job_from_output(path: str | Path):
    """The job that made the output at ``path``, with its inputs checked against their hashes.

    Raises a KinetographError when the output carries no job, or an input file is missing or
    has changed since (the re-run would not be the same job)."""
    from .jobs import job_from_dict
    from .video_io import read_metadata

    meta = read_metadata(path)
    kind = meta.get("kind") or ("generate" if "job" in meta else None)
    if kind is None or "job" not in meta:
        raise KinetographError(
            f"{path} carries no job to re-run: it was written by an older Kinetograph (interpolation "
            f"before format 2) or by another program. Run the command again instead.")
    job = job_from_dict(kind, meta["job"])
    for name, record in (meta.get("inputs") or {}).items():
        check_input_unchanged(name, record)
    return job, meta


def check_input_unchanged(name: str, record: dict[str, Any]) -> None:
    where = record.get("path")
    if not where or not Path(where).is_file():
        raise KinetographError(f"The {name} this output was made from, {where}, is no longer there. Put the file "
                               f"back at that path to re-run the job.")
    if record.get("sha256") and file_record(where)["sha256"] != record["sha256"]:
        raise KinetographError(f"The {name} {where} has changed since this output was made (its content hash "
                               f"differs), so a re-run would not be the same job. Restore the original file.")
