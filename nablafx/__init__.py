"""nablafx: differentiable black-box and gray-box audio effect modeling."""

from nablafx.core import StreamModule, feed_blocks, from_config, process_in_blocks, to_config

__version__ = "0.1.0"

__all__ = ["StreamModule", "feed_blocks", "from_config", "process_in_blocks", "to_config", "__version__"]
