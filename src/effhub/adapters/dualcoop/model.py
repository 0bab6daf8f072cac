"""`DualCoOpModel`: the PEFT tuner of DualCoOp (Sun, Hu and Saenko, NeurIPS 2022, arXiv:2206.09541) on a CLIPModel.

`PeftModel.forward` calls the wrapped model's own `forward`, skipping the tuner. So that `model(pixel_values=...)`
returns DualCoOp's dual logits, the tuner installs DualCoOp's forward **on the wrapped CLIPModel instance** (an
instance attribute shadowing `CLIPModel.forward`). It falls back to CLIP's own forward while the adapter is disabled
(`with model.disable_adapter(): ...`), and `unload()` removes it, giving back a plain CLIPModel.

```python
import effhub                                   # registers the EFFHUB_DUALCOOP PEFT type
from peft import get_peft_model
from effhub import DualCoOpConfig

model = get_peft_model(clip, DualCoOpConfig(class_names=["cat", "dog"], n_ctx=16, tokenizer="openai/clip-..."))
out = model(pixel_values=pixel_values)          # out.logits [B, 2, C], out.probs [B, C]
out = model(pixel_values=pixel_values, class_names=["bird"])        # zero-shot: other class names
```
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from peft.tuners.tuners_utils import BaseTuner
from torch import nn
from transformers.utils import ModelOutput

from ...errors import ConfigError
from .config import (
    OPENAI_CLIP_LOGIT_SCALE,
    PAPER_LOGIT_SCALE,
    PAPER_REGION_TEMPERATURE,
    SHIPPED_TEACHER_PREFIX,
    DualCoOpConfig,
    check_class_names,
)
from .layer import (
    DualCoOpLayer,
    check_prompt_fits,
    dual_logits,
    encode_prompts,
    pad_class_tokens,
    presence_logits,
    presence_probabilities,
    region_features,
)
from .loss import asymmetric_loss, check_labels

FORWARD_MARKER = "_effhub_dualcoop_forward"


@dataclass
class DualCoOpOutput(ModelOutput):
    """Output of a DualCoOp forward pass.

    Args:
        loss (`torch.Tensor`, *optional*): the weighted asymmetric loss, when `labels` were given.
        logits (`torch.Tensor`): `[B, 2, C]` dual logits, index 0 negative and 1 positive.
        probs (`torch.Tensor`): `[B, C]` presence probabilities (softmax over each class's logit pair).
        presence_logits (`torch.Tensor`): `[B, C]` log-odds of presence (`probs` is their sigmoid); rank by these
            (mAP, top-k): float32 probabilities of confident classes tie just below 1.
        text_embeds (`torch.Tensor`): `[2C, D]` normalised prompt features, the C negative prompts first (`[C, D]`,
            positive prompts only, with `negative_prompt="image_threshold"`).
        region_weights (`torch.Tensor`, *optional*): `[B, C, N]` spatial weights (with `output_region_weights=True`).
    """

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    probs: Optional[torch.Tensor] = None
    presence_logits: Optional[torch.Tensor] = None
    text_embeds: Optional[torch.Tensor] = None
    region_weights: Optional[torch.Tensor] = None


# ------------------------------------------------------------------------------------------------- tokenizer
def _shipped_teachers() -> dict[str, Path]:
    from ...models.clip_teacher.weights import SHIPPED_DIR

    return {folder.name: folder.resolve() for folder in SHIPPED_DIR.iterdir() if (folder / "config.json").is_file()} \
        if SHIPPED_DIR.is_dir() else {}


def portable_reference(name_or_path: str | None) -> str | None:
    """A model or tokenizer reference without machine paths: a folder of a CLIP teacher shipped inside effhub becomes
    `"effhub-shipped:<name>"`; anything else is returned unchanged."""
    if not name_or_path:
        return name_or_path
    candidate = Path(str(name_or_path))
    if candidate.is_dir():
        resolved = candidate.resolve()
        for name, folder in _shipped_teachers().items():
            if folder == resolved:
                return f"{SHIPPED_TEACHER_PREFIX}{name}"
    return str(name_or_path)


def resolve_reference(reference: str) -> str:
    """The folder or repo id behind a reference (`"effhub-shipped:<name>"` -> the shipped folder)."""
    if reference.startswith(SHIPPED_TEACHER_PREFIX):
        from ...models.clip_teacher.weights import base_teacher_path

        return str(base_teacher_path(reference[len(SHIPPED_TEACHER_PREFIX):]))
    return reference


@functools.lru_cache(maxsize=8)
def load_tokenizer(reference: str):
    """The CLIP tokenizer behind `reference` (repo id, folder or `"effhub-shipped:<name>"`), cached."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_reference(reference))
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot load the DualCoOp tokenizer '{reference}' ({str(error).splitlines()[0]})",
                          "pass DualCoOpConfig(tokenizer=<repo id or folder of the CLIP tokenizer>)") from None


