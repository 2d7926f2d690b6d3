"""abengine: streaming online decision engine for content experiments.

Pure decision logic lives in ``engine.allocators`` (and the method packages);
Kafka, Redis and HTTP stay at the edges (``consumers``, ``producers``,
``engine.api``, ``engine.store``).
"""

__version__ = "0.1.0"
