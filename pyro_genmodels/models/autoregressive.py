"""Autoregressive sequence models: the code lives in :mod:`pyro_genmodels.models.sequence`
(``models/sequence/``); this module re-exports its names so that the old imports keep
working.

>>> from pyro_genmodels.models import autoregressive, sequence
>>> autoregressive.NGram is sequence.NGram
True
"""

from .sequence import END, NETWORKS, AutoregressiveModel, GRUNet, NGram  # noqa: F401
from .sequence import SequenceFit, SequenceModel, TransformerNet, build_vocab  # noqa: F401
from .sequence import fit_ngram_closed_form, generate  # noqa: F401

__all__ = ["AutoregressiveModel", "NGram", "SequenceFit"]
