"""DIME-FM student model: the shared model checks, Auto classes, the frozen text tower, mean pooling, a student built
from a teacher (identical text embeddings), export to a plain CLIPModel (identical embeddings), bad input."""

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForZeroShotImageClassification, CLIPConfig, CLIPModel

import effhub  # noqa: F401 - registers the Auto classes
from effhub.errors import ConfigError
from effhub.models.dime_fm import DimeFmConfig, DimeFmModel
from tests.model_tester import EffhubModelTesterMixin

VOCAB = 40


def tiny_config(**kwargs):
    values = {
        "text_config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                        "vocab_size": VOCAB, "max_position_embeddings": 8, "bos_token_id": VOCAB - 2,
                        "eos_token_id": VOCAB - 1, "pad_token_id": VOCAB - 1},
        "vision_config": {"hidden_size": 12, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2,
                          "image_size": 16, "patch_size": 8},
        "projection_dim": 10,
    }
    values.update(kwargs)
    return DimeFmConfig(**values)


def token_ids(batch_size, length=6):
    ids = torch.randint(0, VOCAB - 2, (batch_size, length))
    ids[:, 0], ids[:, -1] = VOCAB - 2, VOCAB - 1
    return ids


class TestDimeFmModel(EffhubModelTesterMixin):
    model_class = DimeFmModel
    auto_class = AutoModel
    output_key = ("image_embeds", "text_embeds")

    def get_config(self):
        return tiny_config(vision_pooling="mean")

    def get_inputs(self, batch_size):
        return {"pixel_values": torch.randn(batch_size, 3, 16, 16), "input_ids": token_ids(batch_size)}

    def get_loss(self, outputs, inputs):
        # pull each image towards its text: only the vision side is trainable
        return -(outputs.image_embeds * outputs.text_embeds.detach()).sum(-1).mean()


def test_registered_with_the_auto_classes(tmp_path):
    model = DimeFmModel(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is DimeFmConfig
    assert type(AutoModelForZeroShotImageClassification.from_pretrained(tmp_path)) is DimeFmModel


def test_text_tower_frozen_by_default_and_mean_pooling_query_held_at_zero():
    model = DimeFmModel(tiny_config(vision_pooling="mean"))
    assert model.text_parameters() and not any(p.requires_grad for p in model.text_parameters())
    query = model.mean_pooling_query()
    assert all(not p.requires_grad and not p.any() for p in query)
    assert not {id(p) for p in query} & {id(p) for p in model.vision_parameters()}
    unfrozen = DimeFmModel(tiny_config(freeze_text_tower=False))
    assert all(p.requires_grad for p in unfrozen.text_parameters())


def _teacher():
    torch.manual_seed(1)
    config = CLIPConfig(text_config=tiny_config().text_config.to_dict(),
                        vision_config={"hidden_size": 24, "intermediate_size": 48, "num_hidden_layers": 2,
                                       "num_attention_heads": 2, "image_size": 16, "patch_size": 8},
                        projection_dim=10, logit_scale_init_value=3.0)
    return CLIPModel(config).eval()


def test_student_from_teacher_shares_its_text_embeddings_and_logit_scale():
    teacher = _teacher()
    student = DimeFmModel.from_teacher(teacher, {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                                                 "num_attention_heads": 2, "image_size": 16, "patch_size": 8}).eval()
    ids = token_ids(3)
    expected = teacher.get_text_features(input_ids=ids).pooler_output
    expected = expected / expected.norm(dim=-1, keepdim=True)
    assert torch.allclose(student.text_embeddings(ids), expected, atol=1e-6)
    assert student.logit_scale.item() == pytest.approx(3.0)
    assert student.config.projection_dim == teacher.config.projection_dim
    assert student.num_vision_parameters() < sum(p.numel() for n, p in teacher.named_parameters()
                                                 if n.startswith(("vision_model.", "visual_projection.")))


def test_student_from_teacher_with_a_smaller_text_tower_to_distil():
    teacher = _teacher()
    student = DimeFmModel.from_teacher(
        teacher, {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                  "image_size": 16, "patch_size": 8},
        text_config={"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2})
    text, teacher_text = student.config.text_config, teacher.config.text_config
    assert student.config.text_tower == "distilled" and text.hidden_size == 8
    # the teacher's tokenizer serves the student: vocabulary, positions and special tokens are the teacher's
    for key in ("vocab_size", "max_position_embeddings", "eos_token_id", "pad_token_id"):
        assert getattr(text, key) == getattr(teacher_text, key)
    assert all(p.requires_grad for p in student.text_parameters())  # trained by the second stage, never frozen
    assert student.text_embeddings(token_ids(3)).shape == (3, teacher.config.projection_dim)
    with pytest.raises(ConfigError, match="text_tower"):
        tiny_config(text_tower="shared")


def test_projection_that_misses_the_teacher_joint_space_is_refused():
    with pytest.raises(ConfigError, match="joint space"):
        DimeFmModel.from_teacher(_teacher(), {"hidden_size": 8, "num_attention_heads": 2, "image_size": 16,
                                              "patch_size": 8}, projection_dim=12)
    with pytest.raises(ConfigError, match="vision_pooling"):
        tiny_config(vision_pooling="max")


def test_export_to_plain_clip_gives_identical_embeddings(tmp_path):
    from effhub.models.dime_fm.convert_dime_fm import export_clip

    torch.manual_seed(0)
    student = DimeFmModel(tiny_config(vision_pooling="mean")).eval()
    student.save_pretrained(tmp_path / "student")
    export_clip(tmp_path / "student", tmp_path / "clip")
    clip = CLIPModel.from_pretrained(tmp_path / "clip").eval()
    assert AutoConfig.from_pretrained(tmp_path / "clip").model_type == "clip"
    pixels, ids = torch.randn(2, 3, 16, 16), token_ids(2)
    with torch.no_grad():
        ours = student(pixel_values=pixels, input_ids=ids)
        theirs = clip(pixel_values=pixels, input_ids=ids)
    assert torch.allclose(ours.image_embeds, theirs.image_embeds, atol=1e-6)
    assert torch.allclose(ours.text_embeds, theirs.text_embeds, atol=1e-6)
    assert torch.allclose(ours.logits_per_image, theirs.logits_per_image, atol=1e-5)
