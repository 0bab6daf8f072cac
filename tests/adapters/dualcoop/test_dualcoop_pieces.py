"""DualCoOp's loss, partial labels, data readers and bad inputs (each refused with an effhub error)."""

import json
import pickle

import numpy as np
import pytest
import torch
from peft import PeftModel, get_peft_model
from transformers import CLIPConfig, CLIPModel

import effhub  # noqa: F401
from effhub import DualCoOpConfig
from effhub.adapters.dualcoop.loss import asymmetric_loss
from effhub.data.multilabel import load_coco2014, load_coco_zero_shot_split, load_voc2007
from effhub.data.multilabel.coco2014 import COCO_CATEGORY_IDS, COCO_UNSEEN_17
from effhub.data.multilabel.partial import (
    load_partial_label_mask,
    partial_label_mask,
    partial_targets,
    save_partial_label_mask,
)
from effhub.errors import ConfigError, DatasetError
from effhub.models.clip_teacher.weights import load_base_teacher

NAMES = ["red circle", "blue square", "green star"]


def test_asymmetric_loss_against_a_hand_computation():
    logits = torch.tensor([[[0.0, 1.0, -1.0], [1.0, 0.0, 2.0]]])       # [B=1, 2, C=3]
    labels = torch.tensor([[1, 0, -1]])
    # class 0 positive: p = softmax(0, 1)[1]; class 1 negative: p_neg = softmax(1, 0)[1] ... index 0 of (1, 0)
    p_pos = 1 / (1 + np.exp(-1.0))
    p_neg = min(1 / (1 + np.exp(-1.0)) + 0.05, 1.0)          # the negative's probability of absence, clipped
    expected = -(np.log(p_pos) * (1 - p_pos) ** 1 + np.log(p_neg) * (1 - p_neg) ** 2)
    loss = asymmetric_loss(logits, labels, gamma_neg=2, gamma_pos=1, clip=0.05, weight=1.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert asymmetric_loss(logits, labels, weight=0.5).item() == pytest.approx(expected / 2, rel=1e-6)
    # unknown labels contribute nothing, whatever their logits
    changed = logits.clone()
    changed[0, :, 2] = torch.tensor([5.0, -5.0])
    assert asymmetric_loss(changed, labels).item() == pytest.approx(loss.item())
    assert asymmetric_loss(logits, torch.full((1, 3), -1)).item() == 0.0


def test_partial_label_masks_are_seeded_saved_and_checked(tmp_path):
    mask = partial_label_mask(2000, 20, 0.1, seed=3)
    assert mask.mean() == pytest.approx(0.1, abs=0.01)
    assert np.array_equal(mask, partial_label_mask(2000, 20, 0.1, seed=3))
    assert not np.array_equal(mask, partial_label_mask(2000, 20, 0.1, seed=4))
    assert partial_label_mask(5, 4, 1.0, seed=0).all()
    path = save_partial_label_mask(tmp_path / "partial_label_0.10.npz", mask, 0.1, 3)
    loaded, ratio = load_partial_label_mask(path, (2000, 20))
    assert np.array_equal(loaded, mask) and ratio == 0.1
    targets = np.ones((2000, 20), dtype=np.int64)
    assert set(np.unique(partial_targets(targets, mask))) == {-1, 1}
    with pytest.raises(DatasetError, match="shape"):
        load_partial_label_mask(path, (10, 20))
    with pytest.raises(ConfigError, match="label ratio"):
        partial_label_mask(5, 4, 0.0)


def _teacher():
    return load_base_teacher()[0]


def test_bad_class_lists_are_refused():
    with pytest.raises(ConfigError, match="empty"):
        DualCoOpConfig(class_names=[])
    with pytest.raises(ConfigError, match="duplicate"):
        DualCoOpConfig(class_names=["red circle", "Red  Circle"])
    with pytest.raises(ConfigError, match="list of class names"):
        DualCoOpConfig(class_names="red circle")
    model = get_peft_model(_teacher(), DualCoOpConfig(class_names=NAMES, n_ctx=2))
    with pytest.raises(ConfigError, match="duplicate"):
        model(pixel_values=torch.zeros(1, 3, 64, 64), class_names=["a", "a"])


def test_labels_with_another_class_count_are_refused():
    model = get_peft_model(_teacher(), DualCoOpConfig(class_names=NAMES, n_ctx=2))
    with pytest.raises(ConfigError, match="4 classes but the adapter scores 3"):
        model(pixel_values=torch.zeros(2, 3, 64, 64), labels=torch.zeros(2, 4))
    with pytest.raises(ConfigError, match="1, 0 and -1"):
        model(pixel_values=torch.zeros(2, 3, 64, 64), labels=torch.full((2, 3), 2))
    assert model(pixel_values=torch.zeros(2, 3, 64, 64), labels=torch.zeros(2, 3)).loss.ndim == 0


def test_adapter_on_a_clip_of_another_width_is_refused(tmp_path):
    get_peft_model(_teacher(), DualCoOpConfig(class_names=NAMES, n_ctx=2)).save_pretrained(tmp_path / "adapter")
    config = CLIPConfig(text_config={"vocab_size": 736, "hidden_size": 64, "intermediate_size": 128,
                                     "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 40,
                                     "bos_token_id": 734, "eos_token_id": 735, "pad_token_id": 735},
                        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "image_size": 64, "patch_size": 8},
                        projection_dim=32)
    with pytest.raises(ConfigError, match="text width 96.*64"):
        PeftModel.from_pretrained(CLIPModel(config), tmp_path / "adapter")