def class_token_ids(tokenizer, class_names: Sequence[str]) -> list[list[int]]:
    """Token ids of "<class name>." without the start and end-of-text tokens, one list per class."""
    ids = []
    for name in class_names:
        tokens = tokenizer(f"{name}.", add_special_tokens=False)["input_ids"]
        if not tokens:
            raise ConfigError(f"class name {name!r} tokenizes to nothing", "pass a class name made of words")
        ids.append(list(tokens))
    return ids


def _word_ids(tokenizer, words: str, count: int, what: str) -> list[int]:
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    if len(ids) != count:
        raise ConfigError(f"{what}={words!r} is {len(ids)} tokens but the prompt has {count} contexts",
                          f"pass words that make exactly {count} tokens, or set the context count to {len(ids)}")
    return list(ids)


# ------------------------------------------------------------------------------------------------- the tuner
def _is_clip(model: nn.Module) -> bool:
    return all(hasattr(model, name) for name in ("text_model", "vision_model", "text_projection",
                                                 "visual_projection", "logit_scale"))


def find_dualcoop_layer(model: nn.Module) -> DualCoOpLayer | None:
    """The `DualCoOpLayer` inside a CLIPModel (or `None`)."""
    layer = getattr(getattr(getattr(model, "text_model", None), "embeddings", None), "token_embedding", None)
    return layer if isinstance(layer, DualCoOpLayer) else None


class DualCoOpModel(BaseTuner):
    """PEFT tuner that adds DualCoOp's positive and negative prompt contexts to a `transformers.CLIPModel` and installs
    DualCoOp's forward on it (see the module docstring)."""

    prefix: str = "dualcoop_"
    tuner_layer_cls = DualCoOpLayer
    target_module_mapping: dict = {}

    # ---- injection
    def _pre_injection_hook(self, model: nn.Module, config: DualCoOpConfig, adapter_name: str) -> None:
        if not _is_clip(model):
            raise ConfigError(f"DualCoOp adapts a transformers CLIPModel, got a {type(model).__name__}",
                              "pass a CLIPModel (CLIPModel.from_pretrained(...)) to get_peft_model")
        prepare_config(model, config)

    def _create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key, **kwargs):
        if isinstance(target, DualCoOpLayer):
            target.update_layer(adapter_name, peft_config)
            return
        new_module = DualCoOpLayer(target, adapter_name, peft_config)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    def _post_injection_hook(self, model: nn.Module, config: DualCoOpConfig, adapter_name: str) -> None:
        install_forward(model)

    def _cast_adapter_dtype(self, adapter_name: str, autocast_adapter_dtype: bool = True) -> None:
        return None

    # ---- removal
    def _unload_and_optionally_merge(self, merge=True, progressbar=False, safe_merge=False, adapter_names=None):
        if merge:
            raise ConfigError("DualCoOp contexts are prompts, not weight deltas: merge_and_unload() cannot fold them "
                              "into CLIP", "call unload() for the plain CLIPModel, or keep the adapter loaded")
        model = super()._unload_and_optionally_merge(merge=False, progressbar=progressbar)
        uninstall_forward(model)
        return model


