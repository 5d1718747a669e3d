"""`curate tokenize`: round trips through both formats, an independent Megatron reader, the
shuffle, resume after an interrupted run, local vs Ray, and the refusals of bad input."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.tokenize.formats import token_dtype, write_megatron_index
from pipeline.tokenize.run import TokenizeOptions, tokenize
from tests.tiny_models import train_byte_level_bpe

LANGS = ["en", "de", "ja", "zh", "ru", "ar", "el", "hi"]
EOS, BOS = "<|endoftext|>", "<s>"


@pytest.fixture(scope="module")
def bpe(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE (2,000 ids) trained on the shared lingua sentences."""
    texts = [
        line
        for lang in LANGS
        for line in (shared_data / "langid" / "lingua-sentences" / f"{lang}.txt").open()
    ]
    path = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    return train_byte_level_bpe(path, texts, 2000, [EOS, BOS])


@pytest.fixture(scope="module")
def corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Three JSONL files and one Parquet file of multilingual documents (8 sentences each, one
    with a null text and one empty, which are not documents); returns (dir, texts in order)."""
    root = tmp_path_factory.mktemp("corpus")
    texts: list[str] = []
    for k, lang in enumerate(LANGS[:4]):
        lines = (
            (shared_data / "langid" / "lingua-sentences" / f"{lang}.txt").read_text().split("\n")
        )
        docs = ["\n".join(lines[i : i + 8]) for i in range(0, 96, 8)]
        texts += docs
        ids = [f"{lang}-{i}" for i in range(len(docs))]
        if k == 3:
            table = pa.table(
                {
                    "id": [*ids, "none", "empty"],
                    "text": [*docs, None, ""],
                    "source": [lang] * (len(docs) + 2),
                }
            )
            pq.write_table(table, root / f"{k}-{lang}.parquet")
            continue
        with open(root / f"{k}-{lang}.jsonl", "w", encoding="utf-8") as f:
            for i, d in zip(ids, docs, strict=True):
                f.write(json.dumps({"id": i, "text": d, "source": lang}, ensure_ascii=False) + "\n")
    return root, texts


def read_megatron(prefix: Path) -> list[np.ndarray]:
    """Documents of a Megatron indexed dataset, read from the published layout."""
    idx = prefix.with_suffix(".idx").read_bytes()
    assert idx[:9] == b"MMIDIDX\x00\x00"
    version, code, n_seq, n_doc = struct.unpack_from("<QBQQ", idx, 9)
    assert version == 1
    dtype = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 8: np.uint16}[code]
    pos = 9 + 8 + 1 + 8 + 8
    sizes = np.frombuffer(idx, np.int32, n_seq, pos)
    pointers = np.frombuffer(idx, np.int64, n_seq, pos + 4 * n_seq)
    doc_idx = np.frombuffer(idx, np.int64, n_doc, pos + 12 * n_seq)
    assert len(idx) == pos + 12 * n_seq + 8 * n_doc
    assert doc_idx.tolist() == list(range(n_seq + 1))  # one sequence per document
    data = np.frombuffer(prefix.with_suffix(".bin").read_bytes(), dtype)
    itemsize = np.dtype(dtype).itemsize
    assert (
        pointers.tolist() == (np.cumsum(sizes) - sizes).astype(np.int64).__mul__(itemsize).tolist()
    )
    assert int(sizes.sum()) == data.size
    return [data[p // itemsize : p // itemsize + s] for p, s in zip(pointers, sizes, strict=True)]


def read_nanogpt(prefix: Path) -> list[np.ndarray]:
    """Documents of a nanoGPT shard: the flat array split at the manifest's offsets."""
    manifest = json.loads(prefix.with_suffix(".json").read_text())
    data = np.fromfile(prefix.with_suffix(".bin"), dtype=manifest["dtype"])
    offsets = manifest["document_offsets"]
    assert manifest["tokens"] == data.size == offsets[-1]
    assert manifest["documents"] == len(offsets) - 1
    return [data[a:b] for a, b in zip(offsets, offsets[1:], strict=False)]


def shard_docs(out: Path, summary: dict[str, Any]) -> list[np.ndarray]:
    read = read_megatron if summary["format"] == "megatron" else read_nanogpt
    return [d for s in summary["shards"] for d in read(out / s["name"])]


