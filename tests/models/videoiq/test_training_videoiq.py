"""VideoIQ training: the stages on the run layer (a short run of the demo recipe), resume, `effhub eval`, the card,
the policy losses, the any-precision stage's gradient accumulation, bad recipes, and the mp4 pipeline against the
local hub in a new process."""

import json
import os
import subprocess
import sys

import pytest
import torch

from effhub.errors import ConfigError
from effhub.models.videoiq import VideoIQForVideoClassification

SHORT = ["full_precision.steps=3", "policy_backbone.steps=2", "any_precision.steps=2", "policy.steps=2",
         "data.train_clips=16", "data.test_clips=8", "data.num_frames=4", "data.image_size=16",
         "dataset_options={min_radius: 3, max_radius: 5}", "model.base_width=4", "full_precision.batch_size=4", "policy_backbone.batch_size=4",
         "any_precision.batch_size=4", "policy.batch_size=4", "eval_batch_size=8"]


def _argv(output, sets=SHORT):
    argv = ["train", "videoiq", "--recipe", "demo", "--output-dir", str(output), "--no-progress"]
    for value in sets:
        argv += ["--set", value]
    return argv


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    from effhub.cli import main

    output = tmp_path_factory.mktemp("videoiq") / "run"
    assert main(_argv(output)) == 0
    return output


def test_short_run_trains_every_stage_and_writes_a_measured_card(short_run):
    stages = json.loads((short_run / "checkpoints" / "stages.json").read_text())["stages"]
    assert list(stages) == ["full-precision", "policy-backbone", "any-precision", "policy"]
    model = VideoIQForVideoClassification.from_pretrained(short_run)
    assert not any("teacher" in key for key in model.state_dict())
    # the demo's 8-bit policy: its input ranges were tracked while it trained and came back with the checkpoint
    assert model.config.policy_bit_width == 8
    ranges = {key: value for key, value in model.state_dict().items() if key.endswith("input_quantizer.absmax")}
    assert ranges and all(value.item() > 0 for value in ranges.values())
    results = json.loads((short_run / "eval_results.json").read_text())
    evaluations = results["extra"]["evaluations"]
    assert set(evaluations) == {"policy", "uniform 8-bit", "uniform 4-bit", "uniform 2-bit", "full precision",
                                "random policy"}
    assert evaluations["uniform 2-bit"]["bitops"] < evaluations["uniform 4-bit"]["bitops"] < \
        evaluations["full precision"]["bitops"]
    card = (short_run / "README.md").read_text()
    policy_top1 = results["results"][0]["metric_value"]
    assert f"{policy_top1:.4g}"[:4] in card and "Share of each action" in card
    # the inference rule for all-skipped clips and the policy loss's temperature are stated (the demo's: on, 1)
    assert "keeps its least-skipped frame" in card
    assert "| policy cross-entropy temperature | 1 (the paper's loss) |" in card
    assert (short_run / "images" / "choices.png").is_file()
    assert (short_run / "preprocessor_config.json").is_file()


def test_frame_kind_check_reads_each_kind_alone(short_run):
    from effhub.models.videoiq.recipe_videoiq import VideoIQRecipe
    from effhub.models.videoiq.training_videoiq import (
        VideoIQCollator,
        frame_kind_accuracy,
        load_datasets,
        make_processor,
    )
    from effhub.training import RunLayout

    recipe = RunLayout(short_run).read_recipe(VideoIQRecipe)
    assert recipe.data.clips_version == 3
    model = VideoIQForVideoClassification.from_pretrained(short_run)
    _, test_set, _ = load_datasets(recipe)
    table = frame_kind_accuracy(model, test_set, VideoIQCollator(make_processor(recipe)), 4)
    kinds = torch.stack([torch.as_tensor(sample["frame_kind"]) for sample in test_set])
    for kind, row in table.items():
        assert set(row) == {"full precision", "8-bit", "4-bit", "2-bit", "clips"}
        assert all(0.0 <= row[name] <= 1.0 for name in row if name != "clips")
    from effhub.data.video.clips import FRAME_KINDS

    for kind, row in table.items():
        assert row["clips"] == int((kinds == FRAME_KINDS.index(kind)).any(1).sum()) > 0


