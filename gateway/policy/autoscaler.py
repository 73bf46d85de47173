"""Schema of the ``autoscaler`` policy section: what the sidecar watches, its thresholds, and what it scales.

Every key has a default, so a policy without the section still validates; the default target watches
``tasks:stream`` (scale up above 100 entries, down below 20, 2 replicas at a time) and only logs its
decisions (``dry-run``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from gateway.policy.core import RetryConfig, Section

_SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class KubernetesActuatorConfig(Section):
    """A Deployment or StatefulSet scaled through its ``scale`` subresource (RBAC: get/patch on it)."""

    type: Literal["kubernetes"]
    """Selects this actuator."""
    resource: Literal["deployment", "statefulset"] = "deployment"
    """The kind of workload scaled."""
    name: str = "agents"
    """The workload's name."""
    namespace: str = "default"
    """The workload's namespace."""
    api_url: str = ""
    """Explicit API server URL; empty: ``kubeconfig`` if set, else the in-cluster service account."""
    kubeconfig: str = ""
    """Path of a kubeconfig (token or client certificate); empty: the in-cluster service account."""
    context: str = ""
    """Kubeconfig context; empty: its ``current-context``."""
    token_file: str = f"{_SA_DIR}/token"
    """Service-account token read in the cluster (re-read as it rotates) or with ``api_url``."""
    ca_file: str = f"{_SA_DIR}/ca.crt"
    """CA bundle of the API server in the cluster or with ``api_url``."""
    verify_tls: bool = True
    """Check the API server's certificate; turn off only for a test cluster."""
    timeout_s: float = Field(10.0, gt=0)
    """Longest wait for one API call."""


class SwarmActuatorConfig(Section):
    """A replicated Docker Swarm service, updated through the Engine API on its unix socket."""

    type: Literal["swarm"]
    """Selects this actuator."""
    service: str = "agents"
    """The Swarm service scaled."""
    socket: str = "/var/run/docker.sock"
    """The Docker Engine API's unix socket."""
    api_version: str = ""
    """Engine API version prefix such as ``v1.43``; empty: the daemon's own."""
    timeout_s: float = Field(10.0, gt=0)
    """Longest wait for one API call."""


class DryRunActuatorConfig(Section):
    """Decisions are only logged and exported; the replica count is simulated in memory."""

    type: Literal["dry-run"] = "dry-run"
    """Selects this actuator (the default)."""
    replicas: int | None = Field(None, ge=0)
    """Simulated starting count; empty: the target's ``min_replicas``."""


ActuatorConfig = Annotated[
    KubernetesActuatorConfig | SwarmActuatorConfig | DryRunActuatorConfig, Field(discriminator="type")
]
Signal = Literal["auto", "xlen", "lag", "pending", "lag_plus_pending"]
_GROUP_SIGNALS = ("lag", "pending", "lag_plus_pending")


class TargetConfig(Section):
    """One group of agent replicas and the streams whose backlog drives it."""

    name: str = Field("agents", pattern=r"^[A-Za-z0-9_.:-]+$")
    """The target's name in metrics, logs and its cooldown key."""
    streams: list[str] = Field(default_factory=lambda: ["tasks:stream"], min_length=1)
    """Redis streams of the agents' tasks; the backlog is their sum."""
    group: str = ""
    """Consumer group of the agents; empty: the backlog is ``XLEN``."""
    signal: Signal = "auto"
    """``auto``: ``xlen`` without a group, ``lag_plus_pending`` with one."""
    queue_high: int = Field(100, ge=0)
    """Above this backlog, ``step`` replicas are added."""
    queue_low: int = Field(20, ge=0)
    """Below this backlog (for ``stabilization_s``), ``step`` replicas are removed; under ``queue_high``."""
    step: int = Field(2, ge=1)
    """Replicas added or removed per action."""
    min_replicas: int = Field(1, ge=0)
    """Never fewer replicas than this."""
    max_replicas: int = Field(10, ge=1)
    """Never more replicas than this."""
    actuator: ActuatorConfig = Field(default_factory=DryRunActuatorConfig)
    """What is scaled, chosen by its ``type``: ``kubernetes``, ``swarm`` or ``dry-run``."""

    @model_validator(mode="after")
    def _consistent(self) -> TargetConfig:
        if self.queue_low >= self.queue_high:
            raise ValueError(f"queue_low ({self.queue_low}) must be below queue_high ({self.queue_high})")
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        if self.signal in _GROUP_SIGNALS and not self.group:
            raise ValueError(f"signal '{self.signal}' needs a consumer 'group'")
        return self

    @property
    def effective_signal(self) -> Signal:
        if self.signal != "auto":
            return self.signal
        return "lag_plus_pending" if self.group else "xlen"


class ActuatorRetryConfig(RetryConfig):
    """A provider's ``retry`` keys with shorter defaults: a cycle should end within a poll or two."""

    attempts: int = Field(4, ge=1, le=10)
    """Tries in all, the first included."""
    backoff_max_s: float = Field(2.0, ge=0)
    """Longest wait between two tries."""
    deadline_s: float = Field(10.0, gt=0)
    """No retry starts after this many seconds from the first attempt."""


class AutoscalerConfig(Section):
    """The ``llm-gateway autoscale`` sidecar; only the one holding the leader lock acts."""

    enabled: bool = True
    """``false``: the command logs that it is disabled and exits 0."""
    listen_host: str = "0.0.0.0"
    """Address of the sidecar's own ``/healthz`` and ``/metrics``."""
    listen_port: int = Field(9091, ge=1, le=65535)
    """Port of the sidecar's own ``/healthz`` and ``/metrics``."""
    poll_interval_s: float = Field(5.0, gt=0)
    """How often every target's backlog and replicas are read."""
    cooldown_s: float = Field(60.0, ge=0)
    """No scale action on a target this long after its previous one (shared by every sidecar)."""
    stabilization_s: float = Field(300.0, ge=0)
    """Scale down only after the backlog has stayed below ``queue_low`` this long."""
    leader_lock_key: str = "autoscaler:leader"
    """Redis key of the leader lock, after ``store.prefix``."""
    leader_ttl_s: float = Field(15.0, ge=0.5)
    """A dead leader's lock expires after this long and a standby takes over; renewed every third."""
    retry: ActuatorRetryConfig = ActuatorRetryConfig()
    """Retries of transient actuator errors (timeouts, 5xx, 409, 429, Swarm's "out of sequence")."""
    targets: list[TargetConfig] = Field(default_factory=lambda: [TargetConfig()])
    """What is scaled; names must be unique. Default: one target with every key at its default."""

    @model_validator(mode="after")
    def _unique_targets(self) -> AutoscalerConfig:
        names = [t.name for t in self.targets]
        if len(names) != len(set(names)):
            raise ValueError(f"target names must be unique, got {names}")
        return self
