"""Run under `accelerate launch` with 2 CPU processes: each rank holds half of the global batch of
`test_losses_dime_fm.global_batch`, gathers embeddings with `gather_with_local_grad`, and writes its loss and its
gradient after averaging over ranks (what DDP does) to `<path>.<rank>`."""

import json
import sys
from pathlib import Path

import torch.distributed as dist
from accelerate import Accelerator

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from effhub.models.dime_fm.losses_dime_fm import DistillationWeights, dime_fm_loss, gather_with_local_grad  # noqa: E402
from tests.models.dime_fm.test_losses_dime_fm import global_batch  # noqa: E402

accelerator = Accelerator(cpu=True)
rank, world = accelerator.process_index, accelerator.num_processes
inputs, teacher_images, teacher_texts, weight = global_batch()
weight = weight.clone().requires_grad_(True)
images = slice(rank * 4, rank * 4 + 4)
texts = slice(rank * 3, rank * 3 + 3)
student = inputs[images] @ weight
loss = dime_fm_loss(gather_with_local_grad(teacher_images[images]), gather_with_local_grad(student),
                    gather_with_local_grad(teacher_texts[texts]), 10.0, DistillationWeights(ud=0.5))["loss"]
loss.backward()
grad = weight.grad.clone()
dist.all_reduce(grad)
grad /= world
Path(f"{sys.argv[1]}.{rank}").write_text(json.dumps({"world_size": world, "loss": loss.item(),
                                                     "grad": grad.tolist()}))
accelerator.wait_for_everyone()
accelerator.end_training()
