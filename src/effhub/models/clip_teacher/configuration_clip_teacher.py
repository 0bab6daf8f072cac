"""Build the `transformers.CLIPConfig` of a CLIP teacher from its tokenizer and sizes.

Two traps of CLIP's text tower are handled here:

- **pooling**: `CLIPTextTransformer` pools the hidden state at the first end-of-text token, unless the text config's
  `eos_token_id` is 2 (the pre-2023 default), in which case it pools at the position of the *highest token id*.
  The ids are therefore taken from the tokenizer, never left at their defaults.
- **positions**: `max_position_embeddings` bounds the prompt length. DualCoOp (arXiv 2206.09541) puts learned
  context tokens between the start token and the class name (16 by default), so the table must hold the longest
  class prompt plus those contexts. A position is only trained when training texts reach it (the text tower is
  causal and pools at the end-of-text token, so nothing after it gets a gradient): the table is therefore sized to
  what the training captions reach (:func:`trained_positions`), and a recipe whose captions are too short for its
  context count is refused.
"""

from __future__ import annotations

from typing import Sequence

from ...errors import ConfigError

# DualCoOp's default number of learned contexts (its zero-shot README setting uses 64)
DEFAULT_LEARNED_CONTEXTS = 16
LEGACY_EOS_TOKEN_ID = 2


def context_prompt_length(tokenizer, class_names: Sequence[str], learned_contexts: int) -> int:
    """Tokens of the longest DualCoOp prompt "X X ... X <class name>." (start and end-of-text included)."""
    longest = max((len(tokenizer(f"{name}.")["input_ids"]) for name in class_names), default=2)
    return longest + learned_contexts


def trained_positions(tokenizer, texts: Sequence[str], min_texts: int) -> int:
    """The longest sequence length that at least `min_texts` of `texts` reach (start and end-of-text included).

    Every position below it receives gradient from at least `min_texts` training texts.
    """
    if min_texts < 1:
        raise ConfigError(f"min_texts is {min_texts}", "pass a positive number of texts")
    lengths = sorted((len(tokenizer(t)["input_ids"]) for t in texts), reverse=True)
    if len(lengths) < min_texts:
        return 0
    return lengths[min_texts - 1]


def required_positions(tokenizer, texts: Sequence[str], class_names: Sequence[str],
                       learned_contexts: int = DEFAULT_LEARNED_CONTEXTS, min_texts: int = 1,
                       multiple_of: int = 8) -> int:
    """Positions of the text tower: as many as at least `min_texts` training texts reach, rounded down to
    `multiple_of`, and never fewer than a DualCoOp prompt with `learned_contexts` contexts needs.

    Texts longer than the result are truncated in training (their end-of-text token stays last).

    Raises:
        `ConfigError`: the training texts do not reach the prompt length, so some positions of a prompt with
            `learned_contexts` contexts would never be trained.
    """
    needed = context_prompt_length(tokenizer, class_names, learned_contexts)
    reached = trained_positions(tokenizer, texts, min_texts)
    if reached < needed:
        raise ConfigError(
            f"a prompt with {learned_contexts} learned contexts takes {needed} tokens, but only {reached} positions "
            f"are reached by at least {min_texts} training texts",
            "lower tokenizer.learned_contexts, or train on longer captions",
        )
    return max(needed, reached // multiple_of * multiple_of)


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


__all__ = [
    "DEFAULT_LEARNED_CONTEXTS",
    "context_prompt_length",
    "trained_positions",
    "required_positions",
    "build_clip_teacher_config",
]
