"""Parts the tiny models of several families share: tokenizers, text and image encoders.

Nothing here touches the network: tokenizers are made in memory from a character vocabulary
that covers any ASCII prompt (other characters map to the unknown token). Every component is
built right after ``torch.manual_seed(0)`` (``seeded``), so the same builder gives
byte-identical weights on every run. Heavy libraries are imported inside the builders.
"""
from __future__ import annotations

import functools
import string
from collections.abc import Callable
from typing import Any

# One width for every tiny text encoder, because it must equal LTX `caption_channels`,
# Wan `text_dim` and the UNet `cross_attention_dim`.
TEXT_WIDTH = 32
# Prompts tokenise to characters; these are the characters with their own token.
_PROMPT_CHARACTERS = string.ascii_letters + string.digits + string.punctuation


def seeded(build: Callable[..., Any]) -> Callable[..., Any]:
    """Seed torch before building a component, so its random weights are the same on every run."""

    @functools.wraps(build)
    def build_seeded(*args: Any, **kwargs: Any) -> Any:
        import torch

        torch.manual_seed(0)
        return build(*args, **kwargs)

    return build_seeded


# ---------------------------------------------------------------------------------------------
# Tokenizers and encoders shared between families


def t5_tokenizer(model_max_length: int):
    """A T5/UMT5 (Unigram) tokenizer whose pieces are single characters, with and without the
    word-start marker, so any ASCII prompt tokenises without unknown tokens."""
    from transformers import T5Tokenizer

    # T5 layout: <pad>=0, </s>=1, <unk>=2. Word-start pieces score higher so words begin with one.
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -4.0)]
    vocab += [(f"▁{character}", -2.0) for character in _PROMPT_CHARACTERS]
    vocab += [(character, -3.0) for character in _PROMPT_CHARACTERS]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


@seeded
def t5_text_encoder(model_class_name: str, vocab_size: int):
    """A 2-layer T5-family encoder: "T5EncoderModel" (LTX) or "UMT5EncoderModel" (Wan, SkyReels)."""
    import transformers

    model_class = getattr(transformers, model_class_name)
    config = model_class.config_class(
        vocab_size=vocab_size,
        d_model=TEXT_WIDTH,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,  # deterministic even if someone switches it to training mode
    )
    return model_class(config).eval()


def clip_tokenizer():
    """A byte-level CLIP BPE tokenizer with no merges: every byte is a token, so anything tokenises."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    byte_symbols = sorted(ByteLevel.alphabet())
    # Same layout as the real CLIP vocabulary: bytes, bytes ending a word, then the two specials.
    tokens = (
        byte_symbols + [f"{symbol}</w>" for symbol in byte_symbols] + ["<|startoftext|>", "<|endoftext|>"]
    )
    vocab = {token: index for index, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


@seeded
def clip_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        # The pooled output is read at the end-of-text token, found by this id.
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config).eval()


@seeded
def clip_image_encoder(image_size: int, patch_size: int, width: int, with_projection: bool):
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=width,
        projection_dim=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
    )
    model_class = CLIPVisionModelWithProjection if with_projection else CLIPVisionModel
    return model_class(config).eval()


def clip_image_processor(image_size: int):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
