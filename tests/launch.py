"""Launching several CPU processes with accelerate, as the multi-process tests do (hf-stack.md §5 and §10)."""

import os
import socket
import subprocess
import sys


def free_port() -> int:
    """A TCP port the OS reports free (accelerate's debug launcher always uses 29500, which collides)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_launch(*arguments: str, num_processes: int = 2, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `accelerate launch --multi_gpu` with `num_processes` CPU ranks (`ACCELERATE_USE_CPU=true`: without it,
    `--cpu --num_processes 2` starts one process) on a free port; `arguments` follow the launcher's own flags."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
               str(num_processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), *arguments]
    environment = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout)
