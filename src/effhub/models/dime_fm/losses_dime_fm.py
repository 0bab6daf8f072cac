"""DIME-FM's distillation losses (Sun et al., ICCV 2023, arXiv 2303.18232, §3) over unpaired image and text batches.

Notation: `I_t` teacher image embeddings, `I_s` student image embeddings (of the same images), `T_t` teacher text
embeddings of an independent text batch; `cos(A, B)` the matrix of cosine similarities, `s` the logit scale.
`KL_tau(t || s)` is the batch-mean KL divergence between `softmax(t / tau)` and `softmax(s / tau)` row by row
(no tau^2 factor, as the authors' code):

- vision-language distillation (both directions, tau = 1):
  `L_vl = KL(s cos(I_t, T_t) || s cos(I_s, T_t)) + KL(s cos(T_t, I_t) || s cos(T_t, I_s))`;
- pseudo vision-language distillation: the teacher's image embeddings stand in for captions ("pseudo captions"),
  since the teacher's image and text embeddings share one space (tau = 3):
  `L_pvl = 2 KL(s cos(I_t, I_t) || s cos(I_s, I_t))`;
- unimodal distillation (off by default, tau = 7): `L_ud = 2 KL(s cos(I_t, I_t) || s cos(I_s, I_s))`.

`L = w_vl L_vl + w_pvl L_pvl + w_ud L_ud` with the paper's weights 0.7, 0.3, 0 by default.

Under several processes the softmaxes run over the whole global batch: embeddings are gathered across processes
(`gather_with_local_grad`), the gradient flowing to each process's own part, so the loss (and, after DDP's gradient
averaging, the gradient) equals that of one process on the concatenated batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ...errors import ConfigError


@dataclass(frozen=True)
class DistillationWeights:
    """Weights and temperatures of the three losses (the paper's defaults)."""

    vl: float = 0.7
    pvl: float = 0.3
    ud: float = 0.0
    vl_temperature: float = 1.0
    pvl_temperature: float = 3.0
    ud_temperature: float = 7.0

    def __post_init__(self):
        for name in ("vl", "pvl", "ud"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss weight {name}={getattr(self, name)} is negative", "use weights >= 0")
        if self.vl + self.pvl + self.ud <= 0:
            raise ConfigError("every distillation loss weight is 0", "give vl, pvl or ud a positive weight")
        for name in ("vl_temperature", "pvl_temperature", "ud_temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}={getattr(self, name)} is not positive", "use temperatures > 0")


def cosine_logits(rows: torch.Tensor, columns: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """`scale * cos(rows, columns)`: `(len(rows), len(columns))`."""
    return scale * F.normalize(rows, dim=-1) @ F.normalize(columns, dim=-1).T


def kl_distillation(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Batch-mean `KL(softmax(teacher / T) || softmax(student / T))` over rows (no T^2 factor)."""
    target = F.log_softmax(teacher_logits / temperature, dim=-1)
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    return (target.exp() * (target - log_student)).sum(dim=-1).mean()


def vl_loss(teacher_images, student_images, teacher_texts, scale, temperature: float = 1.0) -> torch.Tensor:
    """Vision-language distillation in both directions (image rows over texts, text rows over images)."""
    image_to_text = kl_distillation(cosine_logits(teacher_images, teacher_texts, scale),
                                    cosine_logits(student_images, teacher_texts, scale), temperature)
    text_to_image = kl_distillation(cosine_logits(teacher_texts, teacher_images, scale),
                                    cosine_logits(teacher_texts, student_images, scale), temperature)
    return image_to_text + text_to_image


def pvl_loss(teacher_images, student_images, scale, temperature: float = 3.0) -> torch.Tensor:
    """Pseudo vision-language distillation: the teacher's image embeddings as pseudo captions."""
    return 2 * kl_distillation(cosine_logits(teacher_images, teacher_images, scale),
                               cosine_logits(student_images, teacher_images, scale), temperature)


def ud_loss(teacher_images, student_images, scale, temperature: float = 7.0) -> torch.Tensor:
    """Unimodal distillation: image-image similarity structure of the teacher against the student's."""
    return 2 * kl_distillation(cosine_logits(teacher_images, teacher_images, scale),
                               cosine_logits(student_images, student_images, scale), temperature)


def dime_fm_loss(teacher_images, student_images, teacher_texts, scale,
                 weights: DistillationWeights = DistillationWeights()) -> dict[str, torch.Tensor]:
    """The weighted sum and its parts (`loss`, `vl`, `pvl`, `ud`); parts with weight 0 are not computed."""
    if teacher_images.shape != student_images.shape:
        raise ConfigError(f"teacher image embeddings {tuple(teacher_images.shape)} and student image embeddings "
                          f"{tuple(student_images.shape)} differ in shape",
                          "project the student into the teacher's joint space, one row per image")
    if teacher_texts.shape[-1] != teacher_images.shape[-1]:
        raise ConfigError(f"text embeddings have width {teacher_texts.shape[-1]}, image embeddings "
                          f"{teacher_images.shape[-1]}", "use text and image features of one teacher")
    parts: dict[str, torch.Tensor] = {}
    total = student_images.new_zeros(())
    if weights.vl:
        parts["vl"] = vl_loss(teacher_images, student_images, teacher_texts, scale, weights.vl_temperature)
        total = total + weights.vl * parts["vl"]
    if weights.pvl:
        parts["pvl"] = pvl_loss(teacher_images, student_images, scale, weights.pvl_temperature)
        total = total + weights.pvl * parts["pvl"]
    if weights.ud:
        parts["ud"] = ud_loss(teacher_images, student_images, scale, weights.ud_temperature)
        total = total + weights.ud * parts["ud"]
    return {"loss": total, **parts}


def paired_logit_distillation_loss(teacher_images, student_images, teacher_texts, scale) -> dict[str, torch.Tensor]:
    """The baseline of the benchmark: open_clip's distillation on *paired* batches (row i of the images is paired
    with row i of the texts): CLIP's contrastive loss on the student's logits plus the cross-entropy of the student's
    image-text logits against the teacher's, both directions, averaged."""
    student = cosine_logits(student_images, teacher_texts, scale)
    teacher = cosine_logits(teacher_images, teacher_texts, scale)
    target = torch.arange(len(student), device=student.device)
    contrastive = (F.cross_entropy(student, target) + F.cross_entropy(student.T, target)) / 2

    def soft_cross_entropy(t, s):
        return -(t.softmax(dim=-1) * s.log_softmax(dim=-1)).sum(dim=-1).mean()

    distill = (soft_cross_entropy(teacher, student) + soft_cross_entropy(teacher.T, student.T)) / 2
    return {"loss": contrastive + distill, "contrastive": contrastive, "distill": distill}


class _GatherLocalGrad(torch.autograd.Function):
    """All-gather along dim 0; the backward passes each process the gradient of its own rows, times the world size
    (DDP then averages over processes, which gives the gradient of the one-process loss on the global batch: every
    process computes the same global loss, each through its own rows)."""

    @staticmethod
    def forward(ctx, tensor):
        world = dist.get_world_size()
        ctx.rank, ctx.world, ctx.rows = dist.get_rank(), world, tensor.shape[0]
        pieces = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(pieces, tensor.contiguous())
        return torch.cat(pieces)

    @staticmethod
    def backward(ctx, grad):
        start = ctx.rank * ctx.rows
        return grad[start: start + ctx.rows] * ctx.world


def gather_with_local_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` (equal first dimension on every process) over processes, in rank order; only the local
    rows carry gradient (scaled so that DDP's averaging restores the global batch's gradient). A no-op on one
    process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    if tensor.requires_grad:
        return _GatherLocalGrad.apply(tensor)
    pieces = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(pieces, tensor.contiguous())
    return torch.cat(pieces)


__all__ = [
    "DistillationWeights",
    "cosine_logits",
    "kl_distillation",
    "vl_loss",
    "pvl_loss",
    "ud_loss",
    "dime_fm_loss",
    "paired_logit_distillation_loss",
    "gather_with_local_grad",
]
