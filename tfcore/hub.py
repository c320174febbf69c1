"""Where a ``from_pretrained`` argument lives: a local directory, or a Hugging Face hub id
already in the local hub cache.

tfcore never downloads by itself. ``from_pretrained("org/name")`` looks the id up in the
cache ``huggingface_hub`` writes (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``~/.cache/huggingface/hub``): ``models--org--name/refs/<revision>`` holds a commit hash and
``models--org--name/snapshots/<hash>/`` the files, so this works offline. When the id is not
cached and the ``huggingface_hub`` package is installed (and ``HF_HUB_OFFLINE`` is not set),
the download is delegated to its ``snapshot_download``; otherwise the error says how to get
the files (``huggingface-cli download org/name``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Union

from .safetensors import CheckpointError

# a hub repo id: "name" or "org/name" (letters, digits, '-', '_', '.'; no '..', no leading '.')
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# what a model needs from a hub repo (weights, configs, tokenizer files, sentence-transformers modules)
_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*/*.json", "*/*.safetensors"]


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache directory, as huggingface_hub resolves it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):  # the older spelling, still honoured by huggingface_hub
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def cached_snapshot(repo_id: str, revision: Optional[str] = None) -> Optional[Path]:
    """The local snapshot directory of a cached hub model, or None when it is not cached."""
    revision = revision or "main"
    repo = hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    if not repo.is_dir():
        return None
    commit = None
    ref = repo / "refs" / revision
    if "/" not in revision and ".." not in revision and ref.is_file():
        commit = ref.read_text().strip()
    elif _COMMIT.match(revision):
        commit = revision
    if commit is None or not _COMMIT.match(commit):
        return None
    snap = repo / "snapshots" / commit
    return snap if snap.is_dir() else None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve(name_or_path: Union[str, os.PathLike], revision: Optional[str] = None) -> Path:
    """The directory a from_pretrained argument names: a local directory as given (``~``
    expanded), else the cached snapshot of hub id ``org/name`` at ``revision`` (default
    ``"main"``), else a download through huggingface_hub when it is installed and allowed."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise CheckpointError(
            f"expected a directory path or a hub id like 'org/name', got {type(name_or_path).__name__}"
        )
    if revision is not None and (not isinstance(revision, str) or not revision):
        raise CheckpointError(f"revision must be a branch, tag or commit hash string, got {revision!r}")
    path = Path(os.path.expanduser(os.fspath(name_or_path)))
    if path.is_dir():
        if revision is not None:
            raise CheckpointError(f"{path}: revision={revision!r} applies to hub ids, not local directories")
        return path
    text = os.fspath(name_or_path)
    if path.exists() or not _REPO_ID.match(text) or ".." in text:
        what = "not a directory" if path.exists() else "No such file or directory"
        raise CheckpointError(
            f"{path}: {what} (from_pretrained takes a model directory, or a hub id 'org/name' in the "
            "local Hugging Face cache)"
        )
    snap = cached_snapshot(text, revision)
    if snap is not None:
        return snap
    rev = revision or "main"
    if not _offline():
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            snapshot_download = None
        if snapshot_download is not None:
            try:
                return Path(snapshot_download(text, revision=rev, allow_patterns=_PATTERNS))
            except Exception as e:  # network, auth, missing repo: say so in tfcore's words
                reason = f" (huggingface_hub could not download it: {type(e).__name__}: {str(e)[:200]})"
        else:
            reason = ""
    else:
        reason = " (HF_HUB_OFFLINE is set)"
    raise CheckpointError(
        f"{text!r} is not a local directory, and hub id {text!r} (revision {rev!r}) is not in the "
        f"local Hugging Face cache {hub_cache_dir()}{reason}. tfcore loads local directories or hub ids "
        f"already cached: get it with `huggingface-cli download {text}` (or `hf download {text}`), "
        "or pass the directory it is in"
    )