def prepare_config(model: nn.Module, config: DualCoOpConfig) -> DualCoOpConfig:
    """Fill the config's derived fields from the CLIP (tokenizer reference, class token ids, special ids, scales,
    widths) and check that the adapter fits the model; `ConfigError` names what does not."""
    text_config = model.config.text_config
    width = model.text_model.embeddings.token_embedding.weight.shape[1]
    recorded_width = getattr(config, "text_width", None)
    if recorded_width is not None and recorded_width != width:
        raise ConfigError(f"the DualCoOp adapter was trained on a CLIP with text width {recorded_width}, this CLIP's "
                          f"text width is {width}",
                          f"load it onto the base model it was trained on ({config.base_model_name_or_path})")
    config.text_width = width
    config.base_model_name_or_path = portable_reference(config.base_model_name_or_path)
    if config.tokenizer is None:
        config.tokenizer = portable_reference(getattr(model, "name_or_path", None) or None)
    else:
        config.tokenizer = portable_reference(config.tokenizer)
    if config.class_token_ids is None:
        if not config.tokenizer:
            raise ConfigError("DualCoOp needs a tokenizer for the class names and none is known",
                              "pass DualCoOpConfig(tokenizer=<repo id or folder of the CLIP tokenizer>)")
        config.class_token_ids = class_token_ids(load_tokenizer(config.tokenizer), config.class_names)
    vocabulary = text_config.vocab_size
    if any(not 0 <= token < vocabulary for ids in config.class_token_ids for token in ids):
        raise ConfigError(f"the adapter's class token ids exceed this CLIP's vocabulary of {vocabulary}",
                          "load the adapter onto the base model (and tokenizer) it was trained with")
    if config.bos_token_id is None:
        config.bos_token_id = text_config.bos_token_id
    if config.eos_token_id is None:
        config.eos_token_id = text_config.eos_token_id
    for n_ctx in (config.n_ctx, config.num_ctx_neg):
        check_prompt_fits(model, n_ctx, config.class_token_ids, config.class_names)
    if config.region_temperature is None or config.logit_scale is None:
        if config.scale_source == "paper":
            config.region_temperature, config.logit_scale = PAPER_REGION_TEMPERATURE, PAPER_LOGIT_SCALE
        else:
            base_scale = float(model.logit_scale.detach().float().exp())
            config.region_temperature = PAPER_REGION_TEMPERATURE * base_scale / OPENAI_CLIP_LOGIT_SCALE
            config.logit_scale = PAPER_LOGIT_SCALE
    if config.image_size is None:
        config.image_size = int(model.config.vision_config.image_size)
    for attribute, words, count in (("_init_pos_ids", config.ctx_init_pos, config.n_ctx),
                                    ("_init_neg_ids", config.ctx_init_neg, config.num_ctx_neg)):
        if words:
            if not config.tokenizer:
                raise ConfigError("context initialisation from words needs a tokenizer",
                                  "pass DualCoOpConfig(tokenizer=...)")
            setattr(config, attribute, _word_ids(load_tokenizer(config.tokenizer), words, count,
                                                 attribute.replace("_init_", "ctx_init_").strip("_")[:-4]))
    return config


# ------------------------------------------------------------------------------------------------- the forward
def install_forward(model: nn.Module) -> None:
    """Shadow `CLIPModel.forward` on this instance with DualCoOp's forward (idempotent)."""
    if getattr(model.__dict__.get("forward"), FORWARD_MARKER, False):
        return
    forward = functools.partial(dualcoop_forward, model)
    setattr(forward, FORWARD_MARKER, True)
    model.forward = forward


def uninstall_forward(model: nn.Module) -> None:
    """Remove DualCoOp's forward from the instance: `model.forward` is CLIP's again."""
    if getattr(model.__dict__.get("forward"), FORWARD_MARKER, False):
        del model.forward


