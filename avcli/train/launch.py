"""Where this process sits in a job, from the launcher's environment variables (no torch import: the CLI asks
too, to print the summary once and to prefix errors with the rank).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; tasks started by `srun` itself have SLURM_PROCID,
SLURM_STEP_NUM_TASKS (SLURM_NTASKS) and SLURM_LOCALID. torchrun's variables win (torchrun inside a Slurm job).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class LaunchEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    source: str = "single process"


def launch_env() -> LaunchEnv:
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return LaunchEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)), "torchrun")
    # srun sets SLURM_STEP_NUM_TASKS for the tasks of a job step; the batch script itself is no task of one
    tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    if "SLURM_PROCID" in env and tasks:
        return LaunchEnv(int(env["SLURM_PROCID"]), int(tasks), int(env.get("SLURM_LOCALID", 0)), "Slurm")
    return LaunchEnv()
