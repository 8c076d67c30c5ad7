"""In-process costs of the worker's tick path, per tick, on the ticks production receives.

Imported by ``bench/bench_worker.py`` (run it with ``--stages-only`` for just this part).
Real openctp-ctp ``CThostFtdcDepthMarketDataField`` structs (SWIG proxies, as the callback
receives them); without the binding (no locale) it stops with the fix. Stages, each timed alone on the same ticks (CPU time of this
thread, µs per tick):

* callback: ``TickQueue.offer`` on every struct (what ``OnRtnDepthMarketData`` runs),
  next to a copy of the struct in Python, ``ctypes.string_at(int(s.this), size)`` (the floor of the
  Python callback before it was compiled);
* the callback as production runs it (:func:`director_callback`): a native thread calls openctp-ctp's
  director method for ``OnRtnDepthMarketData`` (``bench/native_thread.c``), in a process of its own;
* decode + normalise + dedupe: ``Pipeline.process_next`` (``Pipeline.process`` on the next batch)
  (the sink writer replaced by a list);
* hand-over: what the pipe between the two processes costs: the records' bytes copied (worker) and
  read back as an array (writer); pickling and unpickling for the engines that pickled;
* encode: ``feedops.worker.writer.rows_of`` (the JSON lines) in the writer;
* write: the file sink's ``publish`` of those rows (page cache, a temporary directory) plus
  the writer's accounting of what was written.

Works against the per-tick tuple engine (before the struct-copy callback) and the batch engine alike.
``python bench/worker_stages.py --profile`` adds a cProfile of the decode and the encode.
"""

from __future__ import annotations

import ctypes
import inspect
import pickle
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

INSTRUMENTS = 4000
ROUNDS = 10
EXCHANGES = ("SHFE", "INE", "DCE", "CZCE", "CFFEX", "GFEX")


def _struct_class() -> tuple[type, str]:
    from feedops.sim.structs import REAL_MD

    if REAL_MD is None:  # the callback copies through the struct's address, which only a real struct has
        raise SystemExit("bench: openctp-ctp does not import here (its zh_CN.GB18030 locale: LOCPATH); the stages "
                         "are timed on its real structs; fix: run `make bench`, which bootstraps the locale")
    return REAL_MD.CThostFtdcDepthMarketDataField, "real openctp-ctp structs"


def _depth_size() -> int:
    try:
        from feedops.worker.layout import DEPTH_SIZE
    except ImportError:  # the per-tick tuple engine: the copy size timed before
        return 512
    return DEPTH_SIZE


def make_structs(cls: type) -> list[Any]:
    """INSTRUMENTS x ROUNDS ticks, one struct each, rising time and volume per instrument (nothing deduped); the
    open fixed per instrument, the high and low the extremes so far (as a trading day and ctp-sim have them)."""
    rnd = random.Random(16)
    structs = []
    opens = [3000.0 + round(rnd.random() * 100, 1) for _ in range(INSTRUMENTS)]
    highs, lows = list(opens), list(opens)
    for r in range(ROUNDS):
        for i in range(INSTRUMENTS):
            s = cls()
            exchange = EXCHANGES[i % len(EXCHANGES)]
            s.InstrumentID = f"x{i:05d}"
            s.ExchangeID = exchange
            s.ExchangeInstID = s.InstrumentID
            s.TradingDay = "20261202"
            s.ActionDay = "20261202"
            s.UpdateTime = f"10:{r // 60:02d}:{r % 60:02d}"
            s.UpdateMillisec = 500 if i % 2 else 0
            price = 3000.0 + round(rnd.random() * 100, 1)  # prices on a tick of 0.1
            s.LastPrice, s.Volume, s.Turnover, s.OpenInterest = price, 100 + r * 7, round(price * (100 + r * 7) * 10, 1), 5000.0
            highs[i], lows[i] = max(highs[i], price), min(lows[i], price)  # as the day goes (and as ctp-sim sends)
            s.OpenPrice, s.HighestPrice, s.LowestPrice, s.AveragePrice = opens[i], highs[i], lows[i], price
            s.PreSettlementPrice = s.PreClosePrice = 3000.0
            s.PreOpenInterest = 4900.0
            s.UpperLimitPrice, s.LowerLimitPrice = 3300.0, 2700.0
            s.SettlementPrice = s.ClosePrice = 1.7976931348623157e308
            for level in range(1, 6):
                deep = exchange in ("SHFE", "INE") or level == 1
                setattr(s, f"BidPrice{level}", price - level if deep else 1.7976931348623157e308)
                setattr(s, f"AskPrice{level}", price + level if deep else 1.7976931348623157e308)
                setattr(s, f"BidVolume{level}", 10 * level if deep else 0)
                setattr(s, f"AskVolume{level}", 11 * level if deep else 0)
            structs.append(s)
    return structs


