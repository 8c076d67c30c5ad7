"""Command line of the ctp-sim front: ``python -m feedops.sim`` and scripts/operations/ctp_sim.py.

    ctp_sim.py --env dev --profile primary            # listen on the profile's MD front
    ctp_sim.py --listen 127.0.0.1:17001 --instruments 20000 --fault dead_instruments,slow

Credentials the front accepts are the profile's (CTP_<PROFILE>_BROKER_ID, _USER_ID,
_PASSWORD, _APP_ID, _AUTH_CODE) loaded through feedops.settings (environment or
secrets directory; never the command line). Exit codes: feedops.exitcodes.Sim.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from typing import Any

from ..exitcodes import Sim
from ..log import configure, get_logger
from ..settings import PROFILE_NAMES, ConfigError, Settings, load_settings
from .config import FAULTS, Credentials, SimConfig
from .server import ListenError, SimServer
from .universe import MAX_INSTRUMENTS

log = get_logger("ctp-sim")
CONTROL_PORT_OFFSET = 1000
_ADDRESS = re.compile(r"^(?:tcp://)?(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")


class UsageError(Exception):
    """A bad argument: the message names it and the fix."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}; fix: see --help")


def parse_address(value: str, option: str) -> tuple[str, int]:
    m = _ADDRESS.match(value.strip())
    if not m or not 0 <= int(m.group("port")) <= 65535:
        raise UsageError(f"{option} {value!r} is not HOST:PORT with a port in 0-65535; fix: e.g. {option} 127.0.0.1:17001")
    return m.group("host").strip("[]"), int(m.group("port"))


