"""docs/api.md is generated from the docstrings and must be current; every public name has
a docstring."""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import gen_api_docs  # noqa: E402


def test_every_public_name_is_documented():
    for title, objs in gen_api_docs.sections():
        for obj in objs:
            assert (obj.__doc__ or "").strip(), f"{title}.{getattr(obj, '__name__', obj)} has no docstring"


def test_api_reference_is_current():
    with open(os.path.join(ROOT, "docs", "api.md")) as f:
        stored = f.read()
    assert stored == gen_api_docs.render(), "docs/api.md is stale: run python tools/gen_api_docs.py"


def test_member_summaries_are_whole_paragraphs():
    """A member's line in api.md is its docstring's whole first paragraph, never a line cut
    mid-sentence where the docstring wrapped."""
    doc = """Load the directory's model; dtype and
        threads as from_pretrained.

        More details."""
    assert (
        gen_api_docs.summary("f", doc) == "Load the directory's model; dtype and threads as from_pretrained."
    )
    assert (
        gen_api_docs.summary("keys", "keys(layer, /)\n--\n\nKeys of a layer: a\nview.")
        == "Keys of a layer: a view."
    )
    with open(os.path.join(ROOT, "docs", "api.md")) as f:
        api = f.read()
    assert (  # Conv2d.weight: its docstring wraps after "float32 array"
        "- `weight`: The weights as a new (out_channels, in_channels / groups, *kernel_size) float32 "
        "array (unpacked copy, BatchNorm folded in; int8: the dequantized values q * scale)." in api
    )
