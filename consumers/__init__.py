"""Reading from Kafka: the faust app, its agents, and the ingestion logic they call."""
