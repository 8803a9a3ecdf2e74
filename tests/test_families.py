"""The family registry: every entry complete and consistent; latent previews on every tiny model."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines import families
from pipelines.families import FAMILIES, PRESETS, TINY_MODELS, FamilyAdapter, ModelFamily
from pipelines.families.base import latents_to_rgb
from pipelines.jobspec import JobSpec
from pipelines.memory.sizes import REPO_PROFILES, ModelSizes, profile_sizes

FAMILY_IDS = list(FAMILIES)


@pytest.mark.parametrize("family_id", FAMILY_IDS)
def test_family_entry_is_complete(family_id):
    import diffusers

    family = FAMILIES[family_id]
    assert isinstance(family, ModelFamily) and family.id == family_id
    assert isinstance(family.adapter, FamilyAdapter)
    assert family.pipelines, "a family serves at least one task"
    for task, class_name in family.pipelines.items():
        assert getattr(diffusers, class_name, None) is not None, f"{task}: diffusers has no {class_name}"
    assert family.frame_multiple > 0 and family.size_multiple > 0
    assert (family.default_frames - 1) % family.frame_multiple == 0, "default_frames must be k*frame_multiple+1"
    assert family.default_frames <= family.max_frames
    assert family.default_width % family.size_multiple == 0 and family.default_height % family.size_multiple == 0
    assert family.default_fps > 0 and family.default_steps > 0
    # The family's own defaults pass its own rules unchanged.
    job = JobSpec(task="t2v", model="x", prompt="p", seed=0).adapted_to(family)
    assert (job.frames, job.width, job.height) == (family.default_frames, family.default_width,
                                                   family.default_height)
    assert family.denoiser_classes and family.denoiser_kind in ("wan", "ltx", "unet", "dit")
    for name, sizes in family.size_profiles.items():
        sizes = sizes() if callable(sizes) else sizes
        assert isinstance(sizes, ModelSizes) and sizes.name == name
    for repo, profile in family.repo_profiles.items():
        assert profile in family.size_profiles, f"{repo} -> unknown profile {profile}"
    for name, tiny in family.tiny_models.items():
        assert tiny.name == name and callable(tiny)
        assert tiny.pipeline_class in family.pipelines.values()
    if family.latent_rgb_factors is not None:
        assert all(len(row) == 3 for row in family.latent_rgb_factors) and len(family.latent_rgb_bias) == 3
        assert family.adapter.latent_rgb_factors == family.latent_rgb_factors


@pytest.mark.parametrize("preset_id", list(PRESETS))
def test_preset_is_consistent_with_its_family(preset_id):
    preset = PRESETS[preset_id]
    assert preset.family in FAMILIES
    family = FAMILIES[preset.family]
    assert preset in family.presets, "a preset is listed by its own family"
    assert preset.repos and set(preset.repos) <= set(family.pipelines)
    if preset.size_profile is not None:
        assert preset.size_profile in family.size_profiles
        assert profile_sizes(preset.size_profile).name == preset.size_profile
    if preset.tiny:
        for name in preset.repos.values():
            assert name in family.tiny_models, f"{preset_id}: no builder for {name}"
    else:
        assert preset.size_profile is not None, "real presets are planned without downloading"


def test_registry_collects_every_entry():
    assert set(TINY_MODELS) == {n for f in FAMILIES.values() for n in f.tiny_models}
    assert set(REPO_PROFILES) == {r for f in FAMILIES.values() for r in f.repo_profiles}
    assert [p.tiny for p in PRESETS.values()] == sorted((p.tiny for p in PRESETS.values()), reverse=True)
    for family in FAMILIES.values():
        for class_name in family.pipelines.values():
            assert families.family_for_pipeline_class(class_name).pipelines == \
                FAMILIES[families.PIPELINE_CLASS_TO_FAMILY[class_name]].pipelines
    # Old callers: adapter by family, family id, old adapter name or the adapter itself.
    assert families.adapter_for("unet") is FAMILIES["animatediff"].adapter
    assert families.adapter_for(FAMILIES["ltx"]) is FAMILIES["ltx"].adapter
    assert families.adapter_for(FAMILIES["svd"].adapter) is FAMILIES["svd"].adapter


# ------------------------------------------------------------------------------- previews
def test_preview_projection_uses_the_factors_and_falls_back_for_other_channel_counts():
    import torch

    latents = torch.randn(4, 2, 3, 5, generator=torch.Generator().manual_seed(0))
    factors = ((0.5, 0.0, 0.0), (0.0, 0.5, 0.0), (0.0, 0.0, 0.5), (0.1, 0.1, 0.1))
    rgb = latents_to_rgb(latents, factors, (0.1, 0.0, -0.1))
    expected = np.einsum("cthw,cr->thwr", latents.numpy(), np.array(factors)) + np.array([0.1, 0.0, -0.1])
    expected = np.round(np.clip((expected + 1) / 2, 0, 1) * 255)
    assert rgb.shape == (2, 3, 5, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - expected).max() <= 1
    fallback = latents_to_rgb(latents, factors[:3])  # 4 channels, 3 factor rows: first 3 channels, min..max
    assert fallback.shape == (2, 3, 5, 3)
    for c in range(3):
        assert fallback[..., c].min() == 0 and fallback[..., c].max() == 255
    two = latents_to_rgb(latents[:2], None)  # fewer than 3 channels: repeated
    assert np.array_equal(two[..., 0], two[..., 2])
    assert not latents_to_rgb(torch.zeros(3, 1, 2, 2), None).any()  # constant channels: no division by zero


PREVIEW_RUNS = [
    # tiny model, pipeline class, task, job size (frames, width, height), expected (T, h, w)
    pytest.param("tiny-ltx", "LTXPipeline", "t2v", (9, 128, 64), (2, 2, 4), id="ltx-t2v"),
    pytest.param("tiny-ltx", "LTXConditionPipeline", "keyframes", (9, 128, 64), (2, 2, 4), id="ltx-keyframes"),
    pytest.param("tiny-wan", "WanPipeline", "t2v", (9, 64, 32), (3, 4, 8), id="wan-t2v"),
    pytest.param("tiny-animatediff", "AnimateDiffPipeline", "t2v", (4, 64, 32), (4, 4, 8), id="animatediff-t2v"),
    pytest.param("tiny-skyreels-df", "SkyReelsV2DiffusionForcingPipeline", "t2v", (9, 64, 32), (3, 4, 8),
                 id="skyreels-df-t2v"),
    pytest.param("tiny-svd", "StableVideoDiffusionPipeline", "i2v", (4, 64, 32), (4, 4, 8), id="svd-i2v"),
]


@pytest.mark.parametrize(("name", "pipeline_class", "task", "size", "expected"), PREVIEW_RUNS)
def test_preview_of_the_latents_during_denoising(name, pipeline_class, task, size, expected):
    import diffusers
    import torch
    from PIL import Image

    from pipelines.models import ensure_tiny_model

    family = next(f for f in FAMILIES.values() if name in f.tiny_models)
    frames, width, height = size
    job = JobSpec(task="t2v", model=name, prompt="a fox", frames=frames, width=width, height=height,
                  steps=2, guidance=1.0, seed=0).adapted_to(family)
    pipe = getattr(diffusers, pipeline_class).from_pretrained(ensure_tiny_model(name), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8))
    inputs = {} if task == "i2v" else {"prompt": job.prompt}
    if task == "i2v":
        inputs["image"] = picture
    if task == "keyframes":  # a condition at the last frame adds its tokens in front of the video's
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        inputs["conditions"] = [LTXVideoCondition(image=picture, frame_index=0),
                                LTXVideoCondition(image=picture, frame_index=job.frames - 1)]
    previews = []

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        previews.append(family.adapter.preview(pipeline, callback_kwargs["latents"], job))
        return {}

    pipe(**inputs, **family.adapter.call_kwargs(job),  # guidance 1: no CFG, as cheap as it gets
         generator=torch.Generator().manual_seed(0), output_type="latent", callback_on_step_end=on_step_end)
    assert len(previews) == job.steps
    for preview in previews:
        assert preview.shape == (*expected, 3)
        assert preview.dtype == np.uint8
        assert preview.min() < preview.max(), "a preview is not one flat colour"
