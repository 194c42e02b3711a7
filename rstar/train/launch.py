"""Training on several processes.

`train()` runs a recipe (policy SFT or PPM) in this process, or, with
`launch.processes` > 1 or an accelerate config, as a child command under a
launcher: `accelerate launch` where there are GPUs (DDP by default; FSDP or
DeepSpeed ZeRO-3 from the config file the user passes), torchrun on CPUs (DDP
over gloo: accelerate's own CPU launcher needs MPI). The recipes run the same
in both: every process trains on its share of each batch, the main process
alone writes the adapter, the merged weights and metrics.json, and a rerun
resumes from the last checkpoint.

    python -m rstar.train.launch policy|ppm DATA OUT SETTINGS_JSON   (what the launcher runs)
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rstar.metrics import TrainMetrics


@dataclass(frozen=True)
class LaunchConfig:
    processes: int = field(
        default=1,
        metadata={
            "help": "training processes, one per GPU (or CPU share); > 1 runs the recipe under accelerate "
            "launch (torchrun on CPUs), DDP unless accelerate_config says otherwise; batch_size is split "
            "among them"
        },
    )
    accelerate_config: str = field(
        default="",
        metadata={
            "help": "an accelerate config file (FSDP, DeepSpeed ZeRO-3) for a model too large for one GPU; "
            "refused without GPUs, where accelerate ignores it and every process would train alone"
        },
    )

    def __post_init__(self) -> None:
        if self.processes < 1:
            raise ValueError(f"launch.processes must be >= 1, not {self.processes}")
        if self.accelerate_config and not Path(self.accelerate_config).is_file():
            raise ValueError(f"launch.accelerate_config {self.accelerate_config!r} is not a file")
        if self.accelerate_config and not _has_gpu():
            # accelerate then runs every process alone (no process group, no
            # sharding): each would train the whole model and write the same
            # folder. Refused with the config, before `rstar evolve` searches.
            raise ValueError(
                "launch.accelerate_config (FSDP, DeepSpeed ZeRO-3) needs GPUs: without them accelerate ignores it; "
                "on CPUs use launch.processes alone (DDP over gloo)"
            )


class LaunchError(RuntimeError):
    """A training run under the launcher failed; its checkpoints are kept."""


def _recipes():
    from rstar.train.policy import PolicyTrainConfig, train_policy
    from rstar.train.ppm import PPMTrainConfig, train_ppm

    return {"policy": (train_policy, PolicyTrainConfig), "ppm": (train_ppm, PPMTrainConfig)}


def train(what: str, data: Path, out: Path, settings, launch: LaunchConfig) -> TrainMetrics:
    """Train `what` ("policy" or "ppm"); returns its metrics."""
    recipe, _ = _recipes()[what]
    if launch.processes == 1 and not launch.accelerate_config:
        return recipe(data, out, settings)
    if settings.batch_size % launch.processes:
        raise ValueError(f"batch_size {settings.batch_size} does not split among {launch.processes} processes")
    command = _launcher(launch) + ["-m", "rstar.train.launch", what, str(data), str(out)]
    command.append(json.dumps(dataclasses.asdict(settings)))
    result = subprocess.run(command)
    if result.returncode != 0:
        raise LaunchError(
            f"{what} training on {launch.processes} processes failed (exit {result.returncode}); "
            "run the same command again to resume from its last checkpoint"
        )
    return TrainMetrics.from_dict(json.loads((Path(out) / "metrics.json").read_text()))


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _launcher(launch: LaunchConfig) -> list[str]:
    port = _free_port()
    if launch.accelerate_config or _has_gpu():
        command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(launch.processes)]
        command += ["--main_process_port", str(port)]
        if launch.accelerate_config:
            command += ["--config_file", launch.accelerate_config]
        elif launch.processes > 1:
            command.append("--multi_gpu")
        return command
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(launch.processes)] + [
        "--master_port",
        str(port),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str]) -> None:
    what, data, out, raw = argv
    recipe, config_class = _recipes()[what]
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(raw).items()}
    recipe(Path(data), Path(out), config_class(**values))
    import torch.distributed as dist

    if dist.is_initialized():  # every process ends together, once the main one has written
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