def test_eval_command_reproduces_the_run(short_run, capsys):
    from effhub.cli import main

    before = json.loads((short_run / "eval_results.json").read_text())["results"]
    assert main(["eval", str(short_run)]) == 0
    after = json.loads((short_run / "eval_results.json").read_text())["results"]
    assert [r["metric_value"] for r in before] == pytest.approx([r["metric_value"] for r in after], rel=1e-5)


def test_resume_skips_finished_stages_and_trains_the_missing_one(short_run, tmp_path):
    import shutil

    from effhub.cli import main

    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    finished = VideoIQForVideoClassification.from_pretrained(run).state_dict()
    record = json.loads((run / "checkpoints" / "stages.json").read_text())
    del record["stages"]["policy"]  # as if killed during the policy stage, before its first checkpoint
    (run / "checkpoints" / "stages.json").write_text(json.dumps(record))
    shutil.rmtree(run / "checkpoints" / "policy")
    (run / "model.safetensors").unlink()
    assert main(_argv(run) + ["--resume"]) == 0
    resumed = VideoIQForVideoClassification.from_pretrained(run).state_dict()
    differing = [key for key in finished if not torch.allclose(finished[key], resumed[key], atol=1e-6)]
    assert not differing, f"the resumed run differs in {differing[:5]}"


def test_policy_losses_follow_the_paper():
    from effhub.models.videoiq.modeling_videoiq import VideoIQOutput
    from effhub.models.videoiq.recipe_videoiq import VideoIQRecipe
    from effhub.models.videoiq.training_videoiq import (
        efficiency_codebook,
        policy_losses,
    )
    from tests.models.videoiq.test_modeling_videoiq import tiny_config

    config = tiny_config(skip_list=[1])
    assert efficiency_codebook(config).tolist() == [1.0, 0.25, 0.0625, 0.0]
    actions = torch.nn.functional.one_hot(torch.tensor([[0, 1, 2, 3]]), 4).float()
    logprobs = torch.log(torch.full((1, 4, 4), 0.25))
    output = VideoIQOutput(logits=torch.zeros(1, 5), policy=actions, policy_logprobs=logprobs)
    terms = policy_losses(output, torch.tensor([0]), torch.zeros(1, 5), config, VideoIQRecipe())
    assert terms["balance"].item() == pytest.approx(0.0)  # every action used 1/A of the time
    assert terms["efficiency"].item() == pytest.approx(0.16 * (1 + 0.25 + 0.0625) / 4)
    assert terms["entropy"].item() == pytest.approx(0.1 * torch.log(torch.tensor(4.0)).item())
    # the measured codebook: BitOPs per frame over the top bit-width's (the full-precision stem included), skip 0
    config = tiny_config(skip_list=[1], bit_width_family=[8, 4, 2])
    model = VideoIQForVideoClassification(config)
    measured = efficiency_codebook(config, "bitops", model.frame_costs())
    bits = model.frame_costs()["frame_bitops"]
    assert measured.tolist() == pytest.approx([1.0, bits[1] / bits[0], bits[2] / bits[0], 0.0])
    assert measured[2] > 0.0625  # the full-precision stem makes a 2-bit frame dearer than the paper's codebook says
    terms = policy_losses(output, torch.tensor([0]), torch.zeros(1, 5), config, VideoIQRecipe(), measured)
    assert terms["efficiency"].item() == pytest.approx(0.16 * float(measured.sum()) / 4)
    with pytest.raises(ConfigError, match="codebook 'flops' is unknown"):
        efficiency_codebook(config, "flops")


