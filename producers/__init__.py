"""Writing to Kafka: the engine's decision log, client events, and the traffic simulator."""
