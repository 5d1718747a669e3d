"""GPU requests of global-stage tasks: resolution, clear refusal, and placement on a GPU node.

No real GPU is needed: Ray schedules on declared GPU resources, which a test cluster can fake.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from pipeline.errors import CurateError
from pipeline.prune.config import PruneConfig
from pipeline.runner.executors import task_gpus


def test_task_gpus_resolves_auto_and_refuses_what_the_cluster_lacks() -> None:
    assert task_gpus(None, 0.0) == 0.0
    assert task_gpus(None, 4.0) == 1.0
    assert task_gpus(0, 4.0) == 0
    assert task_gpus(0.25, 1.0) == 0.25
    with pytest.raises(CurateError, match=r"ask for 1 GPU\(s\) each but the Ray cluster has 0"):
        task_gpus(1, 0.0)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"embedder": "light"}, 0),
        ({"embedder": "minilm", "device": "cpu"}, 0),
        ({"embedder": "minilm"}, None),  # auto: one GPU per task when the cluster has GPUs
        ({"embedder": "minilm", "num_gpus": 0.25}, 0.25),
        ({"embedder": "minilm", "device": "cuda", "num_gpus": 0}, 0),
    ],
)
def test_embedding_tasks_ask_for_gpus_only_for_a_neural_embedder(keys, expected) -> None:
    assert PruneConfig(**keys).embed_gpus() == expected


PROBE = textwrap.dedent(
    """
    import json, sys
    import ray
    from pipeline.runner.executors import RayContext

    def gpu_ids(_):
        return [str(g) for g in ray.get_gpu_ids()]

    ray.init(address=sys.argv[1], logging_level="ERROR")
    ctx = RayContext(sys.argv[2], 2)
    print(json.dumps({
        "auto": ctx.map(gpu_ids, [0, 1], num_gpus=None),
        "half": ctx.map(gpu_ids, [0, 1], num_gpus=0.5),
        "none": ctx.map(gpu_ids, [0, 1]),
    }))
    """
)


@pytest.mark.ray
@pytest.mark.slow
def test_embedding_tasks_land_on_the_gpu_node_of_a_cluster(tmp_path) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1}, connect=False)
    try:
        cluster.add_node(num_cpus=1, num_gpus=1)  # a declared (fake) GPU
        cluster.wait_for_nodes()
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, cluster.address, str(tmp_path / "work")],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "RAY_ADDRESS": ""},
        )
    finally:
        cluster.shutdown()
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["auto"] == [["0"], ["0"]]  # each task held the one GPU
    assert got["half"] == [["0"], ["0"]]
    assert got["none"] == [[], []]
