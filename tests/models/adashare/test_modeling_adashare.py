"""AdaShare model, config and image processor: the shared model checks, true block skipping, policy losses,
pipelines, and the bad-input errors."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, pipeline

from effhub.errors import ConfigError, TaskError
from effhub.models.adashare import (
    AdaShareConfig,
    AdaShareForSemanticSegmentation,
    AdaShareImageProcessorPil,
    AdaShareModel,
)
from effhub.multitask import task_loss
from tests.model_tester import EffhubModelTesterMixin

TASKS = {"segmentation": 5, "normals": 3, "depth": 1}


def tiny_config(**kwargs):
    values = dict(tasks=TASKS, base_width=4, head_type="light", head_hidden_size=8, policy_init="random")
    values.update(kwargs)
    return AdaShareConfig(**values)


def make_labels(batch_size, size=32, generator=None):
    return {
        "segmentation": torch.randint(0, 5, (batch_size, size, size), generator=generator),
        "normals": torch.nn.functional.normalize(torch.randn(batch_size, 3, size, size, generator=generator), dim=1),
        "depth": torch.rand(batch_size, 1, size, size, generator=generator) + 0.1,
    }


class _AdaShareChecks(EffhubModelTesterMixin):
    model_class = AdaShareModel
    auto_class = AutoModel
    output_key = ("logits",)

    def get_inputs(self, batch_size):
        generator = torch.Generator().manual_seed(batch_size)
        return {"pixel_values": torch.randn(batch_size, 3, 32, 32, generator=generator)}

    def get_loss(self, outputs, inputs):
        # labels stay out of the inputs so that the batch check can slice them; same losses as the model's
        labels = make_labels(inputs["pixel_values"].shape[0], generator=torch.Generator().manual_seed(1))
        types = {"segmentation": "segmentation", "normals": "normals", "depth": "depth"}
        return sum(task_loss(outputs.logits[t], labels[t], types[t]) for t in outputs.logits)


class TestAdaShareModel(_AdaShareChecks):
    model_class = AdaShareModel
    auto_class = AutoModel
    output_key = ("logits",)

    def get_config(self):
        # a fixed policy with skips, so the checks cover the true-skipping path and the policy in the config
        return tiny_config(policy={"segmentation": [1, 0, 1, 1, 0, 1, 1, 1], "normals": [1] * 8,
                                   "depth": [0, 1, 0, 1, 1, 0, 1, 0]})


class TestAdaShareModelASPP(_AdaShareChecks):
    """The paper's ASPP heads, in shared (warm-up) mode."""

    training_steps = 4

    def get_config(self):
        return tiny_config(head_type="aspp", aspp_rates=[1, 2], head_dropout=0.0, policy_init="equal")

    def get_inputs(self, batch_size):
        return {**super().get_inputs(batch_size), "policy_mode": "shared"}


def count_calls(model):
    """Forward-call counters on every block and downsample projection."""
    counts = {}
    handles = []
    for s, stage in enumerate(model.backbone.stages):
        modules = {f"block{s}.{b}": blk for b, blk in enumerate(stage.blocks)}
        if stage.downsample is not None:
            modules[f"downsample{s}"] = stage.downsample
        for name, module in modules.items():
            counts[name] = 0

            def hook(module, inputs, output, name=name):
                counts[name] += 1

            handles.append(module.register_forward_hook(hook))
    return counts, handles


def test_skipped_blocks_never_run_and_downsample_still_does():
    model = AdaShareModel(tiny_config()).eval()
    # block 2 is the first block of stage 1 (ResNet-18: 2 blocks per stage); stage 1 has a stride-2 projection
    policy = {"segmentation": [1, 1, 0, 1, 1, 1, 0, 1], "normals": [1] * 8, "depth": [0] * 8}
    model.set_policy(policy)
    counts, handles = count_calls(model)
    with torch.no_grad():
        output = model(torch.randn(2, 3, 32, 32), task="segmentation")
    assert list(output.logits) == ["segmentation"]
    assert counts["block1.0"] == 0 and counts["block3.0"] == 0, counts
    assert counts["downsample1"] == 1, "a skipped first block of a stage must still project its shortcut"
    assert all(counts[f"block{s}.{b}"] == 1 for s, b in [(0, 0), (0, 1), (1, 1), (2, 0), (2, 1), (3, 1)])
    for value in counts.values():
        assert value <= 1
    # depth skips everything: only projections run, and the output keeps the backbone's shape
    for key in counts:
        counts[key] = 0
    with torch.no_grad():
        depth = model(torch.randn(2, 3, 32, 32), task="depth").logits["depth"]
    assert not any(v for k, v in counts.items() if k.startswith("block"))
    assert all(counts[f"downsample{s}"] == 1 for s in (1, 2, 3))
    assert depth.shape == (2, 1, 5, 5)  # 32 -> 16 (stem conv) -> 9 (ceil-mode pool) -> 5
    for handle in handles:
        handle.remove()


