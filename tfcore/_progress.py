"""Progress bars for long loops (loading shards, generating, embedding a dataset).

tqdm when it is installed and someone is watching: a terminal on stderr or a Jupyter
kernel. Off when TFCORE_PROGRESS=0 (or when tqdm is missing); forced on by TFCORE_PROGRESS=1.
A bar appears only once its loop has run for DELAY seconds (no bars for sub-second work).
In Jupyter the bar is tqdm's widget when ipywidgets is installed and a plain text bar
otherwise (never tqdm's "IProgress not found" warning).
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")

DELAY = 1.0  # seconds a loop runs before its bar is drawn


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
        bar = _tqdm_class()
    except ImportError:
        return iter(iterable)
    return iter(bar(iterable, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, delay=DELAY))


def _tqdm_class():
    """tqdm's notebook widget in Jupyter when ipywidgets is there, else its text bar."""
    if _in_notebook():
        try:
            import ipywidgets  # noqa: F401 - the widget bar needs it
            from tqdm.notebook import tqdm

            return tqdm
        except ImportError:
            pass
    from tqdm import tqdm

    return tqdm
