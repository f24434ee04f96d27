r"""Autoregressive sequence models: exact likelihood by the chain rule, ancestral sampling.

Two families share the data handling, the fit and the sampler:

* :class:`NGram` (``ngram.py``): a probability table per context of the previous
  ``order - 1`` tokens under a Dirichlet prior; ``mle`` / ``map`` in closed form,
  ``vi`` / ``nuts``.
* :class:`AutoregressiveModel` (``networks.py``): a causal GRU or Transformer;
  ``mle`` / ``map`` (weight decay).

The modules, each importing only the ones listed before it:

* ``sampling.py``: :func:`generate` (cached ancestral sampling) and :class:`SequenceFit`.
* ``tokens.py``: the chain rule, the vocabulary and encoding, and :class:`SequenceModel`,
  the base class of the families.
* ``ngram.py`` and ``networks.py``: the families.

The old module ``pyro_genmodels.models.autoregressive`` re-exports these names.
"""

from .ngram import NGram, fit_ngram_closed_form
from .networks import NETWORKS, AutoregressiveModel, GRUNet, TransformerNet
from .sampling import SequenceFit, generate
from .tokens import END, SequenceModel, build_vocab

__all__ = ["END", "NETWORKS", "AutoregressiveModel", "GRUNet", "NGram", "SequenceFit",
           "SequenceModel", "TransformerNet", "build_vocab", "fit_ngram_closed_form",
           "generate"]
