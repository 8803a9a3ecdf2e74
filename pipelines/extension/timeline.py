"""Prompt timelines: which prompt is active at which second of a long video.

A timeline is a list of ``Cue(start_s, prompt, new_shot)``, sorted by start, the first at 0.
Written as text, one cue a line (``#`` comments and blank lines ignored)::

    0-5: a fox wakes in its den
    5: it runs out into the snow          (an end time is optional: a cue lasts until the next)
    [cut] 12: a snowy owl watches          ("[cut]" starts a new shot: no conditioning on what came before)

or as JSON: ``[{"start": 0, "prompt": "...", "cut": false}, ...]``.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from ..errors import KinetographError

MAX_CUES = 1000
_NUMBER = r"-?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?"
_LINE = re.compile(rf"^\s*(?P<cut>\[cut\]\s*)?(?P<start>{_NUMBER})\s*(?:[-–]\s*(?P<end>{_NUMBER}))?\s*s?\s*:\s*(?P<prompt>.*)$")


@dataclass(frozen=True)
class Cue:
    start_s: float
    prompt: str
    new_shot: bool = False

    def to_list(self) -> list:
        return [self.start_s, self.prompt, self.new_shot]


def parse_timeline(text: str, where: str = "the timeline") -> tuple[Cue, ...]:
    """Cues from the text or JSON form (see the module docstring), checked."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except ValueError as exc:
            raise KinetographError(f"{where} is not valid JSON ({exc}); write one cue a line as "
                                   f"'START-END: prompt', or a JSON list of {{\"start\", \"prompt\"}}.") from None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise KinetographError(f"{where}: a JSON timeline is a list of objects with start and prompt.")
        cues, ends = [], []
        for i in items:
            cues.append(_cue(i.get("start"), i.get("prompt"), bool(i.get("cut", False)), where))
            ends.append(i.get("end"))
        return check_timeline(cues, where, ends)
    cues, ends = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise KinetographError(f"{where}, line {number}: {line.strip()[:80]!r} is not 'START-END: prompt' "
                                   f"(e.g. '0-5: a fox wakes'; '[cut] 12: ...' starts a new shot).")
        cues.append(_cue(match["start"], match["prompt"], bool(match["cut"]), f"{where}, line {number}"))
        ends.append(match["end"])
    return check_timeline(cues, where, ends)


def _cue(start, prompt, cut: bool, where: str) -> Cue:
    try:
        start_s = float(start)
    except (TypeError, ValueError):
        raise KinetographError(f"{where}: the start {start!r} is not a number of seconds.") from None
    if not isinstance(prompt, str) or not prompt.strip():
        raise KinetographError(f"{where}: every cue needs a prompt (text after the colon).")
    return Cue(start_s, prompt.strip(), cut)


def check_timeline(cues, where: str = "the timeline", ends=None) -> tuple[Cue, ...]:
    """Starts finite, from 0, strictly increasing; an end (when given) after its start and not past the next start."""
    cues = [c if isinstance(c, Cue) else Cue(*c) for c in cues]
    if not cues:
        raise KinetographError(f"{where} has no cues; give at least one line like '0: a fox wakes'.")
    if len(cues) > MAX_CUES:
        raise KinetographError(f"{where} has {len(cues)} cues; at most {MAX_CUES}.")
    ends = list(ends or [None] * len(cues))
    for index, cue in enumerate(cues):
        if not math.isfinite(cue.start_s) or cue.start_s < 0:
            raise KinetographError(f"{where}: start {cue.start_s} s must be a time of 0 s or more.")
        if index == 0 and cue.start_s != 0:
            raise KinetographError(f"{where} must start at 0 s (its first cue starts at {cue.start_s:g} s).")
        if index and cue.start_s <= cues[index - 1].start_s:
            raise KinetographError(f"{where}: cues overlap or are out of order ({cues[index - 1].start_s:g} s, then "
                                   f"{cue.start_s:g} s); give each a later start than the one before.")
        end = ends[index]
        if end is not None:
            try:
                end_s = float(end)
            except (TypeError, ValueError):
                raise KinetographError(f"{where}: the end {end!r} is not a number of seconds.") from None
            if not math.isfinite(end_s) or end_s <= cue.start_s:
                raise KinetographError(f"{where}: the cue at {cue.start_s:g} s ends at {end_s:g} s, not after it.")
            if index + 1 < len(cues) and end_s > cues[index + 1].start_s:
                raise KinetographError(f"{where}: the cue {cue.start_s:g}-{end_s:g} s overlaps the next, which starts "
                                       f"at {cues[index + 1].start_s:g} s.")
    return tuple(cues)


def cue_at(cues: tuple[Cue, ...], time_s: float) -> Cue:
    """The cue active at ``time_s`` (the last one starting at or before it)."""
    active = cues[0]
    for cue in cues:
        if cue.start_s <= time_s + 1e-9:
            active = cue
    return active