class _Collect:
    """The sink writer's place in the pipeline: keeps what is submitted."""

    def __init__(self) -> None:
        self.batches: list[Any] = []
        self.on_account = None
        self.up, self.buffered, self.dropped_total = True, 0, 0

    def wait_room(self, timeout: float) -> bool:
        return True

    def submit(self, batch: Any) -> None:
        self.batches.append(batch)


def _deduper(book: Any) -> Any:
    """The deduper of ``book``'s pipeline (sharing its instrument ids where the engine has them)."""
    from feedops.worker.dedupe import Deduper

    try:
        return Deduper(book.ids)
    except (TypeError, AttributeError):  # an engine before the shared ids
        return Deduper()


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.thread_time()
    out = fn()
    return time.thread_time() - t0, out


def measure() -> tuple[str, dict[str, float]]:
    from feedops.calendar import TradingCalendar
    from feedops.worker import writer as writer_mod
    from feedops.worker.book import InstrumentBook
    from feedops.worker.metrics import LATENCY_BUCKETS, WorkerMetrics
    from feedops.worker.pipeline import Pipeline, TickQueue
    from feedops.worker.sinks import open_sink
    from feedops.worker.ticks import Normaliser
    from feedops.worker.tuning import tune_interpreter

    cls, kind = _struct_class()
    structs = make_structs(cls)
    tune_interpreter()  # as the worker and its writer run: start-up objects frozen, collections rare
    n = len(structs)
    size = _depth_size()
    out: dict[str, float] = {}

    # the callback, and the floor: one copy of the struct's bytes (best of 3 passes: a shared machine)
    string_at = ctypes.string_at
    out["callback"] = out["raw_copy"] = float("inf")
    for _ in range(3):
        queue = TickQueue(n)
        offer = queue.offer
        out["callback"] = min(out["callback"], _timed(lambda: [offer(s) for s in structs])[0])
        if hasattr(structs[0], "this"):
            out["raw_copy"] = min(out["raw_copy"], _timed(lambda: [string_at(int(s.this), size) for s in structs])[0])

    book = InstrumentBook()
    normaliser = Normaliser(TradingCalendar("exchange", set()), book.exchange_of)
    sink = _Collect()
    pipeline = Pipeline(queue, normaliser, _deduper(book), book, sink, WorkerMetrics("bench"))

    def drain() -> None:
        while len(queue):
            if hasattr(pipeline, "process_next"):  # in place in the ring, as the pipeline does
                pipeline.process_next()
            else:
                pipeline.process(pipeline._take())

    out["decode_normalise_dedupe"] = _timed(drain)[0]
    published = sum(len(b) for b in sink.batches)
    if "send_bytes" in inspect.getsource(writer_mod.SinkWriter.submit):  # the records' bytes go as they are
        import numpy as np

        # the worker's copy is the pipe write's (timed here as one copy of the bytes); the writer's the read's
        spent, blobs = _timed(lambda: [np.ascontiguousarray(b).view(np.uint8).tobytes() for b in sink.batches])
        out["handover_worker"] = spent
        dtype = sink.batches[0].dtype
        spent, batches = _timed(lambda: [np.frombuffer(bytes(b), dtype=dtype) for b in blobs])
    else:  # pickled, as the engines before did
        spent, blobs = _timed(lambda: [pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL) for b in sink.batches])
        out["handover_worker"] = spent
        spent, batches = _timed(lambda: [pickle.loads(b) for b in blobs])
    out["handover_writer"] = spent
    # the file sink's rows: one text per batch where the engine has it (the writer hands the file sink those)
    encode_mod = __import__("feedops.worker.encode", fromlist=["encode"])
    rows_of = getattr(encode_mod, "text_rows_of_records", writer_mod.rows_of)
    spent, rows = _timed(lambda: [rows_of(b) for b in batches])
    out["encode"] = spent

    tmp = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    try:
        config = writer_mod.SinkConfig(f"file:{tmp}", "feedops:md", 1000, 1_000_000, (0, 1))
        file_sink = open_sink(config, (0, 1))
        file_sink.use_rows()
        file_sink.open()
        accountant = writer_mod.Accountant(LATENCY_BUCKETS)
        spent, _ = _timed(lambda: [accountant.account(file_sink.publish(r)) for r in rows])
        out["write"] = spent
        file_sink.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    per_tick = {k: v / n * 1e6 for k, v in out.items() if k in ("callback", "raw_copy")}
    per_tick.update({k: v / max(published, 1) * 1e6 for k, v in out.items() if k not in per_tick})
    per_tick["ticks"] = n
    per_tick["published"] = published
    return kind, per_tick


