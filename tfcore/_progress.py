"""Progress bars for long loops (loading shards, generating, embedding a dataset).

tqdm when it is installed and someone is watching: a terminal on stderr or a Jupyter
kernel. Off when TFCORE_PROGRESS=0 (or when tqdm is missing); forced on by TFCORE_PROGRESS=1.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except Exception:  # noqa: BLE001 - any IPython oddity means "not a notebook"
        return False


def enabled(requested: Optional[bool] = None) -> bool:
    """Whether to draw: the caller's choice, else TFCORE_PROGRESS, else is anyone watching."""
    if requested is not None:
        return requested
    env = os.environ.get("TFCORE_PROGRESS", "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    return _in_notebook() or (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


def progress(
    iterable: Iterable[T],
    total: Optional[int] = None,
    desc: str = "",
    show: Optional[bool] = None,
    unit: str = "it",
) -> Iterator[T]:
    """iterable, wrapped in a tqdm bar when enabled(show) and tqdm is installed."""
    if not enabled(show):
        return iter(iterable)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iter(iterable)
    return iter(tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr))
