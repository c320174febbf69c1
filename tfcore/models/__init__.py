"""Model families, named like their Hugging Face classes:
``tfcore.models.BertModel.from_pretrained(directory)``.

One line per family below; a family file states its public classes in ``__all__`` and
registers each with ``@registry.register(task)`` (see docs/contributing.md)."""

from types import ModuleType as _ModuleType

from .albert import *  # noqa: F401,F403
from .bart import *  # noqa: F401,F403
from .base import ModelOutput, PreTrainedModel
from .beit import *  # noqa: F401,F403
from .bert import *  # noqa: F401,F403
from .big_bird import *  # noqa: F401,F403
from .bloom import *  # noqa: F401,F403
from .clip import *  # noqa: F401,F403
from .cvt import *  # noqa: F401,F403
from .deberta_v2 import *  # noqa: F401,F403
from .electra import *  # noqa: F401,F403
from .encoder_heads import *  # noqa: F401,F403
from .falcon import *  # noqa: F401,F403
from .gemma2 import *  # noqa: F401,F403
from .gla import *  # noqa: F401,F403
from .gpt2 import *  # noqa: F401,F403
from .gpt_neox import *  # noqa: F401,F403
from .jamba import *  # noqa: F401,F403
from .led import *  # noqa: F401,F403
from .llama import *  # noqa: F401,F403
from .longformer import *  # noqa: F401,F403
from .mamba import *  # noqa: F401,F403
from .mamba2 import *  # noqa: F401,F403
from .marian import *  # noqa: F401,F403
from .mbart import *  # noqa: F401,F403
from .mixtral import *  # noqa: F401,F403
from .mpnet import *  # noqa: F401,F403
from .mt5 import *  # noqa: F401,F403
from .opt import *  # noqa: F401,F403
from .pegasus import *  # noqa: F401,F403
from .phi3 import *  # noqa: F401,F403
from .pvt_v2 import *  # noqa: F401,F403
from .qwen2 import *  # noqa: F401,F403
from .retnet import *  # noqa: F401,F403
from .rwkv import *  # noqa: F401,F403
from .rwkv6 import *  # noqa: F401,F403
from .segformer import *  # noqa: F401,F403
from .siglip import *  # noqa: F401,F403
from .swin import *  # noqa: F401,F403
from .swinv2 import *  # noqa: F401,F403
from .t5 import *  # noqa: F401,F403
from .vit import *  # noqa: F401,F403
from .wav2vec2 import *  # noqa: F401,F403
from .whisper import *  # noqa: F401,F403

# The submodules families share (docs/contributing.md); every other submodule is a family.
_SHARED_MODULES = ("base", "encoder", "decoder", "seq2seq", "vision", "registry", "mix_transformer")

# Each `from .<family> import *` also binds the submodule <family> here, so the families'
# __all__ are joined in import order without naming the families a second time.
__all__ = ["ModelOutput", "PreTrainedModel"] + [
    name
    for key, module in list(globals().items())
    if isinstance(module, _ModuleType)
    and module.__name__ == f"{__name__}.{key}"
    and key not in _SHARED_MODULES
    for name in module.__all__
]
