"""Build the `transformers.CLIPConfig` of a CLIP teacher from its tokenizer and sizes.

Two traps of CLIP's text tower are handled here:

- **pooling**: `CLIPTextTransformer` pools the hidden state at the first end-of-text token, unless the text config's
  `eos_token_id` is 2 (the pre-2023 default), in which case it pools at the position of the *highest token id*.
  The ids are therefore taken from the tokenizer, never left at their defaults.
- **positions**: `max_position_embeddings` bounds the prompt length. DualCoOp (arXiv 2206.09541) inserts up to 64
  learned context tokens between the start token and the class name, so the table must hold the longest class
  prompt plus those contexts, not only the longest caption.
"""

from __future__ import annotations

from typing import Sequence

from ...errors import ConfigError

# DualCoOp uses 16 learned contexts by default and 64 for zero-shot multi-label recognition
MAX_LEARNED_CONTEXTS = 64
LEGACY_EOS_TOKEN_ID = 2


def required_positions(tokenizer, texts: Sequence[str], class_prompts: Sequence[str],
                       learned_contexts: int = MAX_LEARNED_CONTEXTS, multiple_of: int = 8) -> int:
    """Positions the text tower needs: the longest text, or the longest class prompt plus `learned_contexts`.

    Token counts include the start and end-of-text tokens; the result is rounded up to `multiple_of`.
    """
    longest_text = max((len(tokenizer(t)["input_ids"]) for t in texts), default=0)
    longest_prompt = max((len(tokenizer(p)["input_ids"]) for p in class_prompts), default=0)
    needed = max(longest_text, longest_prompt + learned_contexts)
    return -(-needed // multiple_of) * multiple_of


def build_clip_teacher_config(
    tokenizer,
    *,
    max_position_embeddings: int,
    image_size: int,
    patch_size: int,
    projection_dim: int = 128,
    text_hidden_size: int = 128,
    text_layers: int = 3,
    text_heads: int = 4,
    vision_hidden_size: int = 128,
    vision_layers: int = 4,
    vision_heads: int = 4,
    mlp_ratio: int = 4,
):
    """A `CLIPConfig` whose text config takes vocabulary size and bos/eos/pad ids from `tokenizer`."""
    from transformers import CLIPConfig

    if image_size % patch_size:
        raise ConfigError(f"image_size {image_size} is not a multiple of patch_size {patch_size}",
                          "pick a patch size that divides the image size")
    for name, hidden, heads in (("text", text_hidden_size, text_heads), ("vision", vision_hidden_size, vision_heads)):
        if hidden % heads:
            raise ConfigError(f"{name} hidden size {hidden} is not divisible by {heads} heads",
                              "pick a head count that divides the hidden size")
    eos_token_id = tokenizer.eos_token_id
    if eos_token_id is None or eos_token_id == LEGACY_EOS_TOKEN_ID:
        raise ConfigError(
            f"The tokenizer's end-of-text id is {eos_token_id!r}; CLIP treats id {LEGACY_EOS_TOKEN_ID} as the legacy "
            "marker and would pool at the highest token id instead",
            "train the tokenizer with train_clip_tokenizer (end-of-text gets the last id)",
        )
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer_limit is not None and tokenizer_limit > max_position_embeddings:
        raise ConfigError(
            f"The tokenizer allows {tokenizer_limit} tokens but the text tower has {max_position_embeddings} positions",
            "set tokenizer.model_max_length to max_position_embeddings",
        )
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": text_hidden_size,
        "intermediate_size": text_hidden_size * mlp_ratio,
        "num_hidden_layers": text_layers,
        "num_attention_heads": text_heads,
        "max_position_embeddings": max_position_embeddings,
        "projection_dim": projection_dim,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision_config = {
        "hidden_size": vision_hidden_size,
        "intermediate_size": vision_hidden_size * mlp_ratio,
        "num_hidden_layers": vision_layers,
        "num_attention_heads": vision_heads,
        "image_size": image_size,
        "patch_size": patch_size,
        "projection_dim": projection_dim,
    }
    return CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=projection_dim)


__all__ = ["MAX_LEARNED_CONTEXTS", "required_positions", "build_clip_teacher_config"]
