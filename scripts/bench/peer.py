"""The peer, HuggingFace datatrove, in its own venv (`.bench-venv-datatrove`, never ours).

datatrove 0.10.1 needs `xxhash<4` and `trafilatura<1.12` (ours uses trafilatura 2.x), so it
cannot share our venv. The venv is created on first use from PyPI; an existing one (such as
scripts/bench_dedup.py's) is topped up with what the harness needs beyond `[processing]`: the
`[io]` extra (warcio, pyarrow, magic) for WarcReader / ParquetWriter, `lxml_html_clean` (which
trafilatura 1.11 imports but lxml 6 no longer bundles), psutil, and spaCy: datatrove's default
English word tokenizer is spaCy's blank pipeline (code only, no model download).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from scripts.bench.measure import run_measured

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".bench-venv-datatrove"
DRIVER = Path(__file__).with_name("peer_driver.py")
REQUIREMENTS = (
    "datatrove[processing,io]==0.10.1",
    "xxhash<4",
    "lxml_html_clean",
    "psutil",
    "orjson",
    "spacy",
)
CHECK = "import datatrove, warcio, magic, cchardet, pyarrow, psutil, trafilatura, fasttext, spacy"


def python() -> Path:
    """The peer venv's interpreter."""
    return VENV / "bin" / "python"


def ensure_venv() -> Path:
    """Create or complete the peer venv (needs PyPI once); return its python."""
    py = python()
    if not py.exists():
        print(f"creating {VENV} (datatrove from PyPI)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    ok = subprocess.run([str(py), "-c", CHECK], capture_output=True).returncode == 0
    if not ok:
        print(f"installing {' '.join(REQUIREMENTS)} into {VENV}", file=sys.stderr, flush=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", *REQUIREMENTS],
            check=True,
        )
    return py


def versions() -> dict[str, str]:
    """Versions of the peer's packages that matter for the comparison."""
    code = (
        "import importlib.metadata as m, json, sys;"
        "print(json.dumps({p: m.version(p) for p in "
        "('datatrove', 'spacy', 'trafilatura', 'lxml', 'xxhash', 'pyarrow', "
        "'fasttext-numpy2-wheel')}"
        " | {'python': sys.version.split()[0]}))"
    )
    out = subprocess.run([str(python()), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def env() -> dict[str, str]:
    """The environment of a peer run: no colours, no telemetry, offline hub."""
    return {
        **os.environ,
        "DATATROVE_COLORIZE_LOGS": "0",
        "PYTHONWARNINGS": "ignore",
        "HF_HUB_OFFLINE": "1",
    }


def run(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run peer_driver.py on `spec` in the peer venv, measured (see measure.py)."""
    work.mkdir(parents=True, exist_ok=True)
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    cmd = [str(python()), str(DRIVER), str(spec_path)]
    return run_measured(cmd, work / "log.txt", env=env(), cwd=work)
