"""The docs run: every python block of the guides, and every docstring example."""

import doctest
import importlib
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
GUIDES = ["mle_map_posterior.md"]


@pytest.mark.slow  # about a minute of fitting, NUTS included; CI runs it with -m slow
@pytest.mark.parametrize("guide", GUIDES)
def test_guide_code_blocks_run(guide, capsys):
    blocks = BLOCK.findall((DOCS / guide).read_text())
    assert len(blocks) >= 5
    namespace = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{guide}[block {i}]", "exec"), namespace)
    assert "KL(p_data || p_mle)" in capsys.readouterr().out


@pytest.mark.slow  # NUTS at its defaults: about 30 s
def test_the_guides_loo_pit_block_runs():
    """docs/guide.md's LOO-PIT example, as a user would paste it (the guide's other
    blocks continue one another and are not run)."""
    import matplotlib

    matplotlib.use("Agg")
    blocks = [b for b in BLOCK.findall((DOCS / "guide.md").read_text())
              if "loo_log_weights" in b]
    assert len(blocks) == 1
    namespace = {}
    exec(compile(blocks[0], "guide.md[loo_pit]", "exec"), namespace)
    assert namespace["idata"].observed_data["x"].dims == ("row", "column")


MODULES = ["pyro_genmodels", "pyro_genmodels.models.gaussian", "pyro_genmodels.models.flow",
           "pyro_genmodels.models.mixture", "pyro_genmodels.models.ppca",
           "pyro_genmodels.models.energy", "pyro_genmodels.infer.samplers",
           "pyro_genmodels.infer.ais", "pyro_genmodels.infer.chees",
           "pyro_genmodels.infer.nuts",
           "pyro_genmodels.models.sequence.ngram",
           "pyro_genmodels.models.sequence.networks",
           "pyro_genmodels.models.vae", "pyro_genmodels.models.autoregressive",
           "pyro_genmodels.mc", "pyro_genmodels.divergences", "pyro_genmodels.datasets",
           "pyro_genmodels.models.gan", "pyro_genmodels.metrics"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
