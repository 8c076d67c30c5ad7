"""The sim front's configuration: the faults it knows, the credentials it accepts, :class:`SimConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .universe import MAX_INSTRUMENTS

FAULTS: dict[str, str] = {
    "disconnect": "drop every connection and close new ones at once (clients see OnFrontDisconnected(4097))",
    "silent": "accept connections but send nothing (no OnFrontConnected; OnHeartBeatWarning later)",
    "refuse_login": "reject every login and authentication (ErrorID 3 / 63)",
    "flow_control": "refuse instrument queries with OnRspError 90 'query not ready'",
    "dead_instruments": "a share of instruments (dead_share) never ticks",
    "replay": "re-send already-sent ticks (the morning replay), now and after every subscription",
    "date_quirks": "date ticks as in a night session so DCE/CZCE date quirks show at any hour",
    "burst": "multiply the tick rate by burst_factor",
    "slow": "deliver everything slow_delay_ms late",
}


@dataclass
class Credentials:
    """What the front accepts; None fields accept anything. Secrets stay SecretStr-like (get_secret_value)."""

    broker_id: str | None = None
    user_id: str | None = None
    password: Any = None  # SecretStr | None
    app_id: str | None = None
    auth_code: Any = None  # SecretStr | None

    @staticmethod
    def _secret(value: Any) -> str | None:
        return None if value is None else value.get_secret_value()

    def login_ok(self, data: dict[str, Any]) -> bool:
        return ((self.broker_id is None or data.get("BrokerID") == self.broker_id)
                and (self.user_id is None or data.get("UserID") == self.user_id)
                and (self.password is None or data.get("Password") == self._secret(self.password)))

    def auth_ok(self, data: dict[str, Any]) -> bool:
        return ((self.app_id is None or data.get("AppID") == self.app_id)
                and (self.auth_code is None or data.get("AuthCode") == self._secret(self.auth_code)))


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 17001
    instruments: int = 2000
    seed: int = 20261127
    credentials: Credentials = field(default_factory=Credentials)
    faults: set[str] = field(default_factory=set)
    tick_interval_ms: float = 500.0
    active_share: float = 1.0
    burst_factor: float = 4.0
    dead_share: float = 0.1
    slow_delay_ms: float = 2000.0
    max_sub: int = 0  # instruments per session; 0 = unlimited (MaxSubInstCnt)
    query_interval_seconds: float = 0.5  # the front's query rate (QryFreq 2/s)
    replay_depth: int = 20  # ticks kept per instrument for the replay fault
    heartbeat_seconds: float = 5.0
    send_buffer_max_bytes: int = 64 << 20  # a session whose unsent data exceeds this is dropped

    def validate(self) -> None:
        """Raise ValueError naming the option and the fix."""
        if not 1 <= self.instruments <= MAX_INSTRUMENTS:
            raise ValueError(f"--instruments {self.instruments} is out of range; fix: use 1-{MAX_INSTRUMENTS}")
        unknown = sorted(set(self.faults) - set(FAULTS))
        if unknown:
            raise ValueError(f"--fault: unknown fault {', '.join(unknown)}; fix: use one of {', '.join(FAULTS)}")
        if not 0 < self.active_share <= 1:
            raise ValueError(f"--active-share {self.active_share} is out of range; fix: use a share in (0, 1]")
        if not 0 <= self.dead_share <= 1:
            raise ValueError(f"--dead-share {self.dead_share} is out of range; fix: use a share in [0, 1]")
        if not 1 <= self.burst_factor <= 50:
            raise ValueError(f"--burst-factor {self.burst_factor} is out of range; fix: use 1-50")
        if not 20 <= self.tick_interval_ms <= 60_000:
            raise ValueError(f"--tick-interval-ms {self.tick_interval_ms} is out of range; fix: use 20-60000")
        if not 1 <= self.replay_depth <= 1000:
            raise ValueError(f"replay_depth {self.replay_depth} is out of range; fix: use 1-1000")
        if self.slow_delay_ms < 0 or self.max_sub < 0:
            raise ValueError("--slow-delay-ms and --max-sub must not be negative; fix: use 0 or more")