def test_task_none_runs_every_task_and_shares_identical_plans():
    model = AdaShareModel(tiny_config()).eval()
    model.set_policy({"segmentation": [1] * 8, "normals": [1] * 8, "depth": [1, 0] * 4})
    counts, _ = count_calls(model)
    with torch.no_grad():
        output = model(torch.randn(1, 3, 32, 32))
    assert set(output.logits) == set(TASKS)
    # segmentation and normals share one pass; depth runs its own 4 blocks
    assert counts["block0.0"] == 3 - 1 and counts["block0.1"] == 1


def test_gumbel_mode_mixes_every_block_with_curriculum():
    model = AdaShareModel(tiny_config()).train()
    counts, _ = count_calls(model)
    output = model(torch.randn(2, 3, 32, 32), policy_mode="gumbel", temperature=5.0, num_train_blocks=3,
                   labels=make_labels(2))
    # soft policy: every block runs once per task
    assert all(counts[f"block{s}.{b}"] == 3 for s in range(4) for b in range(2))
    for policy in output.policy.values():
        assert torch.equal(policy[:5], torch.tensor([[1.0, 0.0]] * 5))
        assert torch.allclose(policy[5:].sum(-1), torch.ones(3))
    output.loss.backward()
    grad = model.policy["depth"].grad
    assert grad[:5].abs().sum() == 0 and grad[5:].abs().sum() > 0


