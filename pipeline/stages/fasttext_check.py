"""Checks a user-supplied fastText model file before any work: its header, then a load in a child
process under a time limit, so a corrupt file is a config error instead of a hung worker.

fastText's loader trusts the sizes in the file: a valid magic number followed by random bytes
makes it allocate or loop without end. The header (magic, version, the training arguments and
the dictionary sizes) is read here and checked for plausible values first.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from functools import cache
from pathlib import Path

from pipeline.errors import ConfigError

FASTTEXT_MAGIC = 793712314
FASTTEXT_VERSIONS = (11, 12)
LOAD_LIMIT_S = 120.0  # lid.176.bin (126 MB) loads in ~1 s; anything near this is broken
# Args: dim ws epoch minCount neg wordNgrams loss model bucket minn maxn lrUpdateRate (int32), t
_ARGS = struct.Struct("<12id")
# Dictionary: size nwords nlabels (int32), ntokens pruneidx_size (int64)
_DICT = struct.Struct("<3i2q")
_MIN_ENTRY_BYTES = 10  # an entry: word + NUL, int64 count, int8 type


def header_problem(path: Path) -> str | None:
    """Why the file is not a plausible fastText model (one phrase), or None."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8 + _ARGS.size + _DICT.size)
    if len(head) < 8 + _ARGS.size + _DICT.size:
        return "too short for a fastText model"
    magic, version = struct.unpack_from("<2i", head)
    if magic != FASTTEXT_MAGIC:
        return "not a fastText model (bad magic number)"
    if version not in FASTTEXT_VERSIONS:
        return f"unsupported fastText format version {version}"
    dim, ws, epoch, _, neg, ngrams, loss, model, bucket, minn, maxn, _, t = _ARGS.unpack_from(
        head, 8
    )
    args_ok = (
        0 < dim <= 10_000
        and 0 <= ws <= 1_000
        and 0 < epoch <= 100_000
        and 0 <= neg <= 10_000
        and 0 < ngrams <= 100
        and loss in (1, 2, 3, 4)
        and model in (1, 2, 3)
        and 0 <= bucket <= 100_000_000
        and 0 <= minn <= maxn <= 100
        and 0.0 <= t <= 1.0
    )
    if not args_ok:
        return "corrupt fastText header (implausible training arguments)"
    n, nwords, nlabels, ntokens, prune = _DICT.unpack_from(head, 8 + _ARGS.size)
    dict_ok = (
        0 < n == nwords + nlabels
        and nwords >= 0
        and nlabels >= 0
        and n * _MIN_ENTRY_BYTES <= size
        and ntokens >= 0
        and -1 <= prune <= size
    )
    if not dict_ok:
        return "corrupt fastText dictionary header (sizes do not fit the file)"
    return None


# The child's code: load the model, print a supervised model's labels one a line.
_LOAD_CODE = """import sys, fasttext
m = fasttext.load_model(sys.argv[1])
f = m.f
if hasattr(f, "getArgs") and str(f.getArgs().model).endswith(".supervised"):
    print("\\n".join(f.getLabels("replace")[0]))
"""


def check_fasttext_model(path: str, key: str, limit_s: float = LOAD_LIMIT_S) -> tuple[str, ...]:
    """Raise ConfigError naming `key` unless `path` is a fastText model that loads in time;
    return its labels (`__label__hq`, ...; empty for an unsupervised model or a build that
    cannot list them)."""
    file = Path(path).expanduser().resolve()
    info = file.stat()
    problem, labels = _model_problem(str(file), info.st_size, info.st_mtime_ns, limit_s)
    if problem:
        raise ConfigError(f"{key}: {path}: {problem}; nothing was run")
    return labels


@cache
def _model_problem(
    path: str, size: int, mtime_ns: int, limit_s: float
) -> tuple[str | None, tuple[str, ...]]:
    """(why the file is not a usable model or None, its labels); checked once per process and
    file version (a recipe is checked again by each ablation variant's run: the model loads
    once)."""
    problem = header_problem(Path(path))
    if problem is not None:
        return problem, ()
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _LOAD_CODE, path],
            capture_output=True,
            timeout=limit_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"did not load within {limit_s:g} s", ()
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        return f"fastText could not load it ({last[:200]})", ()
    return None, tuple(done.stdout.decode(errors="replace").split())
