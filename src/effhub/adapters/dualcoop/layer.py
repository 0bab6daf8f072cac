"""DualCoOp's tensors and functions: the context layer, the prompt text path, dense region features and the
class-specific region aggregation (Sun, Hu and Saenko, NeurIPS 2022, arXiv:2206.09541).

- :class:`DualCoOpLayer` wraps CLIP's text token embedding (whose width the contexts share) and holds the learned
  positive and negative contexts per adapter. Its own forward is the embedding's, so CLIP's text path is unchanged.
- :func:`encode_prompts`: transformers' `CLIPTextModel` refuses `inputs_embeds`, so the frozen text tower is run here
  step by step (token and context embeddings, positions, causal mask, encoder, final norm, pooling at each prompt's
  end-of-text token, projection). With contexts equal to the token embeddings of real words it reproduces
  `CLIPModel.get_text_features` exactly (tested).
- :func:`region_features`: a feature per image patch in the joint space. DualCoOp reads them from CLIP ResNets'
  attention pool; for a ViT effhub defaults to the MaskCLIP value path (Zhou et al., ECCV 2022): the last block's
  value projection and output projection applied to every token (its query-key mixing, residual and MLP skipped),
  then the post-layernorm and the visual projection.
- :func:`dual_logits`: cosine similarity of every region with every prompt scaled by the spatial temperature, a
  softmax over regions of each class's positive map used as weights for both maps, and the weighted sums scaled by
  the logit scale: logits `[B, 2, C]` (index 0 negative, 1 positive).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from ...errors import ConfigError

CONTEXT_INIT_STD = 0.02


class DualCoOpLayer(nn.Module, BaseTunerLayer):
    """CLIP's text token embedding with DualCoOp's learned contexts beside it (`dualcoop_ctx_pos`/`_neg`).

    Contexts have shape `[n_ctx, width]` (shared by all classes) or `[num_classes, n_ctx, width]` (class-specific).
    """

    adapter_layer_names = ("dualcoop_ctx_pos", "dualcoop_ctx_neg")
    other_param_names = ()

    def __init__(self, base_layer: nn.Module, adapter_name: str, config):
        super().__init__()
        if not isinstance(base_layer, nn.Embedding):
            raise ConfigError(f"DualCoOp targets CLIP's text token embedding, got a {type(base_layer).__name__}",
                              "leave DualCoOpConfig.target_modules at its default")
        self.base_layer = base_layer
        self.dualcoop_ctx_pos = nn.ParameterDict({})
        self.dualcoop_ctx_neg = nn.ParameterDict({})
        self._disable_adapters = False
        self.merged_adapters = []
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    @property
    def width(self) -> int:
        return self.base_layer.weight.shape[1]

    def update_layer(self, adapter_name: str, config) -> None:
        """Create the contexts of `adapter_name`: from `ctx_init_*` words' token embeddings, or N(0, 0.02)."""
        weight = self.base_layer.weight
        leading = (len(config.class_names),) if config.class_specific else ()
        for attribute, count, init_ids in (("dualcoop_ctx_pos", config.n_ctx, getattr(config, "_init_pos_ids", None)),
                                           ("dualcoop_ctx_neg", config.num_ctx_neg,
                                            getattr(config, "_init_neg_ids", None))):
            if count == 0:  # negative_prompt="image_threshold": no negative prompt, no contexts
                continue
            if init_ids is not None:
                context = weight.detach()[torch.as_tensor(init_ids, device=weight.device)].clone()
                context = context.expand(*leading, *context.shape).clone()
            else:
                context = torch.empty(*leading, count, self.width, device=weight.device, dtype=weight.dtype)
                nn.init.normal_(context, std=CONTEXT_INIT_STD)
            getattr(self, attribute)[adapter_name] = nn.Parameter(context)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def contexts(self, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative) contexts of `adapter_name`; the negative is `None` without a negative prompt."""
        if adapter_name not in self.dualcoop_ctx_pos:
            raise ConfigError(f"no DualCoOp adapter named '{adapter_name}' (have {list(self.dualcoop_ctx_pos)})",
                              "pass the name the adapter was loaded under")
        negative = self.dualcoop_ctx_neg[adapter_name] if adapter_name in self.dualcoop_ctx_neg else None
        return self.dualcoop_ctx_pos[adapter_name], negative

    def merge(self, safe_merge: bool = False, adapter_names=None) -> None:
        raise ConfigError("DualCoOp contexts are prompts, not weight deltas: they cannot be merged into CLIP",
                          "keep the adapter loaded, or call unload() to get the plain CLIPModel back")

    def unmerge(self) -> None:
        return None

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.base_layer(input_ids)

    def __repr__(self) -> str:
        return "dualcoop." + super().__repr__()


# ------------------------------------------------------------------------------------------------- prompts
def pad_class_tokens(class_token_ids: Sequence[Sequence[int]], pad_id: int, device=None):
    """`(ids [C, T] padded with pad_id, lengths [C])` of the class-name token ids (without start/end tokens)."""
    lengths = [len(ids) for ids in class_token_ids]
    if not lengths or min(lengths) < 1:
        raise ConfigError("a class name tokenizes to no token", "pass non-empty class names")
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad_id, dtype=torch.long, device=device)
    for row, tokens in enumerate(class_token_ids):
        ids[row, : len(tokens)] = torch.as_tensor(list(tokens), dtype=torch.long, device=device)
    return ids, torch.as_tensor(lengths, dtype=torch.long, device=device)


def prompt_length(n_ctx: int, class_token_ids: Sequence[Sequence[int]]) -> int:
    """Tokens of the longest prompt: start + contexts + the longest class name (with its full stop) + end-of-text."""
    return 2 + n_ctx + max(len(ids) for ids in class_token_ids)


def check_prompt_fits(clip, n_ctx: int, class_token_ids: Sequence[Sequence[int]], class_names=None) -> None:
    """Refuse prompts longer than the text tower's position table (`ConfigError`).

    A CLIP's text tower is causal and pools at the end-of-text token, so a position is trained only when training
    texts reach it; effhub's CLIP teachers size the table to the positions their captions reach, and OpenAI's CLIP
    trained all 77. A prompt past the table would use positions no text ever trained (or none at all).
    """
    positions = clip.config.text_config.max_position_embeddings
    needed = prompt_length(n_ctx, class_token_ids)
    if needed > positions:
        longest = ""
        if class_names is not None:
            index = max(range(len(class_token_ids)), key=lambda i: len(class_token_ids[i]))
            longest = f" (longest class name: '{class_names[index]}')"
        raise ConfigError(
            f"a DualCoOp prompt with {n_ctx} contexts takes {needed} tokens{longest}, but the text tower has only "
            f"{positions} trained positions",
            f"use at most {positions - needed + n_ctx} contexts (n_ctx / n_ctx_neg), or shorter class names",
        )


def encode_prompts(clip, contexts: torch.Tensor, class_ids: torch.Tensor, class_lengths: torch.Tensor,
                   bos_token_id: int, eos_token_id: int, pad_token_id: int | None = None) -> torch.Tensor:
    """Projected text features `[C, projection_dim]` of the prompts "<start> ctx_1 ... ctx_n <class name>. <eot>".

    Args:
        clip (`CLIPModel`): the frozen CLIP (its text tower, final norm and text projection are used).
        contexts (`torch.Tensor`): `[n_ctx, width]` (shared) or `[C, n_ctx, width]` (one set per class).
        class_ids (`torch.Tensor`): `[C, T]` token ids of each class name with its full stop, padded.
        class_lengths (`torch.Tensor`): `[C]` the unpadded lengths.
        bos_token_id, eos_token_id, pad_token_id: the tokenizer's start, end-of-text and padding ids.
    """
    from transformers.masking_utils import create_causal_mask

    text = clip.text_model
    embedding = text.embeddings.token_embedding
    num_classes = class_ids.shape[0]
    n_ctx = contexts.shape[-2]
    if contexts.dim() == 2:
        contexts = contexts.unsqueeze(0).expand(num_classes, -1, -1)
    elif contexts.shape[0] != num_classes:
        raise ConfigError(f"{contexts.shape[0]} class-specific context sets for {num_classes} classes",
                          "pass the classes the adapter was trained on")
    pad = eos_token_id if pad_token_id is None else pad_token_id
    device = class_ids.device
    length = 2 + n_ctx + class_ids.shape[1]
    # token ids of every position after the contexts: class tokens, end-of-text, padding
    suffix = torch.full((num_classes, class_ids.shape[1] + 1), pad, dtype=torch.long, device=device)
    suffix[:, : class_ids.shape[1]] = class_ids
    rows = torch.arange(num_classes, device=device)
    suffix[rows, class_lengths] = eos_token_id
    # padding after the end-of-text token (a class shorter than the longest) is the pad id
    after = torch.arange(suffix.shape[1], device=device)[None, :] > class_lengths[:, None]
    suffix = suffix.masked_fill(after, pad)
    start = torch.full((num_classes, 1), bos_token_id, dtype=torch.long, device=device)
    embeds = torch.cat([embedding(start), contexts.to(embedding.weight.dtype), embedding(suffix)], dim=1)
    end = 1 + n_ctx + class_lengths
    attention_mask = (torch.arange(length, device=device)[None, :] <= end[:, None]).long()
    hidden = text.embeddings(inputs_embeds=embeds)
    mask = create_causal_mask(config=text.config, inputs_embeds=hidden, attention_mask=attention_mask, cache=None)
    hidden = text.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
    hidden = text.final_layer_norm(hidden)
    return clip.text_projection(hidden[rows, end])


# ------------------------------------------------------------------------------------------------- images
def region_features(clip, pixel_values: torch.Tensor, mode: str = "values",
                    interpolate_pos_encoding: bool = False) -> torch.Tensor:
    """Projected features of every image patch, `[B, num_patches, projection_dim]` (not normalised).

    Args:
        mode (`str`): `"values"`: MaskCLIP's value path through the last block (`out_proj(v_proj(layer_norm1(h)))`
            of the last block's input h; no query-key mixing, residual or MLP); `"class_values"`: the class token's
            own path through the last block with the attention output replaced by one patch's value (`h_cls +
            out_proj(v_proj(layer_norm1(h_i)))`, then the block's MLP with its residual), so that the mean over the
            patches and the class token of the pre-MLP features is the class token's when the last block attends
            uniformly (effhub's mean-pooling teachers); `"tokens"`: the last block's patch tokens; `"global"`: one
            region, the pooled image embedding (no spatial aggregation). Each then goes through `post_layernorm`
            and `visual_projection`, as CLIP's class token does.
    """
    vision = clip.vision_model
    hidden = vision.embeddings(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
    hidden = vision.pre_layrnorm(hidden)
    for layer in vision.encoder.layers[:-1]:
        hidden = layer(hidden, None)
    return regions_from_last_block_input(clip, hidden, mode)


def regions_from_last_block_input(clip, hidden: torch.Tensor, mode: str = "values") -> torch.Tensor:
    """`region_features` from the last vision block's input `hidden` `[B, 1 + num_patches, width]` (e.g. a CLIP
    forward's `vision_model_output.hidden_states[-2]`, so that a caller who ran the tower does not run it again)."""
    vision = clip.vision_model
    last = vision.encoder.layers[-1]
    if mode == "values":
        tokens = last.self_attn.out_proj(last.self_attn.v_proj(last.layer_norm1(hidden)))[:, 1:]
    elif mode == "class_values":
        tokens = hidden[:, :1] + last.self_attn.out_proj(last.self_attn.v_proj(last.layer_norm1(hidden[:, 1:])))
        tokens = tokens + last.mlp(last.layer_norm2(tokens))
    elif mode == "tokens":
        tokens = last(hidden, None)[:, 1:]
    elif mode == "global":
        tokens = last(hidden, None)[:, :1]
    else:
        raise ConfigError(f"dense mode {mode!r}", "use 'values', 'class_values', 'tokens' or 'global'")
    return clip.visual_projection(vision.post_layernorm(tokens))


def dual_logits(regions: torch.Tensor, text_features: torch.Tensor, region_temperature: float,
                logit_scale: float, logit_offset: float = 0.0,
                image_threshold: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-specific region aggregation: `(logits [B, 2, C], weights [B, C, N])`.

    Args:
        regions (`torch.Tensor`): `[B, N, D]` region features.
        text_features (`torch.Tensor`): `[2C, D]` prompt features, the C negative prompts first; `[C, D]` positive
            prompts only with `image_threshold`.
        region_temperature (`float`): scale of the cosine similarities before the spatial softmax.
        logit_scale (`float`): scale of the aggregated logits.
        logit_offset (`float`): added to every positive logit after scaling (0 in the paper).
        image_threshold (`bool`): no negative prompts: each class's negative logit is the log-mean-exp of the image's
            positive logits over the C classes (`DualCoOpConfig.negative_prompt="image_threshold"`).
    """
    num_classes = text_features.shape[0] if image_threshold else text_features.shape[0] // 2
    regions = regions / regions.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    similarity = region_temperature * torch.einsum("bnd,kd->bkn", regions, text_features.to(regions.dtype))
    positive = similarity[:, -num_classes:]
    weights = positive.softmax(dim=-1)
    positive_logits = logit_scale * (positive * weights).sum(-1)
    if image_threshold:
        negative_logits = (positive_logits.logsumexp(dim=-1, keepdim=True) - math.log(num_classes))
        negative_logits = negative_logits.expand_as(positive_logits)
    else:
        negative_logits = logit_scale * (similarity[:, :num_classes] * weights).sum(-1)
    logits = torch.stack([negative_logits, positive_logits], dim=1)
    if logit_offset:
        logits = logits + torch.tensor([0.0, float(logit_offset)], dtype=logits.dtype, device=logits.device)[:, None]
    return logits, weights


def dual_logit_offset(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The offset that makes the mean presence logit of `logits` `[B, 2, C]` (computed without offset) the log-odds
    of the positive rate among the known `labels` (1, 0, -1): a data-driven start for `DualCoOpConfig.logit_offset`."""
    labels = torch.as_tensor(labels)
    known = labels >= 0
    rate = float((labels == 1).sum()) / max(int(known.sum()), 1)
    rate = min(max(rate, 1e-4), 1 - 1e-4)
    margin = (logits[:, 1] - logits[:, 0]).detach().float()
    return float(torch.logit(torch.tensor(rate))) - float(margin[known.to(margin.device)].mean())


def presence_logits(logits: torch.Tensor) -> torch.Tensor:
    """The log-odds of presence `[B, C]`: positive minus negative logit of each class (`presence_probabilities` is
    their sigmoid). Rank by these, not by the probabilities: in float32 the probabilities of confident classes
    round to the same few values just below 1, and the ties cost ranking metrics (measured: 1.5 mAP points on the
    DualCoOp benchmark's quick test images, docs/dualcoop.md)."""
    return logits[:, 1] - logits[:, 0]


def presence_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """p(class present) `[B, C]`: the softmax over each class's (negative, positive) logit pair, positive entry."""
    return logits.softmax(dim=1)[:, 1]


__all__ = ["DualCoOpLayer", "pad_class_tokens", "prompt_length", "check_prompt_fits", "encode_prompts",
           "region_features", "regions_from_last_block_input", "dual_logits", "dual_logit_offset", "presence_logits", "presence_probabilities"]
