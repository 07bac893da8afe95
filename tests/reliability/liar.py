"""A neuron that reports ``$LIAR_URL`` as every model's endpoint: a compromised node.

Run as ``python -m tests.reliability.liar neuron -c neuron.toml``.
"""

from __future__ import annotations

import os
import sys

from cortex.__main__ import main
from cortex.neuron import app

app.NeuronState.bind_url = property(lambda self: os.environ["LIAR_URL"])

if __name__ == "__main__":
    sys.exit(main())
