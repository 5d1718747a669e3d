"""An embedded Ray node without the two head processes a one-machine run never uses.

`ray.init(address="local")` starts, besides the GCS, the raylet, its agents and the log
monitor, two Python processes of a cluster's head: the autoscaler monitor (nothing to scale
on a node of fixed resources) and the dashboard's API server (started even with
`include_dashboard=False`, when it loads only the usage-stats module). ray.init waits for the
API server to come up before it starts the raylet, so on 2 cores the two cost ~2.5 s of every
run's start and ~3 CPU s (docs/benchmarks.md, "Ray vs a process pool, round seven").

ray.init has no option for either, so `lean_head_node` replaces, for the block, the two methods
of Ray's `Node` that start them with ones that start nothing. It does so only on the Ray
versions it was checked on (RAY_VERSIONS_CHECKED) and only when those methods are there;
otherwise the node starts as Ray starts it. The log monitor stays: it brings the workers'
warnings to the driver's terminal.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

# Ray versions (major.minor) whose Node was read and whose lean node was tested: a head node
# started by Node.start_head_processes, which calls these two methods only to start the two
# processes, each optional there (a failed API server start is only logged).
RAY_VERSIONS_CHECKED = ("2.60",)
SKIPPED_METHODS = ("start_monitor", "start_api_server")


def lean_node_applies(version: str, node_cls: type) -> bool:
    """Whether `lean_head_node` may replace `node_cls`'s methods on Ray `version`: a checked
    version, and both methods defined on the class itself."""
    major_minor = ".".join(version.split(".")[:2])
    return major_minor in RAY_VERSIONS_CHECKED and all(
        callable(node_cls.__dict__.get(name)) for name in SKIPPED_METHODS
    )


def _starts_nothing(name: str) -> Callable[..., None]:
    def skipped(self: Any, *args: Any, **kwargs: Any) -> None:
        log.debug("embedded Ray node: %s skipped (a one-machine run does not use it)", name)

    skipped.__name__ = name
    return skipped


@contextlib.contextmanager
def lean_head_node() -> Iterator[bool]:
    """For the block (a ray.init that starts an embedded node): Ray's Node starts no autoscaler
    monitor and no API server. Yields whether it applies (False: Ray's node unchanged)."""
    try:
        import ray
        from ray._private.node import Node
    except ImportError:  # a Ray laid out otherwise
        yield False
        return
    if not lean_node_applies(ray.__version__, Node):
        log.debug("Ray %s: the embedded node starts every head process", ray.__version__)
        yield False
        return
    saved = {name: Node.__dict__[name] for name in SKIPPED_METHODS}
    for name in SKIPPED_METHODS:
        setattr(Node, name, _starts_nothing(name))
    try:
        yield True
    finally:
        for name, method in saved.items():
            setattr(Node, name, method)