def _prompt_tokens(model, layer: DualCoOpLayer, config: DualCoOpConfig, class_names, device):
    """(padded class ids, lengths, class indices into the adapter's classes or None) for `class_names`, cached."""
    names = tuple(config.class_names if class_names is None else class_names)
    cache = layer.__dict__.setdefault("_dualcoop_prompt_cache", {})
    key = (id(config), names, str(device))
    if key not in cache:
        if class_names is not None:
            check_class_names(list(names))
        known = {name: index for index, name in enumerate(config.class_names)}
        indices = [known.get(name) for name in names]
        if all(index is not None for index in indices):
            ids = [config.class_token_ids[index] for index in indices]
        else:
            if config.class_specific:
                unknown = [name for name, index in zip(names, indices) if index is None]
                raise ConfigError(f"class-specific contexts exist only for the training classes; {unknown[:5]} are new",
                                  "use an adapter with shared contexts (class_specific=False) for zero-shot classes")
            if not config.tokenizer:
                raise ConfigError("new class names need the tokenizer, and the adapter config names none",
                                  "set model.peft_config[...].tokenizer to the CLIP tokenizer's repo id or folder")
            tokenizer = load_tokenizer(config.tokenizer)
            ids = [config.class_token_ids[index] if index is not None else class_token_ids(tokenizer, [name])[0]
                   for name, index in zip(names, indices)]
        check_prompt_fits(model, max(config.n_ctx, config.num_ctx_neg), ids, list(names))
        padded, lengths = pad_class_tokens(ids, config.eos_token_id, device=device)
        cache[key] = (padded, lengths, torch.as_tensor(indices, device=device) if config.class_specific else None)
    return cache[key]


def shared_negative_features(model, context_neg, class_ids, lengths, bos_token_id, eos_token_id) -> torch.Tensor:
    """`negative_prompt="shared"`: one negative prompt "<ctx_neg> ." without a class name, its text feature repeated
    for every class `[C, D]` (class-specific negative contexts give one such prompt per class)."""
    rows = torch.arange(class_ids.shape[0], device=class_ids.device)
    full_stop = class_ids[rows, lengths - 1][:1, None]  # every class's token ids end with the full stop
    one = torch.ones(1, dtype=torch.long, device=class_ids.device)
    if context_neg.dim() == 3:
        return encode_prompts(model, context_neg, full_stop.expand(class_ids.shape[0], 1),
                              one.expand(class_ids.shape[0]), bos_token_id, eos_token_id)
    feature = encode_prompts(model, context_neg, full_stop, one, bos_token_id, eos_token_id)
    return feature.expand(class_ids.shape[0], -1)


def dual_prompt_features(model, context_pos, context_neg, class_ids, lengths, negative_prompt: str,
                         bos_token_id: int, eos_token_id: int) -> torch.Tensor:
    """The prompts' text features for `dual_logits`: `[2C, D]`, the C negative prompts first (`negative_prompt`
    `"class"` or `"shared"`), or `[C, D]`, positive prompts only (`"image_threshold"`)."""
    positive = encode_prompts(model, context_pos, class_ids, lengths, bos_token_id, eos_token_id)
    if negative_prompt == "image_threshold":
        return positive
    if negative_prompt == "shared":
        negative = shared_negative_features(model, context_neg, class_ids, lengths, bos_token_id, eos_token_id)
    else:
        negative = encode_prompts(model, context_neg, class_ids, lengths, bos_token_id, eos_token_id)
    return torch.cat([negative, positive])