#: openctp-ctp's director method, what CTP's thread calls for a tick (an exported symbol of the binding).
DIRECTOR_SYMBOL = "_ZN28SwigDirector_CThostFtdcMdSpi20OnRtnDepthMarketDataEP30CThostFtdcDepthMarketDataField"


def director_callback(n: int = 40_000) -> float:
    """CPU us per tick of the callback as production runs it: a native thread (bench/native_thread.c, compiled
    here with feedops.buildext's flags) calls the binding's director method for OnRtnDepthMarketData on a real
    struct, n times: the interpreter lock taken on a thread Python never made, the struct's proxy built, the
    worker's SPI method run (TickQueue.offer). Checks that every call reached the queue with the struct's bytes."""
    import subprocess
    import sys
    import sysconfig
    from types import SimpleNamespace

    from feedops.buildext import CFLAGS
    from feedops.worker.callbacks import md_spi_class
    from feedops.worker.pipeline import TickQueue

    cls, _ = _struct_class()
    binding = sys.modules[cls.__module__.rpartition(".")[0] + "._thostmduserapi"]
    director = ctypes.cast(getattr(ctypes.CDLL(binding.__file__), DIRECTOR_SYMBOL), ctypes.c_void_p).value
    tmp = Path(tempfile.mkdtemp(prefix="bench-native-"))
    try:
        helper_path = tmp / ("native_thread" + sysconfig.get_config_var("SHLIB_SUFFIX"))
        subprocess.run(["gcc", *CFLAGS, "-shared", "-fPIC", str(Path(__file__).with_name("native_thread.c")), "-o",
                        str(helper_path)], check=True, capture_output=True, text=True)
        helper = ctypes.CDLL(str(helper_path))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    call = helper.call_on_native_thread
    call.restype = ctypes.c_double
    call.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_long]
    queue = TickQueue(n)
    spi = md_spi_class(sys.modules[cls.__module__].CThostFtdcMdSpi)(
        SimpleNamespace(events=SimpleNamespace(put=lambda event: None), on_depth=queue.offer))
    struct = make_structs(cls)[0]
    best = float("inf")
    for _ in range(3):  # best of 3, as the callback above
        queue.head = queue.tail = queue.received = 0
        spent = call(director, int(spi.this), int(struct.this), n)
        if spent < 0:
            raise RuntimeError("could not start a native thread")
        if queue.received != n or queue.ring[0]["InstrumentID"] != struct.InstrumentID.encode():
            raise RuntimeError(f"the director reached the queue {queue.received} times of {n}")
        best = min(best, spent)
    return best / n * 1e6