def test_policy_cross_entropy_temperature_softens_a_certain_network():
    """`policy.ce_temperature` divides the clip logits of the policy's cross-entropy: on confident logits the plain
    cross-entropy hardly differs between a clip that keeps its evidence and one that does not, the softened one does."""
    from effhub.models.videoiq.modeling_videoiq import VideoIQOutput
    from effhub.models.videoiq.recipe_videoiq import VideoIQRecipe
    from effhub.models.videoiq.training_videoiq import policy_losses
    from tests.models.videoiq.test_modeling_videoiq import tiny_config

    config = tiny_config(skip_list=[1])
    actions = torch.nn.functional.one_hot(torch.tensor([[0, 3]]), 4).float()
    logprobs = torch.log(torch.full((1, 2, 4), 0.25))
    recipe = VideoIQRecipe()
    ce = {}
    for temperature in (1.0, 8.0):
        recipe.policy.ce_temperature = temperature
        for margin in (20.0, 10.0):  # every evidence frame kept, half of them skipped
            logits = torch.tensor([[margin, 0.0, 0.0, 0.0, 0.0]])
            output = VideoIQOutput(logits=logits, policy=actions, policy_logprobs=logprobs)
            ce[temperature, margin] = policy_losses(output, torch.tensor([0]), logits, config, recipe)["ce"].item()
            assert ce[temperature, margin] == pytest.approx(
                torch.nn.functional.cross_entropy(logits / temperature, torch.tensor([0])).item(), rel=1e-6)
    assert ce[1.0, 10.0] - ce[1.0, 20.0] < 1e-3  # certain logits: losing half the evidence costs nothing
    assert ce[8.0, 10.0] - ce[8.0, 20.0] > 0.1  # softened: it does