def _number(kind: type, option: str) -> Any:
    def convert(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            noun, example = ("a whole number", "42") if kind is int else ("a number", "0.5")
            raise UsageError(f"{option} {text!r} is not {noun}; fix: e.g. {option} {example}") from None
    return convert


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ctp_sim.py", description="ctp-sim: a CTP-compatible market simulator with fault injection")
    p.add_argument("--env", help="environment (envs/<env>.env); default FEEDOPS_ENV or dev")
    p.add_argument("--profile", choices=PROFILE_NAMES, help="credential profile whose fronts and credentials to serve "
                                                             "(default FEEDOPS_ACTIVE_PROFILE)")
    p.add_argument("--listen", help="HOST:PORT to listen on (default: the profile's first MD front)")
    p.add_argument("--control", help="HOST:PORT of the HTTP control endpoint (/metrics, /faults), or 'off' "
                                     f"(default: listen port + {CONTROL_PORT_OFFSET})")
    p.add_argument("--instruments", type=_number(int, "--instruments"),
                   help=f"universe size 1-{MAX_INSTRUMENTS} (default FEEDOPS_SIM_INSTRUMENTS)")
    p.add_argument("--seed", type=_number(int, "--seed"), help="universe seed (default FEEDOPS_SIM_SEED)")
    cal = p.add_mutually_exclusive_group()
    cal.add_argument("--always-open", dest="always_open", action="store_true", default=None,
                     help="every instrument ticks at any hour (default: FEEDOPS_CALENDAR == always-open)")
    cal.add_argument("--exchange-hours", dest="always_open", action="store_false",
                     help="follow the exchanges' sessions and holidays")
    p.add_argument("--fault", action="append", default=[], metavar="NAME[,NAME]",
                   help=f"fault(s) active from the start: {', '.join(FAULTS)}")
    p.add_argument("--tick-interval-ms", type=_number(float, "--tick-interval-ms"), default=500.0,
                   help="snapshot interval per active instrument (default 500)")
    p.add_argument("--active-share", type=_number(float, "--active-share"), default=1.0,
                   help="share of instruments that tick every interval; the rest tick every 30 s (default 1.0)")
    p.add_argument("--burst-factor", type=_number(float, "--burst-factor"), default=4.0,
                   help="rate multiplier while the burst fault is on (default 4)")
    p.add_argument("--dead-share", type=_number(float, "--dead-share"), default=0.1,
                   help="share of instruments that never tick while dead_instruments is on (default 0.1)")
    p.add_argument("--slow-delay-ms", type=_number(float, "--slow-delay-ms"), default=2000.0,
                   help="delivery delay while the slow fault is on (default 2000)")
    p.add_argument("--max-sub", type=_number(int, "--max-sub"), default=0,
                   help="instruments per session (MaxSubInstCnt); 0 = unlimited (default)")
    p.add_argument("--query-interval", type=_number(float, "--query-interval"), default=0.5,
                   help="seconds between instrument queries the front allows (default 0.5)")
    p.add_argument("--accept-any-login", action="store_true",
                   help="accept any credentials (when the profile has none configured)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="default FEEDOPS_LOG_LEVEL")
    p.add_argument("--log-format", choices=("json", "text"), help="default FEEDOPS_LOG_FORMAT")
    return p


def _faults(values: list[str]) -> set[str]:
    names = {part.strip() for value in values for part in value.split(",") if part.strip()}
    unknown = sorted(names - set(FAULTS))
    if unknown:
        raise UsageError(f"--fault: unknown fault {', '.join(unknown)}; fix: use one of {', '.join(FAULTS)}")
    return names


def _credentials(settings: Settings, profile_name: str, accept_any: bool) -> Credentials:
    if accept_any:
        return Credentials()
    profile = settings.profile(profile_name)
    missing = [var for var, value in ((profile.env_var("broker_id"), profile.broker_id),
                                      (profile.env_var("user_id"), profile.user_id),
                                      (profile.env_var("password"), profile.password)) if value is None]
    if missing:
        raise UsageError(f"{', '.join(missing)} not set, so the sim cannot check logins; fix: set them in the "
                         "environment or the secrets directory (make bootstrap generates dev secrets), "
                         "or pass --accept-any-login")
    return Credentials(profile.broker_id, profile.user_id, profile.password, profile.app_id, profile.auth_code)


def config_from_args(args: argparse.Namespace, settings: Settings) -> tuple[SimConfig, tuple[str, int] | None]:
    profile_name = args.profile or settings.feed.active_profile
    if args.listen:
        host, port = parse_address(args.listen, "--listen")
    else:
        fronts = settings.profile(profile_name).md_fronts
        if not fronts:
            var = settings.profile(profile_name).env_var("md_fronts")
            raise UsageError(f"no --listen and {var} is empty; fix: pass --listen HOST:PORT or set {var}")
        host, port = parse_address(fronts[0], settings.profile(profile_name).env_var("md_fronts"))
    if args.control is None:
        control: tuple[str, int] | None = (host, port + CONTROL_PORT_OFFSET) if port else None
        if control and control[1] > 65535:
            raise UsageError(f"the default control port {control[1]} is out of range; fix: pass --control HOST:PORT")
    elif args.control.lower() == "off":
        control = None
    else:
        control = parse_address(args.control, "--control")
    config = SimConfig(
        host=host, port=port,
        instruments=args.instruments if args.instruments is not None else settings.feed.sim_instruments,
        seed=args.seed if args.seed is not None else settings.feed.sim_seed,
        credentials=_credentials(settings, profile_name, args.accept_any_login),
        faults=_faults(args.fault), tick_interval_ms=args.tick_interval_ms, active_share=args.active_share,
        burst_factor=args.burst_factor, dead_share=args.dead_share, slow_delay_ms=args.slow_delay_ms,
        max_sub=args.max_sub, query_interval_seconds=args.query_interval)
    try:
        config.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return config, control


async def serve(config: SimConfig, calendar: Any, control: tuple[str, int] | None) -> None:
    """Run the front (and control endpoint) until SIGTERM/SIGINT."""
    from .control import ControlServer

    server = SimServer(config, calendar)
    await server.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ctl = None
    try:
        if control is not None:
            ctl = ControlServer(control[0], control[1], server, loop)
        await stop.wait()
    finally:
        if ctl is not None:
            ctl.close()
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    from .. import clock
    from ..calendar import CalendarError, TradingCalendar

    try:
        args = build_parser().parse_args(argv)
        clock.check()
        overrides = {k: v for k, v in (("FEEDOPS_LOG_LEVEL", args.log_level), ("FEEDOPS_LOG_FORMAT", args.log_format))
                     if v}
        settings = load_settings(args.env, overrides=overrides)
        configure(settings.feed.log_level, settings.feed.log_format)
        config, control = config_from_args(args, settings)
        always_open = args.always_open if args.always_open is not None else settings.feed.calendar == "always-open"
        calendar = TradingCalendar.from_settings(settings.feed)
        if always_open != calendar.always_open:
            calendar = TradingCalendar("always-open" if always_open else "exchange", calendar.holidays)
    except UsageError as exc:
        sys.stderr.write(f"ctp-sim: {exc}\n")
        return Sim.USAGE
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"ctp-sim: {problem}\n")
        return Sim.USAGE
    except (CalendarError, clock.ClockError) as exc:
        sys.stderr.write(f"ctp-sim: {exc}\n")
        return Sim.USAGE
    try:
        asyncio.run(serve(config, calendar, control))
    except ListenError as exc:
        log.error("sim.listen.failed", f"{exc.strerror}; fix: stop what uses the port or choose another "
                                       "(--listen/--control)")
        return Sim.LISTEN
    except KeyboardInterrupt:
        pass
    return Sim.OK