def files_of(out: Path) -> dict[str, bytes]:
    """Every output file's bytes except the run's own records (summary, markers, settings)."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and "_tokenize" not in p.parts and p.name != "summary.json"
    }


def run(corpus_dir: Path, bpe: Path, out: Path, **kw: Any) -> dict[str, Any]:
    kw.setdefault("executor", "local")
    return tokenize(
        TokenizeOptions(inputs=(str(corpus_dir),), tokenizer=str(bpe), output=str(out), **kw)
    )


def decode(bpe: Path, ids: np.ndarray) -> str:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(bpe)).decode(ids.tolist(), skip_special_tokens=False)


def test_megatron_round_trip(bpe: Path, corpus: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, texts = corpus
    out = tmp_path / "out"
    summary = run(root, bpe, out, format="megatron", eos_token=EOS)
    eos = 0  # the first special token of the trainer
    docs = shard_docs(out, summary)
    assert [d.dtype for d in docs[:1]] == [np.uint16]
    assert all(d[-1] == eos and eos not in d[:-1] for d in docs)
    assert [decode(bpe, d[:-1]) for d in docs] == texts  # input order, non-ASCII exact
    assert summary["documents"] == len(texts) == 48
    assert summary["tokens"] == sum(d.size for d in docs)
    assert summary["text_bytes"] == sum(len(t.encode()) for t in texts)
    assert {k: v["documents"] for k, v in summary["sources"].items()} == dict.fromkeys(
        LANGS[:4], 12
    )  # the records' own source field
    assert sum(s["tokens"] for s in summary["sources"].values()) == summary["tokens"]
    assert [s["name"] for s in summary["shards"]] == [f"tokens-{i:05d}-000" for i in range(4)]
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["skipped_records"] == {"missing_text": 1} and summary["input_errors"] == []
    before = files_of(out)
    assert run(root, bpe, out, format="megatron", eos_token=EOS) == summary  # all resumed
    assert files_of(out) == before


def test_nanogpt_split_shards_with_bos_and_eos(
    bpe: Path, corpus: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, texts = corpus
    out = tmp_path / "out"
    summary = run(
        root, bpe, out, format="nanogpt", eos_token=EOS, bos_token=BOS, max_tokens_per_shard=1500
    )
    docs = shard_docs(out, summary)
    assert all(d[0] == 1 and d[-1] == 0 for d in docs)
    assert [decode(bpe, d[1:-1]) for d in docs] == texts
    assert len(summary["shards"]) > 4
    for s in summary["shards"]:
        manifest = json.loads((out / f"{s['name']}.json").read_text())
        assert manifest["dtype"] == "uint16" and manifest["tokens"] == s["tokens"]
        assert s["tokens"] <= 1500 or s["documents"] == 1


def test_shuffle_is_seeded_permutation(
    bpe: Path, corpus: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, texts = corpus
    a = run(root, bpe, tmp_path / "a", format="megatron", shuffle=True, seed=7)
    run(root, bpe, tmp_path / "b", format="megatron", shuffle=True, seed=7)
    c = run(root, bpe, tmp_path / "c", format="megatron", shuffle=True, seed=8)
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")
    order_a = [decode(bpe, d) for d in shard_docs(tmp_path / "a", a)]
    order_c = [decode(bpe, d) for d in shard_docs(tmp_path / "c", c)]
    assert sorted(order_a) == sorted(texts) == sorted(order_c)
    assert order_a != texts and order_a != order_c
    assert a["tokens"] == c["tokens"] and not (tmp_path / "a" / "_tokenize" / "spill").exists()


@pytest.mark.parametrize("shuffle", [False, True])
def test_interrupted_run_resumes_identically(
    bpe: Path,
    corpus: tuple[Path, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    shuffle: bool,
) -> None:
    from pipeline.tokenize.job import TokenizeJob

    root, _ = corpus
    clean = run(root, bpe, tmp_path / "clean", format="megatron", shuffle=shuffle, seed=1)
    original = TokenizeJob.run
    calls = []

    def dies_after_one(self: TokenizeJob, task: Any, worker: str) -> dict[str, Any]:
        if calls:
            raise KeyboardInterrupt
        calls.append(task)
        return original(self, task, worker)

    monkeypatch.setattr(TokenizeJob, "run", dies_after_one)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(root, bpe, out, format="megatron", shuffle=shuffle, seed=1)
    assert not (out / "summary.json").exists()
    assert len(list((out / "_tokenize" / "done").iterdir())) == 1
    monkeypatch.setattr(TokenizeJob, "run", original)
    resumed = run(root, bpe, out, format="megatron", shuffle=shuffle, seed=1)
    assert files_of(out) == files_of(tmp_path / "clean")
    assert {k: v for k, v in resumed.items()} == clean
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


@pytest.mark.ray
def test_ray_and_local_give_identical_shards(
    bpe: Path, corpus: tuple[Path, list[str]], tmp_path: Path, ray_session: Any
) -> None:
    """Also across encoders: tiktoken in the Ray workers, the tokenizers library locally."""
    root, _ = corpus
    for shuffle in (False, True):
        local = run(
            root,
            bpe,
            tmp_path / f"local{shuffle}",
            format="nanogpt",
            shuffle=shuffle,
            encoder="tokenizers",
        )
        ray = run(
            root,
            bpe,
            tmp_path / f"ray{shuffle}",
            format="nanogpt",
            shuffle=shuffle,
            executor="ray",
            encoder="tiktoken",
        )
        assert ray["tokenizer"]["encoder"].startswith("tiktoken")
        assert files_of(tmp_path / f"local{shuffle}") == files_of(tmp_path / f"ray{shuffle}")
        assert ray["tokens"] == local["tokens"] > 0


def test_run_directory_means_its_data_shards(
    bpe: Path, corpus: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """A run directory is read through data/ only (rejected/ and the records are not input)."""
    root, texts = corpus
    rundir = tmp_path / "run"
    (rundir / "data").mkdir(parents=True)
    (rundir / "rejected" / "langid").mkdir(parents=True)
    pq.write_table(pq.read_table(root / "3-zh.parquet"), rundir / "data" / "part-0.parquet")
    pq.write_table(
        pq.read_table(root / "3-zh.parquet"), rundir / "rejected" / "langid" / "r.parquet"
    )
    (rundir / "stats.json").write_text("{}")
    summary = run(rundir, bpe, tmp_path / "out", format="nanogpt")
    assert [decode(bpe, d) for d in shard_docs(tmp_path / "out", summary)] == texts[36:]


def test_token_dtypes_and_a_wide_megatron_index(tmp_path: Path) -> None:
    import fsspec

    assert token_dtype("megatron", 65_499) == np.uint16
    assert token_dtype("megatron", 65_500) == np.int32
    assert token_dtype("nanogpt", 65_536) == np.uint16
    assert token_dtype("nanogpt", 65_537) == np.uint32
    docs = [
        np.array([70_000, 1, 2], np.int32),
        np.array([], np.int32),
        np.array([99_999], np.int32),
    ]
    (tmp_path / "w.bin").write_bytes(np.concatenate(docs).tobytes())
    sizes = np.array([d.size for d in docs])
    write_megatron_index(
        fsspec.filesystem("file"), str(tmp_path / "w.idx"), sizes, np.dtype(np.int32)
    )
    assert (tmp_path / "w.idx").read_bytes()[17] == 4  # int32's dtype code
    assert [d.tolist() for d in read_megatron(tmp_path / "w")] == [d.tolist() for d in docs]


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["tokenize", *args])
    return rc, capsys.readouterr().err.strip()


def test_bad_input_exits_2_naming_it_and_writes_nothing(
    bpe: Path,
    corpus: tuple[Path, list[str]],
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, _ = corpus
    out = tmp_path / "out"
    common = [str(root), "--output", str(out), "--format", "megatron", "--executor", "local"]
    broken = tmp_path / "broken.json"
    broken.write_text('{"model": 1}')
    rc, err = _cli([*common, "--tokenizer", str(broken)], capsys)
    assert rc == 2 and str(broken) in err and "\n" not in err
    rc, err = _cli([*common, "--tokenizer", str(tmp_path / "missing.json")], capsys)
    assert rc == 2 and "missing.json" in err
    rc, err = _cli([*common, "--tokenizer", str(bpe), "--eos-token", "<eos>"], capsys)
    assert rc == 2 and "--eos-token '<eos>' is not in the vocabulary" in err
    rc, err = _cli([*common, "--tokenizer", str(bpe), "--bos-token", "[CLS]"], capsys)
    assert rc == 2 and "--bos-token '[CLS]'" in err
    warc = shared_data / "warc" / "cc-main-2024-22-whirlwind.warc.gz"
    rc, err = _cli([str(warc), *common[1:], "--tokenizer", str(bpe)], capsys)
    assert rc == 2 and "is a WARC file" in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"id": "a", "text": ""}\n{"id": "b", "body": "no text field"}\n')
    rc, err = _cli([str(empty), *common[1:], "--tokenizer", str(bpe)], capsys)
    assert rc == 2 and "no document with text" in err and "\n" not in err
    wrong_field = tmp_path / "body.jsonl"
    wrong_field.write_text('{"id": "a", "body": "text under another name"}\n')
    rc, err = _cli([str(wrong_field), *common[1:], "--tokenizer", str(bpe)], capsys)
    assert rc == 2 and "fields seen: id, body; set --text-field" in err and "\n" not in err
    assert not out.exists()
    assert main(["tokenize", *common, "--tokenizer", str(bpe)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("tokenize: 48 documents, ") and "in 4 megatron shard(s)" in printed
    # the encoder that ran: 48 short documents are below the break-even of tiktoken's check
    assert "(uint16, tokenizers " in printed
    rc, err = _cli([*common, "--tokenizer", str(bpe), "--eos-token", EOS], capsys)
    assert rc == 2 and "other settings" in err
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    rc, err = _cli([*common[:2], str(stray), *common[3:], "--tokenizer", str(bpe)], capsys)
    assert rc == 2 and "not empty and not a `curate tokenize` output" in err
    assert [p.name for p in stray.iterdir()] == ["notes.txt"]


def test_encode_slices_do_not_change_the_shards(
    bpe: Path, corpus: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encoding calls bounded by text bytes (a few documents each) give the same bytes."""
    import pipeline.tokenize.job as job

    root, _ = corpus
    whole = run(root, bpe, tmp_path / "whole", format="megatron", eos_token=EOS)
    monkeypatch.setattr(job, "ENCODE_BYTES", 2000)
    sliced = run(root, bpe, tmp_path / "sliced", format="megatron", eos_token=EOS)
    assert files_of(tmp_path / "whole") == files_of(tmp_path / "sliced")
    assert sliced == whole


