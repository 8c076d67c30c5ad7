"""The simulated instrument universe, generated from ``lib/feedops/data/products.csv``.

Deterministic: the same size, seed and as-of month give the same instruments with
the same prices. Shaped like the real market:

* futures (ProductClass '1'): 12 consecutive months per commodity product, CFFEX
  index futures the current and next month plus the next two quarter months, CFFEX
  bond futures three quarter months; ids ``rb2601`` (SHFE/INE/DCE/GFEX lower case),
  ``SR601`` (CZCE: product + last digit of the year + month), ``IF2512`` (CFFEX);
* options (ProductClass '2'): calls and puts around the money on the nearest months
  of products whose ``options`` column is ``yes``: SHFE/INE ``cu2601C70000``, DCE and
  GFEX ``m2601-C-3000``, CZCE ``SR601C5000``, CFFEX ``IO2512-C-4000``; ProductID
  ``<product>_o`` except CFFEX (``IO``, ``HO``, ``MO``).

The universe is filled in priority order (every product's nearest futures first,
then further months, then options nearest the money on near months, interleaved
across products) and cut at the requested size.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import random
from dataclasses import dataclass
from pathlib import Path

from .. import paths

MAX_INSTRUMENTS = 30_000
PRODUCTS_FILE = paths.DATA_DIR / "products.csv"
_DASHED = ("DCE", "GFEX", "CFFEX")  # option ids with dashes: m2601-C-3000
_MULTIPLIER = {"CFFEX": 300, "SHFE": 5, "INE": 1000, "DCE": 10, "CZCE": 10, "GFEX": 5}


@dataclass(frozen=True)
class Product:
    exchange: str
    product: str
    night_end: str
    session: str
    options: bool
    price_tick: float
    base_price: float
    option_product: str


@dataclass(frozen=True)
class Instrument:
    instrument_id: str
    exchange: str
    product: str  # ProductID as CTP reports it (options: cu_o, IO)
    underlying_product: str  # the future's product: what the trading calendar knows
    product_class: str  # '1' futures, '2' options
    price_tick: float
    pre_settlement: float
    delivery_year: int
    delivery_month: int
    underlying: str = ""  # options: the future's instrument id
    strike: float = 0.0
    option_type: str = ""  # '1' call, '2' put

    @property
    def is_option(self) -> bool:
        return self.product_class == "2"


def load_products(path: Path | None = None) -> list[Product]:
    with open(path or PRODUCTS_FILE, encoding="utf-8") as fh:
        rows = list(csv.DictReader(line for line in fh if line.strip() and not line.startswith("#")))
    return [Product(r["exchange"].strip(), r["product"].strip(), r["night_end"].strip(), r["session"].strip(),
                    r["options"].strip() == "yes", float(r["price_tick"]), float(r["base_price"]),
                    (r.get("option_product") or "").strip())
            for r in rows]


def _months(start: _dt.date, count: int) -> list[tuple[int, int]]:
    year, month = start.year, start.month
    out = []
    for _ in range(count):
        out.append((year, month))
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return out


def _contract_months(product: Product, as_of: _dt.date) -> list[tuple[int, int]]:
    if product.session == "cffex_index":
        near = _months(as_of, 2)
        quarters = [(y, m) for y, m in _months(as_of, 12)[2:] if m % 3 == 0][:2]
        return near + quarters
    if product.session == "cffex_bond":
        return [(y, m) for y, m in _months(as_of, 12) if m % 3 == 0][:3]
    return _months(as_of, 12)


def future_id(product: Product, year: int, month: int) -> str:
    if product.exchange == "CZCE":
        return f"{product.product}{year % 10}{month:02d}"
    return f"{product.product}{year % 100:02d}{month:02d}"


def option_id(product: Product, future: str, call: bool, strike: float) -> str:
    letter = "C" if call else "P"
    strike_text = f"{strike:g}"
    if product.exchange == "CFFEX":
        return f"{product.option_product}{future[len(product.product):]}-{letter}-{strike_text}"
    if product.exchange in _DASHED:
        return f"{future}-{letter}-{strike_text}"
    return f"{future}{letter}{strike_text}"


def _strike_step(price: float) -> float:
    raw = price * 0.02
    magnitude = 10 ** math.floor(math.log10(raw))
    for nice in (1, 2, 5, 10):
        if raw <= nice * magnitude:
            return max(1.0, nice * magnitude)
    return max(1.0, 10 * magnitude)


def _round_tick(value: float, tick: float) -> float:
    return round(round(value / tick) * tick, 6)


def _options(product: Product, future: Instrument, distance: int) -> list[Instrument]:
    """Calls and puts ``distance`` strike steps from the money (both sides) on one future."""
    settle = future.pre_settlement
    step = _strike_step(settle)
    atm = round(settle / step) * step
    option_product = product.option_product or f"{product.product}_o"
    out = []
    for sign in ((0,) if distance == 0 else (-1, 1)):
        strike = atm + sign * distance * step
        if strike <= 0:
            continue
        for call in (True, False):
            intrinsic = max(0.0, (settle - strike) if call else (strike - settle))
            premium = _round_tick(max(product.price_tick, intrinsic + settle * 0.02 / (1 + distance)),
                                  product.price_tick)
            out.append(Instrument(option_id(product, future.instrument_id, call, strike), product.exchange,
                                  option_product, product.product, "2", product.price_tick, premium,
                                  future.delivery_year, future.delivery_month, future.instrument_id, float(strike),
                                  "1" if call else "2"))
    return out


OPTION_MONTHS = 6
MAX_STRIKE_DISTANCE = 40


def generate(size: int, seed: int, as_of: _dt.date, products: list[Product] | None = None) -> list[Instrument]:
    """The first ``size`` instruments of the universe for ``seed`` and the month of ``as_of``."""
    if not 1 <= size <= MAX_INSTRUMENTS:
        raise ValueError(f"universe size {size} is out of range 1-{MAX_INSTRUMENTS}")
    products = products if products is not None else load_products()
    rng = random.Random(seed)
    start = (as_of.replace(day=1) + _dt.timedelta(days=32)).replace(day=1)  # next month: the nearest listed
    near: list[Instrument] = []
    far: list[Instrument] = []
    optionable: list[tuple[Product, list[Instrument]]] = []
    for product in products:
        price = _round_tick(product.base_price * rng.uniform(0.95, 1.05), product.price_tick)
        futures = []
        for n, (year, month) in enumerate(_contract_months(product, start)):
            settle = _round_tick(price * (1 + 0.002 * n), product.price_tick)
            futures.append(Instrument(future_id(product, year, month), product.exchange, product.product,
                                      product.product, "1", product.price_tick, settle, year, month))
        near += futures[:2]
        far += futures[2:]
        if product.options:
            optionable.append((product, futures[:OPTION_MONTHS]))
    ordered = near + far
    # options in rounds: nearest the money and nearest month first, interleaved across products
    for distance in range(MAX_STRIKE_DISTANCE):
        for month_index in range(OPTION_MONTHS):
            if len(ordered) >= size:
                return ordered[:size]
            for product, futures in optionable:
                if month_index < len(futures):
                    ordered += _options(product, futures[month_index], distance)
    if size > len(ordered):
        raise ValueError(f"universe size {size} exceeds the {len(ordered)} instruments products.csv can produce")
    return ordered[:size]
