"""Tests run offline on CPU: no hub access, tiny models built into one cache per session."""
import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session", autouse=True)
def single_torch_thread():
    """Tiny models are latency-bound: one thread is faster than two fighting on a 2-core CI box."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session", autouse=True)
def kinetograph_home(tmp_path_factory):
    """One tiny-model cache for the whole session (built on first use, reused after)."""
    home = Path(os.environ.get("KINETOGRAPH_TEST_HOME") or tmp_path_factory.mktemp("kinetograph-home"))
    os.environ["KINETOGRAPH_HOME"] = str(home)
    return home


@pytest.fixture
def sample_images(tmp_path):
    """A start and an end frame with real structure (gradients + a square), as PNG files."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:96, 0:128]
    first = np.stack([xx * 2, yy * 2, np.full_like(xx, 80)], axis=-1).astype(np.uint8)
    last = first.copy()
    first[20:50, 10:40] = (255, 40, 40)
    last[40:70, 80:110] = (40, 40, 255)
    paths = []
    for name, array in (("first.png", first), ("last.png", last)):
        Image.fromarray(array).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths


@pytest.fixture
def staged_loads(monkeypatch):
    """Every memory plan gets staged_load (host RAM too small for encoders + denoiser at once);
    returns the list of (skip, pipeline) of each pipeline load, in order."""
    import dataclasses

    from pipelines import models
    from pipelines.tasks import (
        generate as engine,  # the generation task: where plans are made and pipelines loaded
    )

    real_ladder = engine.plan_ladder
    monkeypatch.setattr(engine, "plan_ladder", lambda *a, **k: [dataclasses.replace(p, staged_load=True)
                                                                 for p in real_ladder(*a, **k)])
    loads = []
    real_load = models.load_pipeline

    def recording_load(source, plan=None, skip=()):
        pipe = real_load(source, plan, skip)
        loads.append((tuple(skip), pipe))
        return pipe

    monkeypatch.setattr(models, "load_pipeline", recording_load)
    monkeypatch.setattr(engine, "load_pipeline", recording_load)
    return loads


@pytest.fixture(scope="session", autouse=True)
def library_logs_on_the_sessions_stderr():
    """diffusers and transformers attach their log handler to whatever sys.stderr is at their first log.
    Set them up now: a test that captures stderr (capsys, in-process CLI runs) closes its stream after the
    test, and a handler left holding it prints '--- Logging error ---' into every later test's output."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.get_logger("diffusers")
    transformers_logging.get_logger("transformers")