def profile(emit: Callable[[str], None], top: int = 8) -> None:
    """cProfile of the two heaviest stages (the writer's encode, the worker's decode/normalise/dedupe): where
    the time of a tick goes, by function."""
    import cProfile
    import io
    import pstats

    from feedops.calendar import TradingCalendar
    from feedops.worker import writer as writer_mod
    from feedops.worker.book import InstrumentBook
    from feedops.worker.metrics import WorkerMetrics
    from feedops.worker.pipeline import Pipeline, TickQueue
    from feedops.worker.ticks import Normaliser

    cls, _ = _struct_class()
    structs = make_structs(cls)
    queue = TickQueue(len(structs))
    for s in structs:
        queue.offer(s)
    book = InstrumentBook()
    sink = _Collect()
    pipeline = Pipeline(queue, Normaliser(TradingCalendar("exchange", set()), book.exchange_of), _deduper(book), book,
                        sink, WorkerMetrics("bench"))
    for name, work in (("worker: decode/normalise/dedupe", lambda: [pipeline.process(pipeline._take())
                                                                     for _ in range(len(queue) // 1000 + 1)]),
                       ("writer: encode", lambda: [writer_mod.rows_of(b) for b in sink.batches])):
        prof = cProfile.Profile()
        prof.runcall(work)
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
        emit(f"profile of {name} ({len(structs):,} ticks; tottime = time in the function itself):")
        for line in out.getvalue().splitlines():
            if line.strip() and not line.lstrip().startswith(("Ordered", "List reduced")) and "function calls" not in line:
                emit("    " + line.rstrip())


def _director_in_a_process() -> tuple[float | None, str]:
    """:func:`director_callback` in a process of its own (a native thread calling into the binding: a crash there
    must not take the benchmark with it); (us per tick, or None and why)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, __file__, "--director"], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    return float(done.stdout.split()[-1]), ""


def report(emit: Callable[[str], None]) -> dict[str, float]:
    kind, t = measure()
    emit(f"in-process stages on {t['ticks']:,.0f} ticks ({kind}; CPU us per tick, this thread):")
    emit(f"  callback (TickQueue.offer) {t['callback']:6.2f} us   a copy in Python (string_at of the struct) "
         f"{t['raw_copy']:5.2f} us   (target callback <= 1 us)")
    director, why = _director_in_a_process()
    if director is None:
        emit(f"  callback on CTP's thread (native thread -> openctp-ctp's director -> TickQueue.offer): not measured ({why})")
    else:
        t["director"] = director
        emit(f"  callback on CTP's thread (native thread -> openctp-ctp's director -> TickQueue.offer) {director:5.2f} us   "
             "(what production runs per tick; the thread state kept: feedops.worker.callbacks.keep_thread_state)")
    worker = t["callback"] + t["decode_normalise_dedupe"] + t["handover_worker"]
    writer = t["handover_writer"] + t["encode"] + t["write"]
    emit(f"  worker: callback {t['callback']:5.2f} + decode/normalise/dedupe {t['decode_normalise_dedupe']:5.2f} "
         f"+ hand-over {t['handover_worker']:5.2f} = {worker:5.2f} us")
    emit(f"  writer: hand-over {t['handover_writer']:5.2f} + encode {t['encode']:5.2f} + write {t['write']:5.2f} "
         f"= {writer:5.2f} us   (worker + writer {worker + writer:5.2f} us per published tick)")
    return t


if __name__ == "__main__":
    import os
    import sys

    root = Path(__file__).resolve().parents[1]
    if not os.environ.get("PYTHONPATH"):
        sys.path.insert(0, str(root / "lib"))
    from feedops.paths import bootstrap_locpath

    if bootstrap_locpath():  # before feedops.sim imports the openctp-ctp structs
        os.environ.setdefault("LOCPATH", bootstrap_locpath())
    if "--director" in sys.argv:  # alone, in a process of its own: see report()
        print(f"{director_callback():.3f}")
        sys.exit(0)
    report(print)
    if "--profile" in sys.argv:
        profile(print)