def test_argmax_warns_once_before_retraining():
    model = AdaShareModel(tiny_config()).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(torch.randn(1, 3, 32, 32))
        model(torch.randn(1, 3, 32, 32))
    assert sum("argmax" in str(w.message) for w in caught) == 1
    model.set_policy(model.argmax_policy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(torch.randn(1, 3, 32, 32))


def test_sparsity_and_sharing_losses():
    config = tiny_config(policy_init="equal")
    model = AdaShareModel(config)
    # equal logits: -log(1/2) per block, averaged over blocks, summed over 3 tasks
    assert torch.isclose(model.sparsity_loss(), torch.tensor(3 * np.log(2.0), dtype=torch.float32))
    assert model.sharing_loss().item() == 0.0
    # a per-task factor on the sparsity term: segmentation's term at half weight
    halved = AdaShareModel(tiny_config(policy_init="equal", task_sparsity_weights={"segmentation": 0.5}))
    assert halved.config.task_sparsity_weights == {"segmentation": 0.5, "depth": 1.0, "normals": 1.0}
    assert torch.isclose(halved.sparsity_loss(), torch.tensor(2.5 * np.log(2.0), dtype=torch.float32))
    with pytest.raises(TaskError, match="task_sparsity_weights"):
        tiny_config(task_sparsity_weights={"edges": 0.5})
    with torch.no_grad():
        model.policy["depth"][:, 0] += 1.0
    # depth differs from the two others by 1 at every block: 2 pairs * sum_l (l+1)/L
    expected_code = 2 * sum((l + 1) / 8 for l in range(8))
    assert torch.isclose(model.sharing_loss(), torch.tensor(expected_code))
    paper = AdaShareModel(tiny_config(policy_init="equal", sharing_weight_schedule="paper"))
    assert torch.allclose(paper.sharing_weights(), torch.tensor([(8 - l) / 8 for l in range(8)]))
    assert torch.allclose(model.sharing_weights(), torch.tensor([(l + 1) / 8 for l in range(8)]))


def test_label_mask_removes_unlabeled_images():
    torch.manual_seed(0)
    prediction = torch.randn(2, 5, 4, 4)
    labels = torch.randint(0, 5, (2, 32, 32))
    only_first = task_loss(prediction, labels, "segmentation", torch.tensor([True, False]))
    alone = task_loss(prediction[:1], labels[:1], "segmentation")
    assert torch.isclose(only_first, alone)
    nothing = task_loss(prediction, labels, "segmentation", torch.tensor([False, False]))
    assert nothing.item() == 0.0
    model = AdaShareModel(tiny_config())
    x = torch.randn(2, 3, 32, 32)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    output = model(x, labels=make_labels(2), label_mask=mask, policy_mode="shared")
    assert output.task_losses["depth"].item() == 0.0 and output.task_losses["normals"].item() > 0


def test_sample_policy_is_seeded_and_follows_logits():
    model = AdaShareModel(tiny_config())
    with torch.no_grad():
        model.policy["segmentation"].copy_(torch.tensor([[10.0, -10.0]] * 4 + [[-10.0, 10.0]] * 4))
    first = model.sample_policy(torch.Generator().manual_seed(3))
    assert first == model.sample_policy(torch.Generator().manual_seed(3))
    assert first["segmentation"] == [1] * 4 + [0] * 4


def test_macs_follow_the_policy():
    model = AdaShareModel(tiny_config()).eval()
    model.set_policy({"segmentation": [1] * 8, "normals": [1, 1, 1, 1, 0, 0, 0, 0], "depth": [0] * 8})
    full = model.multiply_adds((32, 32), "segmentation")["backbone"]
    half = model.multiply_adds((32, 32), "normals")["backbone"]
    none = model.multiply_adds((32, 32), "depth")["backbone"]
    assert none < half < full


@pytest.mark.parametrize("depth,blocks", [(18, 8), (34, 16), (50, 16), (101, 33)])
def test_backbone_depths_on_meta(depth, blocks):
    config = AdaShareConfig(backbone_depth=depth)
    with torch.device("meta"):
        model = AdaShareModel(config)
        output = model(torch.empty(1, 3, 64, 64), policy_mode="shared")
    assert config.num_blocks == blocks and model.policy["depth"].shape == (blocks, 2)
    assert output.logits["segmentation"].shape == (1, 40, 9, 9)  # output stride 8 (ceil-mode pool: 64 -> 9)
    channels = 2048 if depth >= 50 else 512
    assert model.backbone.out_channels == channels


def test_config_round_trip_keeps_task_order(tmp_path):
    config = tiny_config(tasks={"segmentation": 5, "depth": 1, "normals": 3})
    config.save_pretrained(tmp_path)
    assert AdaShareConfig.from_pretrained(tmp_path).task_names == ["segmentation", "depth", "normals"]


@pytest.mark.parametrize(
    "policy,error,match",
    [
        ({"segmentation": [1] * 7, "normals": [1] * 8, "depth": [1] * 8}, ConfigError, "shape"),
        ({"segmentation": [[1, 0]] * 8, "normals": [1] * 8, "depth": [1] * 8}, ConfigError, "shape"),
        ({"segmentation": [1] * 7 + [2], "normals": [1] * 8, "depth": [1] * 8}, ConfigError, "0/1"),
        ({"segmentation": [0.5] * 8, "normals": [1] * 8, "depth": [1] * 8}, ConfigError, "0/1"),
        ({"segmentation": [1] * 8, "normals": [1] * 8}, TaskError, "missing"),
        ({"segmentation": [1] * 8, "normals": [1] * 8, "depth": [1] * 8, "edge": [1] * 8}, TaskError, "unknown"),
    ],
)
def test_bad_policy(policy, error, match):
    with pytest.raises(error, match=match) as caught:
        tiny_config(policy=policy)
    assert "Fix:" in str(caught.value)
    model = AdaShareModel(tiny_config())
    with pytest.raises(error, match=match):
        model.set_policy(policy)
    assert model.config.policy is None


def test_bad_inputs():
    model = AdaShareModel(tiny_config())
    with pytest.raises(TaskError, match="unknown task"):
        model(torch.randn(1, 3, 32, 32), task="keypoints")
    with pytest.raises(TaskError, match="unknown task"):
        model(torch.randn(1, 3, 32, 32), labels={"edges": torch.zeros(1, 1, 32, 32)}, policy_mode="shared")
    with pytest.raises(ConfigError, match="pixel_values"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ConfigError, match="policy_mode"):
        model(torch.randn(1, 3, 32, 32), policy_mode="random")
    with pytest.raises(ConfigError, match="label_mask"):
        model(torch.randn(1, 3, 32, 32), labels=make_labels(1), label_mask=torch.ones(1, 2, dtype=torch.bool),
              policy_mode="shared")
    with pytest.raises(ConfigError, match="backbone_depth"):
        AdaShareConfig(backbone_depth=20)
    with pytest.raises(TaskError, match="no known type"):
        AdaShareConfig(tasks={"albedo": 3})
    with pytest.raises(ConfigError, match="sharing_weight_schedule"):
        AdaShareConfig(sharing_weight_schedule="both")


def test_image_processor_save_load_and_bgr(tmp_path):
    image = Image.fromarray(np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3))
    processor = AdaShareImageProcessorPil(size={"height": 16, "width": 16})
    AdaShareModel(tiny_config()).config.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded) is AdaShareImageProcessorPil
    rgb = loaded(image, return_tensors="pt").pixel_values
    assert rgb.shape == (1, 3, 16, 16)
    authors = AdaShareImageProcessorPil.for_authors_checkpoint(size={"height": 20, "width": 30})
    bgr = authors(image, return_tensors="pt").pixel_values[0]
    raw = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()
    mean = torch.tensor(authors.image_mean).view(3, 1, 1)
    assert torch.allclose(bgr, raw.flip(0) - mean, atol=1e-3)
    authors.save_pretrained(tmp_path / "authors")
    assert AdaShareImageProcessorPil.from_pretrained(tmp_path / "authors").do_flip_channel_order