def test_any_precision_update_accumulates_every_bit_width():
    """The any-precision loss backpropagates the lower bit-widths itself and returns the last: the step's gradient
    is the sum over bit-widths (each bit-width's BatchNorm gets a gradient)."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from effhub.models.videoiq.recipe_videoiq import VideoIQRecipe
    from effhub.models.videoiq.training_videoiq import build_phases
    from effhub.training import RunOptions
    from tests.models.videoiq.test_modeling_videoiq import clips, tiny_config

    model = VideoIQForVideoClassification(tiny_config())
    teacher = VideoIQForVideoClassification(tiny_config()).eval()
    phases = build_phases(VideoIQRecipe(), model, {"teacher": teacher}, RunOptions(output_dir="unused"), 16)
    loss_fn = phases["any-precision"][0].updates[0].loss
    context = SimpleNamespace(accelerator=Accelerator(cpu=True))
    output = loss_fn(model, {"pixel_values": clips(2), "labels": torch.tensor([0, 1])}, context)
    output["loss"].backward()
    norms = model.backbone.blocks[0].bn1.norms
    assert all(norm.weight.grad is not None and norm.weight.grad.abs().sum() > 0 for norm in norms)
    assert set(output) >= {"loss_32bit", "loss_4bit", "loss_2bit"}


def test_distillation_on_the_executed_frames():
    """`policy.kd_frames: executed` distils the kept-frame logits (skip decisions held fixed) towards the
    full-precision network on the same kept frames (its per-frame features averaged over them); `all` distils the
    logits towards the teacher on every frame."""
    from types import SimpleNamespace

    from effhub.models.videoiq.recipe_videoiq import VideoIQRecipe
    from effhub.models.videoiq.training_videoiq import build_phases, distillation_loss
    from effhub.training import RunOptions
    from tests.models.videoiq.test_modeling_videoiq import clips, tiny_config

    config = tiny_config(skip_list=[1])
    model = VideoIQForVideoClassification(config).train()
    teacher = VideoIQForVideoClassification(config).eval()
    batch = {"pixel_values": clips(3), "labels": torch.tensor([0, 1, 2])}
    context = SimpleNamespace(state={"temperature": 5.0})
    kd = {}
    for frames in ("all", "executed"):
        recipe = VideoIQRecipe()
        recipe.policy.kd_frames = frames
        loss_fn = build_phases(recipe, model, {"teacher": teacher}, RunOptions(output_dir="unused"), 16)["policy"][0]
        torch.manual_seed(0)
        kd[frames] = loss_fn.updates[0].loss(model, batch, context)["kd"]
    torch.manual_seed(0)  # the same Gumbel draws and dropout as inside the loss
    output = model(pixel_values=batch["pixel_values"], temperature=5.0)
    executed = output.policy[..., :config.num_precisions].sum(-1).detach()
    assert 0 < executed.sum() < executed.numel()  # the draw skips some frames and keeps others
    with torch.no_grad():
        features = teacher.frame_features(batch["pixel_values"].flatten(0, 1), None).view(*executed.shape, -1)
        kept_mean = (features * executed[..., None]).sum(1) / executed.sum(1, keepdim=True)  # skipped frames out
        on_kept = teacher.classifier(kept_mean)
        on_all = teacher(pixel_values=batch["pixel_values"], precision="full").logits
    assert kd["executed"].item() == pytest.approx(distillation_loss(output.kept_frame_logits, on_kept).item(),
                                                  rel=1e-5)
    assert kd["all"].item() == pytest.approx(distillation_loss(output.logits, on_all).item(), rel=1e-5)
    assert (on_kept - on_all).abs().max() > 1e-3  # the skipped frames are left out of the teacher's target


@pytest.mark.parametrize("override, match", [
    ("any_precision.pact_lr=[0.1]", "one value per bit-width"),
    ("model.bit_width_family=[4, 2, 32]", "highest precision down"),
    ("policy.kd_frames=kept", "kd_frames is 'kept'"),
    ("policy.ce_temperature=0", "ce_temperature is 0"),
])
def test_bad_recipe(override, match, tmp_path):
    from effhub.models.videoiq.training_videoiq import train
    from effhub.recipes import load_recipe
    from effhub.training import RunOptions

    recipe = load_recipe("videoiq", "demo", [override, "data.train_clips=4", "data.test_clips=4"])
    with pytest.raises(ConfigError, match=match):
        train(recipe, RunOptions(output_dir=tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_recipes_are_listed():
    from effhub.recipes import list_recipes

    assert {"demo", "width32", "width16", "paper-32-4-2", "paper-8-4-2"} <= set(list_recipes("videoiq")["videoiq"])


def test_pipeline_reads_an_mp4_from_the_local_hub_in_a_new_process(short_run, tmp_path):
    """`pipeline("video-classification", model=<repo id>)("clip.mp4")` in a fresh interpreter, against the local
    hub, on an mp4 written with PyAV."""
    pytest.importorskip("av")
    from effhub.data.video.clips import generate_clips
    from effhub.data.video.decode import write_video_file
    from effhub.hub.publish import push_folder
    from effhub.hub.server import LocalHubServer

    clip = generate_clips(1, seed=3)["frames"][0]
    video = write_video_file(tmp_path / "clip.mp4", clip)
    script = ("import sys, effhub\nfrom transformers import pipeline\n"
              "result = pipeline('video-classification', model=sys.argv[1])(sys.argv[2], top_k=3)\n"
              "print(result[0]['label'], round(sum(r['score'] for r in result), 3))\n")
    with LocalHubServer(tmp_path / "hub") as hub:
        push_folder(short_run, "effhub/videoiq-test", endpoint=hub.url)
        environment = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"),
                       "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "0"}
        result = subprocess.run([sys.executable, "-c", script, "effhub/videoiq-test", str(video)], env=environment,
                                capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    label = result.stdout.strip().splitlines()[-1].rsplit(" ", 1)[0]
    model = VideoIQForVideoClassification.from_pretrained(short_run)
    assert label in model.config.id2label.values()


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_process_run(tmp_path):
    from tests.launch import accelerate_launch

    arguments = ["-m", "effhub.train"] + _argv(tmp_path / "run")[1:]
    result = accelerate_launch(*arguments)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert json.loads((tmp_path / "run" / "run_info.json").read_text())["world_size"] == 2
    VideoIQForVideoClassification.from_pretrained(tmp_path / "run")
