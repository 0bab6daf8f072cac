"""DIME-FM losses against hand-computed 3x3 examples, and the cross-process gather (2 CPU processes give the loss and
gradient of one process on the concatenated batch)."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from effhub.errors import ConfigError
from effhub.models.dime_fm.losses_dime_fm import (
    DistillationWeights, dime_fm_loss, gather_with_local_grad, kl_distillation, pvl_loss, ud_loss, vl_loss,
)

LN2 = math.log(2.0)
# teacher images = teacher texts = the 3 basis vectors; the student maps image 1 onto image 0's direction
TEACHER = torch.eye(3)
STUDENT = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]])


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def test_kl_distillation_is_the_batch_mean_kl_of_softmaxes():
    teacher, student = torch.tensor([[LN2, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 0.0]])
    assert kl_distillation(teacher, student, 1.0).item() == pytest.approx(kl([.5, .25, .25], [1 / 3] * 3), abs=1e-6)


def test_vision_language_loss_by_hand():
    # scale ln 2 at temperature 1: a similarity of 1 weighs twice a similarity of 0
    # image rows: only row 1 differs: teacher [1/4, 1/2, 1/4], student [1/2, 1/4, 1/4]
    image_to_text = kl([.25, .5, .25], [.5, .25, .25]) / 3
    # text rows: row 0 teacher [1/2, 1/4, 1/4] vs student logits [1, 1, 0] -> [2/5, 2/5, 1/5];
    #            row 1 teacher [1/4, 1/2, 1/4] vs student logits [0, 0, 0] -> [1/3, 1/3, 1/3]
    text_to_image = (kl([.5, .25, .25], [.4, .4, .2]) + kl([.25, .5, .25], [1 / 3] * 3)) / 3
    assert image_to_text == pytest.approx(0.25 * LN2 / 3)
    assert vl_loss(TEACHER, STUDENT, TEACHER, LN2, 1.0).item() == pytest.approx(image_to_text + text_to_image,
                                                                               abs=1e-6)


def test_pseudo_vision_language_loss_by_hand():
    # teacher image embeddings as pseudo captions, temperature 3: scale 3 ln 2 gives the numbers above
    expected = 2 * kl([.25, .5, .25], [.5, .25, .25]) / 3
    assert pvl_loss(TEACHER, STUDENT, 3 * LN2, 3.0).item() == pytest.approx(expected, abs=1e-6)


def test_unimodal_loss_by_hand():
    # student image-image similarities [[1,1,0],[1,1,0],[0,0,1]], temperature 7, scale 7 ln 2
    expected = 2 * (kl([.5, .25, .25], [.4, .4, .2]) + kl([.25, .5, .25], [.4, .4, .2])) / 3
    assert ud_loss(TEACHER, STUDENT, 7 * LN2, 7.0).item() == pytest.approx(expected, abs=1e-6)


def test_total_is_the_weighted_sum_and_zero_weights_are_skipped():
    weights = DistillationWeights()
    parts = dime_fm_loss(TEACHER, STUDENT, TEACHER, LN2, weights)
    assert set(parts) == {"loss", "vl", "pvl"}
    assert parts["loss"].item() == pytest.approx(0.7 * vl_loss(TEACHER, STUDENT, TEACHER, LN2, 1.0).item()
                                                 + 0.3 * pvl_loss(TEACHER, STUDENT, LN2, 3.0).item(), abs=1e-6)
    assert dime_fm_loss(TEACHER, TEACHER, TEACHER, LN2)["loss"].item() == pytest.approx(0.0, abs=1e-6)
    assert "ud" in dime_fm_loss(TEACHER, STUDENT, TEACHER, LN2, DistillationWeights(ud=1.0))


def test_bad_weights_and_shapes_are_refused():
    with pytest.raises(ConfigError):
        DistillationWeights(vl=0, pvl=0, ud=0)
    with pytest.raises(ConfigError):
        DistillationWeights(pvl_temperature=0)
    with pytest.raises(ConfigError, match="joint space"):
        dime_fm_loss(TEACHER, torch.ones(3, 4), TEACHER, 1.0)


def test_gather_is_the_identity_on_one_process():
    x = torch.randn(4, 3, requires_grad=True)
    assert gather_with_local_grad(x) is x


def global_batch():
    """The fixed problem of the 2-process test: a linear student on 8 images, 6 texts (shared by both files)."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(8, 5, generator=generator)
    teacher_images = torch.nn.functional.normalize(torch.randn(8, 4, generator=generator), dim=-1)
    teacher_texts = torch.nn.functional.normalize(torch.randn(6, 4, generator=generator), dim=-1)
    weight = torch.randn(5, 4, generator=generator)
    return inputs, teacher_images, teacher_texts, weight


def single_process_reference():
    inputs, teacher_images, teacher_texts, weight = global_batch()
    weight = weight.clone().requires_grad_(True)
    loss = dime_fm_loss(teacher_images, inputs @ weight, teacher_texts, 10.0, DistillationWeights(ud=0.5))["loss"]
    loss.backward()
    return loss.item(), weight.grad


@pytest.mark.slow
def test_two_processes_give_the_loss_and_gradient_of_one_process_on_the_doubled_batch(tmp_path):
    from tests.launch import accelerate_launch

    script = Path(__file__).with_name("_gather_script.py")
    result = accelerate_launch(str(script), str(tmp_path / "result.json"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"result.json.{rank}").read_text()) for rank in (0, 1)]
    loss, grad = single_process_reference()
    for rank in ranks:
        assert rank["world_size"] == 2
        assert rank["loss"] == pytest.approx(loss, rel=1e-5)
        assert torch.allclose(torch.tensor(rank["grad"]), grad, atol=1e-5)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
