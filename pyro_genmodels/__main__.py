"""``python -m pyro_genmodels``: the ``pyro-genmodels`` command, also as a module, so that
``torchrun --nproc_per_node=N -m pyro_genmodels fit ... --distributed`` starts it on
every worker."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
