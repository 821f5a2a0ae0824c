"""The load tester's configuration and the topology it implies: who is in which group, who sends."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

Arrival = Literal["poisson", "fixed"]
PREFIX_PATTERN = re.compile(r"[a-z0-9_.]{1,20}")
INJECT_LOSS_ENV = "TRUSTMESS_LOADTEST_INJECT_LOSS"


class ConfigError(ValueError):
    """Flags that cannot describe a run."""


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """One load-test run. ``rate`` set means open loop; otherwise ``window`` in flight per sender.

    ``idle`` > 0 holds that many joined sockets without sending; ``fanout`` puts every user in
    one group with a few senders. ``ws_urls`` (base URLs like ``url``) spreads the sockets
    round-robin over several nodes; set-up and verification always use ``url``. The server's
    CPU and RSS are summed over ``server_pids``.
    """

    url: str
    prefix: str = "lt"
    password: str = "loadtest-password"
    users: int = 10
    groups: int = 2
    group_size: int = 5
    sockets_per_user: int = 1
    senders: int | None = None
    rate: float | None = None
    arrival: Arrival = "poisson"
    window: int = 1
    duration: float = 10.0
    warmup: float = 2.0
    typing_ratio: float = 0.0
    # --mix: shares of message, react, edit and delete commands (None: messages only)
    mix: tuple[float, float, float, float] | None = None
    ack_every: int = 0
    body_chars: int = 32
    idle: int = 0
    fanout: bool = False
    procs: int = 1
    connect_concurrency: int = 200
    first_frame_auth: bool = False
    history_check: bool = True
    drain_timeout: float = 30.0
    ws_urls: tuple[str, ...] = ()
    server_pids: tuple[int, ...] = ()
    db_pid: int | None = None
    broker_pid: int | None = None
    progress: bool = False
    inject_loss: bool = False
    reconnect: bool = False  # reconnect, resume and resend after a close (fault injection)

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    @property
    def sending(self) -> bool:
        return self.idle == 0

    @property
    def socket_urls(self) -> tuple[str, ...]:
        """The base URLs sockets connect to, socket ``i`` to the ``i % len``-th."""
        return self.ws_urls or (self.url,)

    def resolved(self) -> LoadConfig:
        """Apply the scenario flags (``idle``, ``fanout``) and check the combination."""
        config = self
        if config.idle:
            config = replace(config, users=config.idle, groups=max(1, config.idle // 5))
            config = replace(config, group_size=min(5, config.users))
        if config.fanout:
            config = replace(config, groups=1, group_size=config.users)
            if config.senders is None:
                config = replace(config, senders=min(5, config.users))
        config._check()
        return config

    def _check(self) -> None:
        if not PREFIX_PATTERN.fullmatch(self.prefix):
            raise ConfigError("--prefix: 1-20 characters of [a-z0-9_.]")
        if self.users < 2:
            raise ConfigError("--users: at least 2")
        if not 2 <= self.group_size <= min(self.users, 1000):
            raise ConfigError("--group-size: between 2 and min(--users, 1000)")
        if self.groups < 1:
            raise ConfigError("--groups: at least 1")
        if self.rate is not None and self.rate <= 0:
            raise ConfigError("--rate: must be positive")
        if self.window < 1:
            raise ConfigError("--window: at least 1")
        if not 0 <= self.typing_ratio < 1:
            raise ConfigError("--typing-ratio: in [0, 1)")
        if self.mix is not None and (len(self.mix) != 4 or min(self.mix) < 0 or self.mix[0] <= 0):
            raise ConfigError("--mix: four shares SENDS,REACTS,EDITS,DELETES, sends above 0")
        if self.procs < 1 or self.sockets_per_user < 1:
            raise ConfigError("--procs and --sockets-per-user: at least 1")
        if self.duration <= 0 or self.warmup < 0:
            raise ConfigError("--duration must be positive, --warmup not negative")
        for url in (self.url, *self.ws_urls):
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"--url and --ws-url: a base http(s) URL, not {url!r}")


@dataclass(frozen=True, slots=True)
class Account:
    """A logged-in user of the run."""

    user_id: int
    username: str
    token: str


@dataclass(frozen=True, slots=True)
class SocketPlan:
    """One socket to open: whose it is, what it joins, whether it sends, and to which node
    (an index into :attr:`LoadConfig.socket_urls`)."""

    index: int
    user_id: int
    token: str
    conversations: tuple[int, ...]
    sends: bool
    node: int = 0


def group_members(users: int, groups: int, group_size: int) -> list[list[int]]:
    """Member indexes per group: consecutive users, wrapping around (deterministic)."""
    return [[(g * group_size + j) % users for j in range(group_size)] for g in range(groups)]


def socket_plans(
    config: LoadConfig, accounts: list[Account], conversations: list[int]
) -> list[SocketPlan]:
    """Every socket of the run; the first ``senders`` sockets (default: all) send, and socket
    ``i`` goes to node ``i % nodes`` (so senders and members are spread evenly too)."""
    joined: list[list[int]] = [[] for _ in accounts]
    members = group_members(len(accounts), len(conversations), config.group_size)
    for conversation_id, indexes in zip(conversations, members, strict=True):
        for index in indexes:
            joined[index].append(conversation_id)
    plans: list[SocketPlan] = []
    senders = config.senders
    nodes = len(config.socket_urls)
    for _copy in range(config.sockets_per_user):
        for account, convs in zip(accounts, joined, strict=True):
            index = len(plans)
            sends = config.sending and bool(convs) and (senders is None or index < senders)
            plans.append(
                SocketPlan(
                    index, account.user_id, account.token, tuple(convs), sends, index % nodes
                )
            )
    return plans


def split(plans: list[SocketPlan], parts: int) -> list[list[SocketPlan]]:
    """Deal sockets round-robin so every process gets a similar share of senders."""
    return [plans[i::parts] for i in range(parts)]