def dualcoop_forward(model, pixel_values: torch.Tensor | None = None, class_names: Sequence[str] | None = None,
                     labels: torch.Tensor | None = None, return_dict: bool | None = None,
                     interpolate_pos_encoding: bool | None = None, output_region_weights: bool = False, **kwargs):
    """DualCoOp's forward on a CLIPModel carrying a `DualCoOpLayer` (installed as the instance's `forward`).

    Args:
        pixel_values (`torch.Tensor`): `[B, 3, H, W]` images, normalised as the CLIP's processor does.
        class_names (`list[str]`, *optional*): the classes to score (default: the adapter's); names outside the
            training classes are zero-shot (shared contexts only).
        labels (`torch.Tensor`, *optional*): `[B, C]` with 1, 0 or -1 (unknown): the asymmetric loss is returned.
        interpolate_pos_encoding (`bool`, *optional*): default: on when the images' size differs from the CLIP's.
        output_region_weights (`bool`): also return the spatial aggregation weights.

    While the adapter is disabled (`with peft_model.disable_adapter():`), this is CLIP's own forward.
    """
    layer = find_dualcoop_layer(model)
    if layer is None or layer.disable_adapters:
        if class_names is not None or labels is not None or output_region_weights:
            raise ConfigError("class_names/labels were passed while the DualCoOp adapter is disabled",
                              "call CLIP's own arguments inside disable_adapter(), or enable the adapter")
        extra = {} if interpolate_pos_encoding is None else {"interpolate_pos_encoding": interpolate_pos_encoding}
        if return_dict is not None:
            extra["return_dict"] = return_dict
        return type(model).forward(model, pixel_values=pixel_values, **extra, **kwargs)
    if kwargs.get("input_ids") is not None:
        raise ConfigError("DualCoOp's forward scores images against its prompts and takes no input_ids",
                          "for CLIP's own text-image forward use `with peft_model.disable_adapter():`, or call "
                          "get_text_features on the base model")
    unknown = sorted(key for key, value in kwargs.items() if value is not None and key not in ("attention_mask",))
    if unknown:
        raise ConfigError(f"DualCoOp's forward got unexpected arguments {unknown}",
                          "pass pixel_values, class_names, labels, return_dict, interpolate_pos_encoding")
    if pixel_values is None:
        raise ConfigError("DualCoOp's forward needs pixel_values", "pass pixel_values=[batch, 3, height, width]")
    if pixel_values.dim() != 4:
        raise ConfigError(f"pixel_values have shape {tuple(pixel_values.shape)}",
                          "pass a batch of images [batch, 3, height, width]")
    active = layer.active_adapters
    if len(active) != 1:
        raise ConfigError(f"DualCoOp runs one adapter at a time, {len(active)} are active ({active})",
                          "call model.set_adapter(<name>)")
    adapter = active[0]
    config = model.peft_config[adapter]
    class_ids, lengths, indices = _prompt_tokens(model, layer, config, class_names, pixel_values.device)
    context_pos, context_neg = layer.contexts(adapter)
    image_threshold = config.negative_prompt == "image_threshold"
    if image_threshold and class_ids.shape[0] < 2:
        raise ConfigError("negative_prompt='image_threshold' compares each class with the image's other classes, "
                          "and one class was given", "score two or more classes at once")
    if indices is not None:
        context_pos = context_pos[indices]
        context_neg = context_neg[indices] if context_neg is not None else None
    text = dual_prompt_features(model, context_pos, context_neg, class_ids, lengths, config.negative_prompt,
                                config.bos_token_id, config.eos_token_id)
    if interpolate_pos_encoding is None:
        size = model.config.vision_config.image_size
        interpolate_pos_encoding = tuple(pixel_values.shape[-2:]) != (size, size)
    regions = region_features(model, pixel_values, config.dense_mode, interpolate_pos_encoding)
    logits, weights = dual_logits(regions, text, config.region_temperature, config.logit_scale,
                                  getattr(config, "logit_offset", 0.0), image_threshold=image_threshold)
    loss = None
    if labels is not None:
        labels = check_labels(labels, logits.shape[0], logits.shape[2])
        loss = asymmetric_loss(logits, labels, config.asl_gamma_neg, config.asl_gamma_pos, config.asl_clip,
                               config.loss_weight)
    output = DualCoOpOutput(loss=loss, logits=logits, probs=presence_probabilities(logits),
                            presence_logits=presence_logits(logits),
                            text_embeds=text / text.norm(dim=-1, keepdim=True),
                            region_weights=weights if output_region_weights else None)
    return output if return_dict is not False else output.to_tuple()


__all__ = ["DualCoOpModel", "DualCoOpOutput", "dualcoop_forward", "install_forward", "uninstall_forward",
           "prepare_config", "find_dualcoop_layer", "dual_prompt_features", "load_tokenizer", "class_token_ids",
           "portable_reference", "resolve_reference"]