def test_hf_dataset_with_another_text_field(
    bpe: Path, corpus: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """A `datasets.save_to_disk` directory is an input like any other; --text-field picks the
    field."""
    datasets = pytest.importorskip("datasets")

    _, texts = corpus
    ds = datasets.Dataset.from_dict({"id": [f"d{i}" for i in range(20)], "body": texts[:20]})
    ds.save_to_disk(str(tmp_path / "hf"))
    summary = run(tmp_path / "hf", bpe, tmp_path / "out", format="nanogpt", text_field="body")
    assert [decode(bpe, d) for d in shard_docs(tmp_path / "out", summary)] == texts[:20]


@pytest.mark.e2e
def test_sigkill_then_rerun_gives_identical_shards(
    bpe: Path, corpus: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """`curate tokenize` killed (SIGKILL) after its first finished input file, then rerun."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    root, _ = corpus
    many = tmp_path / "many"
    many.mkdir()
    for i in range(40):  # 40 input files, so the kill lands mid-run
        shutil.copy(root / "0-en.jsonl", many / f"{i:02d}.jsonl")
    clean = tmp_path / "clean"
    args = ["--tokenizer", str(bpe), "--format", "nanogpt", "--shuffle", "--executor", "local"]
    assert main(["tokenize", str(many), "--output", str(clean), *args]) == 0
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline.cli", "tokenize", str(many), "--output", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([*cmd, *args], env=env, stderr=subprocess.DEVNULL)
    done = out / "_tokenize" / "done"
    deadline = time.monotonic() + 120
    while proc.poll() is None and not (done.is_dir() and any(done.iterdir())):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    assert subprocess.run([*cmd, *args], env=env, capture_output=True).returncode == 0
    assert files_of(out) == files_of(clean)
    assert json.loads((out / "summary.json").read_text()) == json.loads(
        (clean / "summary.json").read_text()
    )