def test_prompts_longer_than_the_trained_positions_are_refused():
    with pytest.raises(ConfigError, match="40 trained positions"):
        get_peft_model(_teacher(), DualCoOpConfig(class_names=NAMES, n_ctx=37))
    with pytest.raises(ConfigError, match="contexts"):
        get_peft_model(_teacher(), DualCoOpConfig(class_names=NAMES, n_ctx=2, ctx_init_pos="a photo of a"))
    with pytest.raises(ConfigError, match="CLIPModel"):
        get_peft_model(torch.nn.Sequential(torch.nn.Embedding(3, 2)), DualCoOpConfig(class_names=NAMES))


# ---------------------------------------------------------------------------------------------- readers
def _jpeg(path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (120, 30, 200)).save(path)


def _voc_object(name, difficult):
    return (f"<object><name>{name}</name><pose>Left</pose><truncated>1</truncated><difficult>{difficult}</difficult>"
            "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>")


def test_voc2007_reader_skips_difficult_objects(tmp_path):
    root = tmp_path / "VOC2007"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for split in ("trainval", "test"):
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("000001\n000002\n")
    annotations = {"000001": _voc_object("dog", 0) + _voc_object("person", 1),
                   "000002": _voc_object("car", 0) + _voc_object("Bus", 0)}
    for image_id, objects in annotations.items():
        _jpeg(root / "JPEGImages" / f"{image_id}.jpg")
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename>{objects}</annotation>")
    data = load_voc2007(root, "trainval")
    names = data.features["labels"].feature.names
    assert [[names[i] for i in labels] for labels in data["labels"]] == [["dog"], ["bus", "car"]]
    (root / "Annotations" / "000002.xml").write_text("<annotation><object><name>car</name></object></annotation>")
    with pytest.raises(DatasetError, match="difficult"):
        load_voc2007(root, "test")
    with pytest.raises(DatasetError, match="split"):
        load_voc2007(root, "train")


def test_coco_reader_counts_crowds_and_drops_unannotated_images(tmp_path):
    categories = [{"id": i, "name": f"c{i}"} for i in COCO_CATEGORY_IDS]
    instances = {"images": [{"id": 7, "file_name": "a.jpg"}, {"id": 9, "file_name": "b.jpg"},
                            {"id": 11, "file_name": "c.jpg"}],
                 "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "area": 500, "iscrowd": 0},
                                 {"id": 2, "image_id": 7, "category_id": 90, "area": 5000, "iscrowd": 0},
                                 {"id": 3, "image_id": 9, "category_id": 18, "area": 20000, "iscrowd": 1}],
                 "categories": categories}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train2014.json").write_text(json.dumps(instances))
    data = load_coco2014(tmp_path, "train2014")
    assert data["id"] == ["7", "9"] and data["labels"] == [[0, 79], [16]]
    seen = [i for i in range(80) if i not in COCO_UNSEEN_17][:48]
    split = dict(instances, categories=[categories[i] for i in seen],
                 annotations=[a for a in instances["annotations"] if a["category_id"] != 18])
    (tmp_path / "annotations" / "instances_train2014_seen_48_17.json").write_text(json.dumps(split))
    (tmp_path / "annotations" / "cls_ids.pickle").write_bytes(pickle.dumps({"train": set(seen),
                                                                             "test": set(COCO_UNSEEN_17)}))
    zero_shot, classes = load_coco_zero_shot_split(tmp_path, "seen")
    assert classes == seen and zero_shot["labels"] == [[0, 79]]
    with pytest.raises(DatasetError, match="instances"):
        load_coco2014(tmp_path, "val2014")
