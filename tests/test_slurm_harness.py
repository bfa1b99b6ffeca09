"""The SLURM test harness itself: a real job runs, and --test-only sees two nodes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from slurm_harness import SlurmCluster, skip_or_fail, slurm_cluster  # noqa: F401

pytestmark = pytest.mark.slow  # runs external services (a real slurmctld, 2 slurmd's, munged)

HELLO = """\
#!/bin/bash
#SBATCH --job-name=harness-hello
#SBATCH --gres=gpu:2
#SBATCH --exclusive
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=00:05:00
#SBATCH --partition=gpu
#SBATCH --output={out}
set -euo pipefail
echo "job=$SLURM_JOB_ID nodes=$SLURM_JOB_NODELIST"
srun hostname
srun bash -c 'echo "step-gpus=${{CUDA_VISIBLE_DEVICES:-none}}"'
echo done
"""

TWO_NODES = """\
#!/bin/bash
#SBATCH --job-name=harness-two-nodes
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:8
#SBATCH --exclusive
#SBATCH --time=00:05:00
#SBATCH --partition=a40
srun hostname
"""


def _script(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    p.chmod(0o755)
    return p


def test_single_node_job_runs_srun(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "hello.out"
    script = _script(tmp_path, "hello.sbatch", HELLO.format(out=out))
    job = slurm_cluster.submit(script, cwd=tmp_path)
    state = slurm_cluster.wait(job, timeout=60)
    text = out.read_text(encoding="utf-8") if out.exists() else "<no output file>"
    assert state == "COMPLETED", f"job {job} ended {state}:\n{text}\n{slurm_cluster.logs()}"
    lines = text.splitlines()
    assert lines[0].startswith(f"job={job} nodes=n"), text
    assert socket.gethostname() in lines, text  # `srun hostname` ran (both nodes are this host)
    step_gpus = [ln for ln in lines if ln.startswith("step-gpus=")]
    assert step_gpus and len(step_gpus[0].removeprefix("step-gpus=").split(",")) == 2, text
    assert lines[-1] == "done", text
    info = slurm_cluster.job_info(job)
    assert info["Partition"] == "gpu" and info["NumNodes"] == "1", info


def test_test_only_accepts_two_nodes(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:  # noqa: F811
    script = _script(tmp_path, "two.sbatch", TWO_NODES)
    r = slurm_cluster.sbatch_test_only(script)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "to start at" in r.stderr and "on nodes n[1-2] in partition a40" in r.stderr, r.stderr
    # and the real limits are enforced: 3 nodes or 9 GPUs a node cannot be had
    too_many = slurm_cluster.sbatch_test_only(script, ["--nodes=3"])
    assert too_many.returncode != 0, too_many.stderr
    too_big = slurm_cluster.sbatch_test_only(script, ["--nodes=1", "--gres=gpu:9"])
    assert too_big.returncode != 0, too_big.stderr
    # --test-only queues nothing
    assert slurm_cluster.run("squeue", "-h", "-n", "harness-two-nodes").stdout.strip() == ""


MPI = """\
#!/bin/bash
#SBATCH --job-name=harness-pmix
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --gres=gpu:2
#SBATCH --exclusive
#SBATCH --time=00:05:00
#SBATCH --output={out}
srun --mpi=pmix --nodes=1 --ntasks-per-node=2 bash -c 'echo "rank=$PMIX_RANK gpus=$CUDA_VISIBLE_DEVICES"'
"""


def test_srun_mpi_pmix(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:  # noqa: F811
    """parc's MPI launch uses `srun --mpi=pmix`: Slurm's plugin dlopens libpmix.so (libpmix-dev)."""
    out = tmp_path / "mpi.out"
    job = slurm_cluster.submit(_script(tmp_path, "mpi.sbatch", MPI.format(out=out)))
    state = slurm_cluster.wait(job, timeout=60)
    text = out.read_text(encoding="utf-8") if out.exists() else "<no output file>"
    if "can not load PMIx library" in text:
        skip_or_fail("libpmix-dev is not installed (srun --mpi=pmix cannot load libpmix.so)")
    assert state == "COMPLETED", f"job {job} ended {state}:\n{text}"
    assert sorted(ln for ln in text.splitlines() if ln.startswith("rank=")) == [
        "rank=0 gpus=0,1", "rank=1 gpus=0,1"], text
