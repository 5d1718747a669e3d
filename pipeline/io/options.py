"""The `input:` section of a recipe: where documents come from and how to read them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.config_model import ConfigModel

InputFormat = Literal["auto", "warc", "wet", "jsonl", "parquet", "hf"]


class InputConfig(ConfigModel):
    """Input paths (local paths, globs or fsspec URLs) and per-format reading options."""

    paths: list[str] = Field(default_factory=list, description="files, globs, directories or URLs")
    # A text file listing input files, one per line, as Common Crawl's warc.paths.gz (local or a
    # URL, compressed by its suffix): read besides `paths`; remote lines are not looked up while
    # planning, so 90,000 of them plan without a request each (pipeline/io/paths_file.py).
    paths_file: str | None = None
    # Prefixed to the relative lines of paths_file (https://data.commoncrawl.org/, s3://bucket/,
    # a local directory). null: relative lines are relative to the paths file's directory.
    base_url: str | None = None
    format: InputFormat = "auto"
    # JSONL / Parquet / HF: which fields hold the text, the id and the url.
    text_field: str = "text"
    id_field: str = "id"
    url_field: str = "url"
    # One record's bound (bytes, after decompression), skipped as `too_large` above it: a WARC
    # body, a JSONL line (read in chunks, never held whole), a Parquet / HF text value.
    max_record_bytes: int = Field(default=10_000_000, gt=0)
    # JSONL: bytes read from one file after decompression (a decompression bomb, /dev/zero);
    # reading stops there and the rest of the file counts as one `file_too_large`.
    max_file_bytes: int = Field(default=64 * 2**30, gt=0)
    # WARC: HTTP status codes whose responses are kept; others are skipped as `http_status`.
    keep_http_status: list[int] = Field(default_factory=lambda: [200])
    # fsspec protocols the user allows besides local files (e.g. ["s3", "https"]).
    allowed_protocols: list[str] = Field(default_factory=lambda: ["file"])
    # Stop after this many documents (a quick trial): units are read in order and reading stops
    # when the total is reached (pipeline/io/limit.py). null: read everything.
    limit: int | None = Field(default=None, gt=0)
    # Read a sample of this many of the input's files (units), chosen by `seed` from their paths
    # (pipeline/io/sample.py); with `limit`, the limit applies to the sample. null: every file.
    sample_files: int | None = Field(default=None, gt=0)
    seed: int = 0  # the seed of sample_files
    # HF `save_to_disk` DatasetDict folders: the split to read (required when a folder has several).
    split: str | None = None

    @model_validator(mode="after")
    def _base_url_with_paths_file(self) -> InputConfig:
        if self.base_url is not None and self.paths_file is None:
            raise ValueError(
                "base_url is prefixed to the lines of paths_file; set paths_file, or list full "
                "paths in paths"
            )
        return self
