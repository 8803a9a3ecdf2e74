"""Model families and presets: data, not code paths.

A *family* says which diffusers pipeline class serves which task and what rules its
inputs obey (frame count k*m+1, size multiple, defaults). A *preset* is a name a user
types (``wan2.1-t2v-1.3b``, ``tiny-ltx``) that maps each task to a hub repo id (or a
built-in tiny model) and names the size profile the memory planner uses without
downloading anything. Adding a family is one ``ModelFamily`` entry plus, at most, one
small adapter in ``adapters.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import KinetographError

# Tasks every front door knows. Later issues add edit/extend/v2v entries to families.
TASKS = ("t2v", "i2v", "keyframes")
TASK_LABELS = {
    "t2v": "text to video",
    "i2v": "image to video (start frame)",
    "keyframes": "first and last frame to video",
}


@dataclass(frozen=True)
class ModelFamily:
    id: str
    label: str
    adapter: str  # name of the adapter in adapters.py that encodes prompts / decodes latents
    pipelines: dict[str, str]  # task -> diffusers pipeline class name
    frame_multiple: int  # frames must be frame_multiple*k + 1 (the VAE's temporal compression)
    size_multiple: int  # width/height multiple (VAE spatial compression x transformer patch)
    default_width: int
    default_height: int
    default_frames: int
    max_frames: int  # longest single generation the family is meant for; longer = the extend task
    default_fps: float
    default_steps: int
    default_guidance: float
    default_negative_prompt: str = ""
    layerwise_fp8: bool = True  # transformer tolerates fp8 storage with bf16 compute
    notes: str = ""


@dataclass(frozen=True)
class ModelPreset:
    id: str
    family: str
    repos: dict[str, str]  # task -> hub repo id (or tiny model name when tiny=True)
    description: str
    size_profile: str | None = None  # key into memory.sizes profiles (planning without weights)
    dtype: str = "bfloat16"
    component_dtypes: dict[str, str] = field(default_factory=dict)  # e.g. Wan VAE in float32
    extra_repos: dict[str, str] = field(default_factory=dict)  # e.g. AnimateDiff motion adapter
    tiny: bool = False


_WAN_NEGATIVE = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, "
    "static, overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, "
    "extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, "
    "fused fingers, still picture, messy background, three legs, many people in the background, "
    "walking backwards"
)
_LTX_NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"

FAMILIES: dict[str, ModelFamily] = {
    f.id: f
    for f in [
        ModelFamily(
            id="ltx",
            label="LTX-Video 0.9.x",
            adapter="ltx",
            pipelines={
                "t2v": "LTXPipeline",
                "i2v": "LTXImageToVideoPipeline",
                "keyframes": "LTXConditionPipeline",
            },
            frame_multiple=8,
            size_multiple=32,
            default_width=768,
            default_height=512,
            default_frames=121,
            max_frames=257,
            default_fps=24,
            default_steps=40,
            default_guidance=3.0,
            default_negative_prompt=_LTX_NEGATIVE,
            notes="keyframes use LTXConditionPipeline (0.9.5+ checkpoints) with images at frame indices",
        ),
        ModelFamily(
            id="wan",
            label="Wan 2.1 / 2.2",
            adapter="wan",
            pipelines={
                "t2v": "WanPipeline",
                "i2v": "WanImageToVideoPipeline",
                "keyframes": "WanImageToVideoPipeline",  # needs a first-last-frame (FLF2V) transformer
                "vace": "WanVACEPipeline",
                "v2v": "WanVideoToVideoPipeline",
            },
            frame_multiple=4,
            size_multiple=16,
            default_width=832,
            default_height=480,
            default_frames=81,
            max_frames=161,
            default_fps=16,
            default_steps=30,
            default_guidance=5.0,
            default_negative_prompt=_WAN_NEGATIVE,
        ),
        ModelFamily(
            id="animatediff",
            label="AnimateDiff (SD 1.5 + motion adapter)",
            adapter="unet",
            pipelines={
                "t2v": "AnimateDiffPipeline",
                "v2v": "AnimateDiffVideoToVideoPipeline",
            },
            frame_multiple=1,
            size_multiple=8,
            default_width=512,
            default_height=512,
            default_frames=16,
            max_frames=32,  # motion modules are trained on 16 frames; longer needs FreeNoise (extend)
            default_fps=8,
            default_steps=25,
            default_guidance=7.5,
            default_negative_prompt="bad quality, worse quality, low resolution",
            layerwise_fp8=False,
        ),
        ModelFamily(
            id="skyreels-df",
            label="SkyReels-V2 diffusion forcing",
            adapter="wan",  # Wan-architecture transformer and VAE
            pipelines={
                "t2v": "SkyReelsV2DiffusionForcingPipeline",
                "i2v": "SkyReelsV2DiffusionForcingImageToVideoPipeline",
                "v2v": "SkyReelsV2DiffusionForcingVideoToVideoPipeline",
            },
            frame_multiple=4,
            size_multiple=16,
            default_width=960,
            default_height=544,
            default_frames=97,
            max_frames=257,
            default_fps=24,
            default_steps=30,
            default_guidance=6.0,
            default_negative_prompt=_WAN_NEGATIVE,
        ),
        ModelFamily(
            id="svd",
            label="Stable Video Diffusion",
            adapter="svd",
            pipelines={"i2v": "StableVideoDiffusionPipeline"},
            frame_multiple=1,
            size_multiple=8,
            default_width=1024,
            default_height=576,
            default_frames=25,
            max_frames=25,
            default_fps=7,
            default_steps=25,
            default_guidance=3.0,
            layerwise_fp8=False,
            notes="image-only conditioning: no prompt; its VAE does not support tiling",
        ),
    ]
}

_WAN_VAE_FP32 = {"vae": "float32"}  # Wan's VAE loses detail in bf16 (diffusers' own Wan docs load it in fp32)

PRESETS: dict[str, ModelPreset] = {
    p.id: p
    for p in [
        # Built-in tiny models: random weights, for smoke tests; they produce noise.
        ModelPreset("tiny-ltx", "ltx", {"t2v": "tiny-ltx", "i2v": "tiny-ltx", "keyframes": "tiny-ltx"},
                    "tiny random LTX-Video (noise; for smoke tests)", dtype="float32", tiny=True),
        ModelPreset("tiny-wan", "wan",
                    {"t2v": "tiny-wan", "i2v": "tiny-wan-i2v", "keyframes": "tiny-wan-flf2v",
                     "vace": "tiny-wan-vace"},
                    "tiny random Wan 2.1 (noise; for smoke tests)", dtype="float32", tiny=True),
        ModelPreset("tiny-animatediff", "animatediff", {"t2v": "tiny-animatediff"},
                    "tiny random AnimateDiff (noise; for smoke tests)", dtype="float32", tiny=True),
        ModelPreset("tiny-skyreels-df", "skyreels-df", {"t2v": "tiny-skyreels-df"},
                    "tiny random SkyReels-V2 diffusion forcing (noise; for smoke tests)", dtype="float32",
                    tiny=True),
        ModelPreset("tiny-svd", "svd", {"i2v": "tiny-svd"},
                    "tiny random Stable Video Diffusion (noise; for smoke tests)", dtype="float32", tiny=True),
        # Real models (hub repo ids in diffusers format).
        ModelPreset("ltx-video", "ltx",
                    {"t2v": "Lightricks/LTX-Video-0.9.5", "i2v": "Lightricks/LTX-Video-0.9.5",
                     "keyframes": "Lightricks/LTX-Video-0.9.5"},
                    "LTX-Video 0.9.5 (2B): fast, 768x512, 24 fps", size_profile="ltx-video-0.9.5"),
        ModelPreset("wan2.1-t2v-1.3b", "wan",
                    {"t2v": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "vace": "Wan-AI/Wan2.1-VACE-1.3B-diffusers"},
                    "Wan 2.1 1.3B text-to-video, 480p", size_profile="wan2.1-t2v-1.3b",
                    component_dtypes=_WAN_VAE_FP32),
        ModelPreset("wan2.1-14b", "wan",
                    {"t2v": "Wan-AI/Wan2.1-T2V-14B-Diffusers", "i2v": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
                     "keyframes": "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
                     "vace": "Wan-AI/Wan2.1-VACE-14B-diffusers"},
                    "Wan 2.1 14B: T2V, I2V 480p, first-last-frame 720p, VACE",
                    size_profile="wan2.1-t2v-14b", component_dtypes=_WAN_VAE_FP32),
        ModelPreset("wan2.2-a14b", "wan",
                    {"t2v": "Wan-AI/Wan2.2-T2V-A14B-Diffusers", "i2v": "Wan-AI/Wan2.2-I2V-A14B-Diffusers"},
                    "Wan 2.2 A14B (two experts: high/low noise)", size_profile="wan2.2-a14b",
                    component_dtypes=_WAN_VAE_FP32),
        ModelPreset("animatediff-sd15", "animatediff", {"t2v": "emilianJR/epiCRealism"},
                    "AnimateDiff v1-5-2 motion adapter on an SD 1.5 checkpoint",
                    size_profile="animatediff-sd15", dtype="float16",
                    extra_repos={"motion_adapter": "guoyww/animatediff-motion-adapter-v1-5-2"}),
        ModelPreset("skyreels-v2-df-1.3b", "skyreels-df",
                    {"t2v": "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers",
                     "i2v": "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers",
                     "v2v": "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers"},
                    "SkyReels-V2 diffusion forcing 1.3B, 540p", size_profile="skyreels-v2-df-1.3b",
                    component_dtypes=_WAN_VAE_FP32),
        ModelPreset("svd-xt", "svd", {"i2v": "stabilityai/stable-video-diffusion-img2vid-xt"},
                    "Stable Video Diffusion XT: image to 25 frames", size_profile="svd-xt", dtype="float16"),
    ]
}

# diffusers pipeline class -> family, to recognise a local folder or hub repo by its model_index.json
PIPELINE_CLASS_TO_FAMILY: dict[str, str] = {
    cls: fam.id for fam in FAMILIES.values() for cls in fam.pipelines.values()
}
PIPELINE_CLASS_TO_FAMILY.update({"WanVACEPipeline": "wan", "WanVideoToVideoPipeline": "wan"})


def get_family(family_id: str) -> ModelFamily:
    try:
        return FAMILIES[family_id]
    except KeyError:
        raise KinetographError(
            f"Unknown model family {family_id!r}. Known families: {', '.join(FAMILIES)}."
        ) from None


def family_for_pipeline_class(class_name: str) -> ModelFamily:
    family_id = PIPELINE_CLASS_TO_FAMILY.get(class_name)
    if family_id is None:
        raise KinetographError(
            f"Kinetograph does not know the diffusers pipeline {class_name!r}. Supported pipelines: "
            f"{', '.join(sorted(PIPELINE_CLASS_TO_FAMILY))}."
        )
    return FAMILIES[family_id]


def presets_for_task(task: str) -> list[str]:
    """Preset ids that can run ``task`` (their family has a pipeline for it and the preset a checkpoint)."""
    return [p.id for p in PRESETS.values() if task in p.repos and task in FAMILIES[p.family].pipelines]


def pipeline_class_for(family: ModelFamily, task: str) -> str:
    try:
        return family.pipelines[task]
    except KeyError:
        can = ", ".join(t for t in family.pipelines if t in TASKS) or "none of the generation tasks"
        raise KinetographError(
            f"The {family.label} family cannot do the task {task!r}; it can do: {can}. "
            f"Choose another task or another model."
        ) from None