def test_pipelines(tmp_path):
    model = AdaShareModel(tiny_config()).eval()
    model.set_policy(model.argmax_policy())
    model.save_pretrained(tmp_path)
    AdaShareImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 40, 3), dtype=np.uint8))
    segmenter = pipeline("image-segmentation", model=str(tmp_path))
    assert type(segmenter.model) is AdaShareForSemanticSegmentation
    counts, _ = count_calls(segmenter.model)
    segments = segmenter(image)
    # only the segmentation task ran: its executed blocks once each, nothing for the other tasks
    plan = model.config.policy["segmentation"]
    executed = [counts[f"block{s}.{b}"] for s in range(4) for b in range(2)]
    assert executed == plan
    assert segments and all(s["mask"].size == (40, 24) for s in segments)
    assert {s["label"] for s in segments} <= set(model.config.id2label.values())
    depth = pipeline("depth-estimation", model=str(tmp_path))(image)
    assert depth["predicted_depth"].shape == (24, 40) and depth["depth"].size == (40, 24)


def _bn_model(task_specific_bn=True):
    config = AdaShareConfig(tasks={"segmentation": 3, "depth": 1}, base_width=4, head_type="light",
                            head_hidden_size=4, task_specific_bn=task_specific_bn)
    torch.manual_seed(0)
    model = AdaShareModel(config)
    model.set_policy({"segmentation": [1, 0, 1, 1, 0, 1, 1, 1], "depth": [1, 1, 1, 0, 1, 1, 0, 1]})
    return model


def test_task_specific_bn_statistics_save_load(tmp_path):
    model = _bn_model()
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))
    norm = model.backbone.stages[3].blocks[1].bn2
    # tasks took different paths: their statistics differ (the shared ones track both passes)
    assert not torch.allclose(norm.task_running_mean[0], norm.task_running_mean[1])
    assert int(norm.num_batches_tracked) == 2 and norm.task_num_batches_tracked.tolist() == [1, 1]
    model.eval()
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixel_values).logits
    model.save_pretrained(tmp_path)
    loaded = AdaShareModel.from_pretrained(tmp_path).eval()
    assert loaded.config.task_specific_bn is True
    assert torch.equal(loaded.backbone.stages[3].blocks[1].bn2.task_running_var, norm.task_running_var)
    with torch.no_grad():
        got = loaded(pixel_values).logits
    for task in expected:
        torch.testing.assert_close(got[task], expected[task])


def test_recalibration_changes_only_task_statistics():
    from effhub.models.adashare import recalibrate_task_batchnorm

    model = _bn_model(task_specific_bn=False)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))  # shared statistics only
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recalibrate_task_batchnorm(model, [torch.randn(4, 3, 32, 32) for _ in range(2)])
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".task_running_" in k or ".task_num_batches" in k for k in changed)
    assert model.config.task_specific_bn and not model.training
    assert all(p.grad is None for p in model.parameters())
