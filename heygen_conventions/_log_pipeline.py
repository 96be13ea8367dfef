"""The processor chain behind ``configure_logging``, shared by structlog and stdlib records.

A structlog event and a standard-library record enter the same list of
processors (the record as a dict built from it) and leave as one rendered
line written by one :class:`Output`. Everything here is on the hot path of
every log call, so each step is a single plain function or callable object;
nothing in it raises to the caller.
"""

from __future__ import annotations

import io
import logging
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from typing import IO, TYPE_CHECKING, Any, cast

import orjson
import structlog
from structlog.contextvars import merge_contextvars
from structlog.dev import ConsoleRenderer, plain_traceback
from structlog.exceptions import DropEvent
from structlog.processors import ExceptionRenderer, StackInfoRenderer
from structlog.tracebacks import ExceptionDictTransformer

from heygen_conventions._context import get_request_context, was_logged
from heygen_conventions._redact import _MAX_CLEAN_LENGTH, Redactor, safe_repr

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor, WrappedLogger

LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}
# structlog method names that are not level names.
_LEVEL_FOR_METHOD = {"warn": "warning", "exception": "error", "fatal": "critical", "msg": "info"}

#: The access line :class:`RequestContextMiddleware` writes at the end of each request.
ACCESS_LOGGER = "heygen_conventions.access"
ACCESS_EVENT = "request finished"
# The keys the access line adds to the request context (service aside).
_ACCESS_KEYS = ("logger", "status_code", "duration_ms", "error", "event", "level", "timestamp")
# The keys RequestContextMiddleware binds for every request.
_MIDDLEWARE_KEYS = ("request_id", "method", "path", "client")
# The integers orjson writes as numbers.
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1
# Keys the access line sets, or that the chain renders its own way: bound in
# the request context, they send the line through the chain.
_LINE_KEYS = frozenset({*_MIDDLEWARE_KEYS, *_ACCESS_KEYS, "exc_info", "stack_info"})


# uvicorn's loggers, whose exception lines repeat what the library logged.
_SERVER_LOGGER = "uvicorn"
# uvicorn's access line: '%s - "%s %s HTTP/%s" %d' % (client, method, path?query, version, status).
_SERVER_ACCESS_LOGGER = "uvicorn.access"

#: Marks the handler ``configure_logging`` installs, so a second call replaces it.
HANDLER_MARK = "_heygen_conventions_handler"


class CurrentStandardError:
    """``sys.stderr`` as it is when a line is written (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


_OUTPUTS: weakref.WeakSet[Output] = weakref.WeakSet()


def _outputs_after_fork() -> None:
    # A thread of the parent may have been mid-line: its lock is held in the child for good.
    for output in list(_OUTPUTS):
        output._lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(after_in_child=_outputs_after_fork)


class Output:
    """One stream, one lock, whole lines: structlog and stdlib lines never interleave."""

    def __init__(self, stream: IO[str] | IO[bytes] | CurrentStandardError | None) -> None:
        self._lock = threading.Lock()
        _OUTPUTS.add(self)
        self.isatty = False
        self._binary: IO[bytes] | None = None
        self._text: IO[str] | None = None
        self._fd: int | None = None  # the binary stream's file descriptor, when it is a file's
        self._text_above: IO[str] | None = None  # a block-buffered text layer over _binary
        # Held so that a text stream given inline (``stream=open(path, "a")``)
        # is not collected, and its finaliser does not close the buffer written to.
        self._stream = stream
        if stream is None:  # discard: capture_logs() without a configured pipeline
            return
        try:
            self.isatty = bool(stream.isatty())
        except Exception:
            self.isatty = False
        if isinstance(stream, io.TextIOBase):
            buffer = getattr(stream, "buffer", None)
            if isinstance(buffer, io.BufferedIOBase | io.RawIOBase):
                # Write under the text layer: orjson renders bytes.
                with suppress(ValueError, OSError):
                    stream.flush()
                self._binary = cast("IO[bytes]", buffer)
                if not getattr(stream, "line_buffering", True) and not getattr(
                    stream, "write_through", True
                ):
                    # What the application wrote to the text layer waits there (a
                    # file opened with "w", a redirected stdout; stderr writes
                    # through): it goes out before each line.
                    self._text_above = cast("IO[str]", stream)
            else:
                self._text = cast("IO[str]", stream)
        elif isinstance(stream, io.BufferedIOBase | io.RawIOBase) or "b" in str(
            getattr(stream, "mode", "")
        ):
            self._binary = cast("IO[bytes]", stream)
        else:
            self._text = cast("IO[str]", stream)
        binary = self._binary
        raw = binary.raw if isinstance(binary, io.BufferedWriter) else binary
        if type(raw) is io.FileIO:
            # A plain blocking file, pipe or terminal (not a socket: TLS and
            # timeouts live above its descriptor): one write(2) per line instead
            # of a copy into the buffer and a flush.
            with suppress(ValueError, OSError):
                fd = raw.fileno()
                if os.get_blocking(fd):
                    self._fd = fd

    def write(self, line: str | bytes) -> None:
        try:
            if self._binary is not None:
                data = line if isinstance(line, bytes) else line.encode("utf-8", "backslashreplace")
                self.write_line(data + b"\n")
            elif self._text is not None:
                text = line if isinstance(line, str) else line.decode("utf-8", "backslashreplace")
                with self._lock:
                    self._text.write(text + "\n")
                    self._text.flush()
        except Exception:
            # Closed or broken stream (interpreter shutdown, a closed pipe, no
            # sys.stderr under pythonw): there is nowhere left to report it,
            # and logging must not raise.
            return

    def write_line(self, data: bytes) -> None:
        """``data``, one line ending in a newline, written whole. Never raises."""
        binary = self._binary
        if binary is None:
            if self._text is not None:
                self.write(data[:-1])
            return
        try:
            # Always under the lock: a write(2) longer than PIPE_BUF that finds a
            # pipe full goes in pieces, and a lock-free short line would land
            # between them (as would one whose own write was cut short).
            # ``with``, not acquire() then try/finally: an exception a signal
            # handler raises (KeyboardInterrupt) lands at the first check after
            # acquire() returns, before the try, and would leave the lock held
            # for good; ``with`` leaves no such gap.
            with self._lock:
                # What the application wrote to the same file goes first. On a
                # closed file this raises: its descriptor may belong to another
                # file by now.
                text_above = self._text_above
                if text_above is not None:
                    text_above.flush()  # the buffer under it too
                fd = self._fd
                if fd is None:
                    binary.write(data)
                    binary.flush()
                    return
                if text_above is None:
                    binary.flush()
                written = os.write(fd, data)
                while written < len(data):  # a signal can cut a large write short
                    data = data[written:]
                    written = os.write(fd, data)
        except Exception:
            return  # as in write()


class StreamLogger:
    """What structlog's bound loggers hand their rendered line to.

    One instance lives for the whole process and is pointed at each new
    pipeline, so a logger bound before ``configure_logging`` writes where the
    latest configuration says.
    """

    __slots__ = ("_write", "pipeline")

    def __init__(self, pipeline: Pipeline) -> None:
        self.retarget(pipeline)

    def retarget(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._write = pipeline.output.write

    def msg(self, message: str | bytes) -> None:
        self._write(message)

    debug = info = warning = warn = error = exception = critical = fatal = log = msg


# --- processors -------------------------------------------------------------------

# structlog keeps its contextvars in a registry, one variable per key ever bound.
_STRUCTLOG_VARS: Mapping[str, Any] | None = getattr(structlog.contextvars, "_CONTEXT_VARS", None)


def structlog_context_bound() -> bool:
    """Whether structlog's contextvars hold a value here (what ``merge_contextvars`` adds).

    A key once bound keeps its variable for good, set to ``...`` when cleared
    or outside the context that bound it: asking each variable costs a lookup
    a key, where ``merge_contextvars`` walks every variable of the context.
    Without structlog's registry (another version), always True.
    """
    if _STRUCTLOG_VARS is None:
        return True
    try:
        # A snapshot: another thread may bind a new key meanwhile.
        variables = tuple(_STRUCTLOG_VARS.values())
    except RuntimeError:  # pragma: no cover - changed size mid-copy (no GIL): assume bound
        return True
    for var in variables:  # noqa: SIM110 - no generator per line
        if var.get() is not Ellipsis:
            return True
    return False


_PREFIX_LENGTH = len(getattr(structlog.contextvars, "STRUCTLOG_KEY_PREFIX", "structlog_"))


def merge_structlog_context(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """Add what structlog's contextvars hold here, as ``merge_contextvars`` does.

    The event's own keys win. Read from structlog's registry, a lookup a key
    ever bound, rather than by walking every variable of the context (those of
    other libraries too); the keys come in the order they were first bound,
    where the walk's order changes from one process to the next. A variable
    named like structlog's but made outside its registry (by hand) is not
    merged.
    """
    if _STRUCTLOG_VARS is None:  # another structlog version: its own way
        return merge_contextvars(logger, method_name, event_dict)
    if _STRUCTLOG_VARS:
        try:
            # A snapshot: another thread may bind a new key meanwhile.
            variables = tuple(_STRUCTLOG_VARS.items())
        except RuntimeError:  # pragma: no cover - changed size mid-copy (no GIL)
            return merge_contextvars(logger, method_name, event_dict)
        for name, var in variables:
            value = var.get()
            if value is not Ellipsis:
                event_dict.setdefault(name[_PREFIX_LENGTH:], value)
    return event_dict


def merge_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Merge the request context and structlog contextvars; the event's own keys win."""
    context = get_request_context()
    if context:
        # A copy: a threadpool dependency may bind into the same dict meanwhile.
        merged = context.copy()
        merged.update(event_dict)
        event_dict = merged
    if _STRUCTLOG_VARS is None or _STRUCTLOG_VARS:
        event_dict = merge_structlog_context(logger, method_name, event_dict)
    return event_dict


class RenderExceptions:
    """``exc_info`` as a structured traceback (no frame locals); ``stack_info`` as text."""

    def __init__(self, *, structured: bool) -> None:
        self._stack = StackInfoRenderer(additional_ignores=["heygen_conventions"])
        self._exceptions = (
            ExceptionRenderer(ExceptionDictTransformer(show_locals=False, use_rich=False))
            if structured
            else None
        )

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if "stack_info" in event_dict:
            event_dict = self._stack(logger, method_name, event_dict)
        if self._exceptions is not None and "exc_info" in event_dict:
            event_dict = self._exceptions(logger, method_name, event_dict)
        return event_dict


# The fraction of a second as two table lookups: cheaper than formatting an int.
_DIGITS = tuple("%03d" % n for n in range(1000))  # noqa: UP031
_DIGITS_Z = tuple("%03dZ" % n for n in range(1000))  # noqa: UP031
# Numbers below 1,000 as text (a status code, a duration's whole milliseconds):
# a lookup costs less than formatting an int.
_NUMBERS = tuple(str(n) for n in range(1000))
# A duration's milliseconds after the point, as orjson writes the float
# ``us / 1000``: trailing zeros dropped, at least one digit (".5", ".25", ".0").
_FRACTIONS = tuple(("." + "%03d" % n).rstrip("0").ljust(2, "0") for n in range(1000))  # noqa: UP031
# The access line's JSON text for a method, path or client address the
# redactor leaves as it is; cleared when full (paths holding ids are new on
# every request, methods and hot paths are back at once).
_JSON_TEXTS_SIZE = 1024
# The current second: its start and end (``time.time()`` floats) and its text up
# to the decimal point.
_clock: tuple[float, float, str] = (0.0, 0.0, "")


def _second_of(now: float) -> tuple[float, float, str]:
    global _clock
    second = now // 1.0
    text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
    _clock = clock = (second, second + 1.0, text)
    return clock


def iso_timestamp(now: float) -> str:
    """``now`` (``time.time()``) as ISO 8601 UTC with microseconds.

    strftime runs once a second, not per line; the microseconds come from
    two table lookups rather than integer formatting.
    """
    start, end, text = _clock
    if not start <= now < end:
        start, end, text = _second_of(now)
    micros = math.floor((now - start) * 1_000_000.0)
    if micros > 999_999:  # pragma: no cover - a fraction a hair below 1 rounded up
        micros = 999_999
    millis = micros // 1000
    return f"{text}{_DIGITS[millis]}{_DIGITS_Z[micros - millis * 1000]}"


class Finish:
    """``level``, ``timestamp`` and the static fields (``service``)."""

    def __init__(self, static: Mapping[str, Any]) -> None:
        self._static = tuple(static.items())

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        event_dict["level"] = _LEVEL_FOR_METHOD.get(method_name, method_name)
        stamp = event_dict.get("timestamp")
        if stamp is None:
            event_dict["timestamp"] = iso_timestamp(time.time())
        elif type(stamp) is float:  # a stdlib record's ``created``
            event_dict["timestamp"] = iso_timestamp(stamp)
        for key, value in self._static:
            event_dict.setdefault(key, value)
        return event_dict


# C0 and C1 control characters (ANSI escapes, newlines) shown escaped on a terminal.
_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}
# A traceback is lines of text: its newlines and indentation stay, while the
# rest (``\r``, ANSI escapes from an exception message quoting input) cannot
# rewrite what the terminal already shows.
_TRACEBACK_ESCAPES = {
    code: escape for code, escape in _CONTROL_ESCAPES.items() if chr(code) not in "\n\t"
}


# Keys the console renderer prints as blocks of lines below the line itself.
_MULTILINE_KEYS = frozenset({"stack", "exception"})


def escape_controls(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    for key, value in event_dict.items():
        if type(value) is str:
            event_dict[key] = value.translate(
                _TRACEBACK_ESCAPES if key in _MULTILINE_KEYS else _CONTROL_ESCAPES
            )
    return event_dict


#: Lists receiving every processed event while ``capture_logs()`` is active.
CAPTURES: list[list[dict[str, Any]]] = []


class Render:
    """The last processor: hands the event to active captures, then renders it."""

    def __init__(self, redactor: Redactor, console: ConsoleRenderer | None) -> None:
        self._default = redactor.json_default
        self._console = console

    def __call__(
        self, logger: WrappedLogger, method_name: str, event_dict: EventDict
    ) -> str | bytes:
        if CAPTURES:
            snapshot = dict(event_dict)
            for events in CAPTURES:
                events.append(snapshot)
        if self._console is not None:
            try:
                # A copy: the renderer pops keys before it may fail on a repr().
                return self._console(logger, method_name, dict(event_dict))
            except Exception:
                return self._console(logger, method_name, console_safe(event_dict))
        return dumps(event_dict, self._default)


def console_safe(event_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``event_dict`` with every value the console renderer may fail on as its safe repr."""
    return {
        key: value
        if key == "exc_info" or type(value) in (str, int, float, bool, type(None))
        else safe_repr(value)
        for key, value in event_dict.items()
    }


def dumps(event_dict: Mapping[str, Any], default: Callable[[Any], Any], option: int = 0) -> bytes:
    try:
        return orjson.dumps(event_dict, default=default, option=option)
    except TypeError:  # orjson.JSONEncodeError: surrogates, huge ints, odd keys, depth
        return orjson.dumps(json_safe(event_dict, default, 0), default=default, option=option)


def json_safe(value: Any, default: Callable[[Any], Any], depth: int) -> Any:
    """``value`` rebuilt from what orjson always accepts."""
    kind = type(value)
    if kind is str:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if kind is int:
        return value if -(2**63) <= value < 2**64 else str(value)
    if kind is float or kind is bool or value is None:
        return value
    if depth > 32:
        return "[TOO DEEP]"
    if isinstance(value, Mapping):
        return {
            # A str subclass (a StrEnum member) as its text: orjson takes no other key.
            json_safe(str.__str__(k) if isinstance(k, str) else safe_repr(k), default, depth): (
                json_safe(v, default, depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [json_safe(item, default, depth + 1) for item in value]
    try:
        orjson.dumps(value)
    except TypeError:
        return json_safe(default(value), default, depth + 1)
    return value


def scrubbed_traceback(redactor: Redactor) -> Callable[[Any, Any], None]:
    """Console tracebacks: structlog's plain text (never locals), scrubbed, controls escaped."""

    def write_traceback(sio: Any, exc_info: Any) -> None:
        buffer = io.StringIO()
        plain_traceback(buffer, exc_info)
        sio.write(redactor.scrub(buffer.getvalue()).translate(_TRACEBACK_ESCAPES))

    return write_traceback


# --- standard-library records -----------------------------------------------------------

# Attributes every LogRecord has, plus the ones formatters add; anything else
# on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's coloured duplicate of the message
    "_logger",
    "_name",
}


def without_query_string(record: logging.LogRecord) -> logging.LogRecord:
    """uvicorn's access record with its path cut at ``?`` (a copy): query strings carry tokens."""
    args = record.args
    if type(args) is not tuple or len(args) != 5 or type(args[2]) is not str or "?" not in args[2]:
        return record
    copy = logging.makeLogRecord(record.__dict__)
    copy.args = (*args[:2], args[2].partition("?")[0], *args[3:])
    return copy


def record_event(record: logging.LogRecord) -> dict[str, Any]:
    """The event dict a stdlib record enters the chain as: ``extra=`` fields become keys."""
    event_dict: dict[str, Any] = {"logger": record.name, "event": record.getMessage()}
    attributes = record.__dict__
    # In the order given (a set difference would order them by hash, differently
    # in each process); no slower for a record's two dozen attributes.
    for key in attributes:
        if key not in _RECORD_ATTRIBUTES:
            event_dict.setdefault(key, attributes[key])
    if record.exc_info:
        event_dict["exc_info"] = record.exc_info
    if record.stack_info:
        event_dict["stack"] = record.stack_info
    # Rendered by Finish, after redaction: a unique string per line is wasted scrubbing.
    event_dict["timestamp"] = record.created
    return event_dict


# --- bound loggers that never raise -----------------------------------------------------


def _safe_proxy_to_logger(
    self: Any, method_name: str, event: str | None = None, **event_kw: Any
) -> Any:
    try:
        args, kw = self._process_event(method_name, event, event_kw)
        return getattr(self._logger, method_name)(*args, **kw)
    except DropEvent:
        return None
    except Exception as exc:
        pipeline = getattr(self._logger, "pipeline", None)
        if pipeline is not None:
            pipeline.report_failure(self._context.get("logger"), method_name, event, exc)
        return None


def _interpolated(event: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
    try:
        if len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
            return event % args[0]
        return event % args
    except Exception:
        # A format string that does not match its arguments loses nothing.
        kw.setdefault("positional_args", args)
        return event


def _level_method(name: str) -> Callable[..., Any]:
    def method(self: Any, event: Any, *args: Any, **kw: Any) -> Any:
        if args:
            event = _interpolated(event, args, kw)
        return self._proxy_to_logger(name, event, **kw)

    method.__name__ = name
    return method


def _level_name(level: int) -> str:
    """The method name for ``level``: a custom level takes the nearest one below it."""
    name = LEVEL_NAMES.get(level)
    if name is None:
        known = [number for number in LEVEL_NAMES if number <= level]
        name = LEVEL_NAMES[max(known)] if known else "debug"
    return name


def _log_method(min_level: int) -> Callable[..., Any]:
    def log(self: Any, level: int, event: Any, *args: Any, **kw: Any) -> Any:
        if level < min_level:
            return None
        name = _level_name(level)
        if args:
            event = _interpolated(event, args, kw)
        return self._proxy_to_logger(name, event, **kw)

    return log


def _nop(self: Any, event: Any = None, *args: Any, **kw: Any) -> None:
    return None


async def _anop(self: Any, event: Any = None, *args: Any, **kw: Any) -> None:
    return None


def _async_level_method(name: str) -> Callable[..., Any]:
    # structlog's own formats ``event % args`` in the caller, unguarded: a
    # format string that does not match its arguments raised into the application.
    unfiltered = getattr(_UNFILTERED, f"a{name}")  # once, not per call

    def method(self: Any, event: Any, *args: Any, **kw: Any) -> Any:
        if args:
            event = _interpolated(event, args, kw)
        return unfiltered(self, event, **kw)

    method.__name__ = f"a{name}"
    return method


def _alog_method(min_level: int) -> Callable[..., Any]:
    def alog(self: Any, level: int, event: Any, *args: Any, **kw: Any) -> Any:
        if level < min_level:
            return _anop(self, event)
        # structlog's alog raises KeyError for a level that is not one of its five.
        return _ASYNC_LEVEL_METHODS[_level_name(level)](self, event, *args, **kw)

    return alog


# structlog's bound logger with every method on: the async ones and
# ``exception`` (which calls ``error``) are taken from it.
_UNFILTERED: Any = structlog.make_filtering_bound_logger(logging.NOTSET)
_LEVEL_METHODS = {name: _level_method(name) for name in LEVEL_NAMES.values()}
_ASYNC_LEVEL_METHODS = {name: _async_level_method(name) for name in LEVEL_NAMES.values()}
_ALIASES = (("fatal", "critical"), ("warn", "warning"), ("msg", "info"))
_SAFE_BOUND_LOGGER: type[Any] = type(
    "SafeFilteringBoundLogger", (_UNFILTERED,), {"_proxy_to_logger": _safe_proxy_to_logger}
)


def wrapper_class(level: int) -> type[Any]:
    """structlog's filtering bound logger, whose calls never raise, set to filter at ``level``.

    One class whose methods are swapped on each call rather than a class per
    level: a logger bound before ``configure_logging`` (``get_logger(...).bind()``
    at import time, a ``structlog.get_logger()`` cached on first use) follows
    the level configured later, as the loggers ``get_logger`` returns do.
    """
    cls = _SAFE_BOUND_LOGGER
    for number, name in LEVEL_NAMES.items():
        active = number >= level
        setattr(cls, name, _LEVEL_METHODS[name] if active else _nop)
        setattr(cls, f"a{name}", _ASYNC_LEVEL_METHODS[name] if active else _anop)
    for alias, target in _ALIASES:
        setattr(cls, alias, getattr(cls, target))
        setattr(cls, f"a{alias}", getattr(cls, f"a{target}"))
    cls.log = _log_method(level)
    cls.alog = _alog_method(level)
    cls.is_enabled_for = lambda self, number: number >= level
    cls.get_effective_level = lambda self: level
    return cls


# --- the pipeline ---------------------------------------------------------------------


class Pipeline:
    """The processors, the output and the root handler of one ``configure_logging`` call."""

    def __init__(
        self,
        *,
        output: Output,
        level: int,
        json: bool,
        service: str | None,
        redact: Iterable[str],
        processors: Sequence[Processor],
    ) -> None:
        self.output = output
        self.level = level
        self.json = json
        self.redactor = redactor = Redactor(redact)
        console = (
            None
            if json
            else ConsoleRenderer(
                colors=output.isatty, exception_formatter=scrubbed_traceback(redactor)
            )
        )
        static = {"service": service} if service is not None else {}
        self.processors: list[Processor] = [
            merge_context,
            *processors,
            RenderExceptions(structured=json),
            redactor,
            Finish(static),
        ]
        if console is not None:
            self.processors.append(escape_controls)
        self.processors.append(Render(redactor, console))
        self._after_merge = tuple(self.processors[1:])
        self._static = tuple(static.items())
        self._direct_access = (
            json and not processors and not any(redactor.is_secret_key(key) for key in _ACCESS_KEYS)
        )
        self._json_default = redactor.json_default
        # A request id under a secret key name is masked like any other value.
        self._request_id_secret = redactor.is_secret_key("request_id")
        self._template_access = (
            level <= logging.INFO
            and self._direct_access
            and _STRUCTLOG_VARS is not None
            and not any(redactor.is_secret_key(key) for key in _MIDDLEWARE_KEYS)
        )
        # The access line's keys in their order, the request's values left to fill in.
        fields = (*_MIDDLEWARE_KEYS, "logger", "status_code", "duration_ms")
        tail = {"event": ACCESS_EVENT, "level": "info", "timestamp": None}
        head = {**dict.fromkeys(fields), "logger": ACCESS_LOGGER}
        statics = {k: v for k, v in static.items() if k not in head and k not in tail}
        self._access_template: dict[str, Any] = {**head, **tail, **statics}
        self._error_template: dict[str, Any] = {**head, "error": None, **tail, **statics}
        # What follows ``timestamp`` on the line: the static fields, as JSON
        # rendered the chain's way (a service name read from the environment
        # can hold a surrogate, which orjson alone refuses).
        self._static_text = (
            "," + dumps(statics, self._json_default)[1:-1].decode() if statics else ""
        )
        self._json_texts: dict[str | None, str] = {None: "null"}
        self._key_texts: dict[str, str] = {}
        self._static_keys = frozenset(static)
        self.handler = Handler(self)

    def process(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
        """The whole chain as one structlog processor (what bound loggers hold)."""
        line: Any = event_dict
        for processor in self.processors:
            line = processor(logger, method_name, line)
        return line

    def access_line(
        self,
        context: Mapping[str, Any],
        status_code: int | None,
        duration_us: int,
        error: str | None = None,
        request_id: str | None = None,
        made_here: bool = False,
    ) -> None:
        """Write the middleware's access line for a request whose context is ``context``.

        ``duration_us`` is the request's duration in whole microseconds; the
        line gives it in milliseconds (``duration_ms``).

        ``error`` names the exception the application let out, if any (its
        response may have started with another status, then been cut short).
        ``request_id`` is the id the middleware made (``made_here``: random
        hex digits, nothing to mask) or checked: while the context holds that
        very string it is scrubbed on its own, without a place in the
        redactor's cache of clean strings (new on every request, it would
        only push out the strings that repeat).

        When the chain is the stock JSON one, the line is built directly: its
        own fields are plain and known to be clean, so only the context (which
        the application may have added to) goes through the redactor. When the
        request bound nothing more than the middleware did, or only keys of its
        own after them (``user_id``), and the values are None, strings the
        redactor leaves as they are or (bound later) bools and 64-bit ints, the
        line is one formatted string (the common case, new paths included);
        else a dict rendered with orjson.
        Each way, the result is the line the chain would render, byte for
        byte, delivered the same way (captures, output). Anything else takes
        :meth:`emit`. Never raises.
        """
        try:
            if (
                self._template_access
                and not CAPTURES
                and not (_STRUCTLOG_VARS and structlog_context_bound())
            ):
                keys = tuple(context)
                # The middleware's own four keys in its order, and nothing bound
                # since (``exact``) or only keys added after them (``user_id``).
                # A key removed and bound again comes last, as the chain
                # renders it: the order decides.
                exact = keys == _MIDDLEWARE_KEYS
                if exact or keys[:4] == _MIDDLEWARE_KEYS:
                    rid = context["request_id"]
                    method = context["method"]
                    path = context["path"]
                    client = context["client"]
                    # JSON texts of values the redactor leaves as they are.
                    texts = self._json_texts
                    if (
                        error is None
                        and rid is request_id
                        and request_id is not None
                        # A safe id (letters, digits, ``._-``) can hide a JWT and
                        # nothing else the redactor masks.
                        and (made_here or "eyJ" not in request_id)
                        and type(status_code) is int
                        and 0 <= status_code < 1000
                        and 0 <= duration_us < 1_000_000
                        and (method in texts or self._learn_json_text(method))
                        and (path in texts or self._learn_json_text(path))
                        and (client in texts or self._learn_json_text(client))
                    ):
                        bound = "" if exact else self._bound_json_text(context, keys)
                        if bound is not None:
                            # The chain's line as text: the id is letters, digits and
                            # ``._-``, the other strings come JSON-escaped from the table.
                            self.output.write_line(
                                f'{{"request_id":"{rid}","method":{texts[method]},'
                                f'"path":{texts[path]},"client":{texts[client]}{bound},'
                                f'"logger":"heygen_conventions.access",'
                                f'"status_code":{_NUMBERS[status_code]},'
                                f'"duration_ms":{_NUMBERS[duration_us // 1000]}'
                                f"{_FRACTIONS[duration_us % 1000]},"
                                f'"event":"request finished","level":"info",'
                                f'"timestamp":"{iso_timestamp(time.time())}"'
                                f"{self._static_text}}}\n".encode()
                            )
                            return
                    if exact and self._template_line(
                        rid,
                        method,
                        path,
                        client,
                        status_code,
                        duration_us,
                        error,
                        request_id,
                        made_here,
                    ):
                        return
        except Exception:  # noqa: S110 - the general path below reports what fails
            pass
        if self.level > logging.INFO:
            return
        if (
            not self._direct_access
            or structlog_context_bound()
            or "timestamp" in context
            or "exc_info" in context
            or "stack_info" in context
        ):
            event_dict = {
                **context,
                "logger": ACCESS_LOGGER,
                "status_code": status_code,
                "duration_ms": duration_us / 1000,
            }
            # Before the event, as the direct path and the template put it.
            if error is not None:
                event_dict["error"] = error
            event_dict["event"] = ACCESS_EVENT
            self.emit(logging.INFO, event_dict)
            return
        try:
            event_dict = {**context}
            if (
                request_id is not None
                and event_dict.get("request_id") is request_id
                and not self._request_id_secret
            ):
                event_dict["request_id"] = None  # in place: the key keeps its position
                self.redactor(None, "info", event_dict)
                # A safe id can still be a short JWT a client sent as its id.
                event_dict["request_id"] = (
                    request_id if made_here else self.redactor.scrub(cast("str", request_id))
                )
            else:
                self.redactor(None, "info", event_dict)
            event_dict["logger"] = ACCESS_LOGGER
            event_dict["status_code"] = status_code
            event_dict["duration_ms"] = duration_us / 1000
            if error is not None:
                event_dict["error"] = error
            event_dict["event"] = ACCESS_EVENT
            event_dict["level"] = "info"
            event_dict["timestamp"] = iso_timestamp(time.time())
            for key, value in self._static:
                event_dict.setdefault(key, value)
            if CAPTURES:
                snapshot = dict(event_dict)
                for events in CAPTURES:
                    events.append(snapshot)
            line = dumps(event_dict, self._json_default, orjson.OPT_APPEND_NEWLINE)
        except Exception as exc:
            self.report_failure(ACCESS_LOGGER, "info", ACCESS_EVENT, exc)
            return
        self.output.write_line(line)

    def _template_line(
        self,
        rid: Any,
        method: Any,
        path: Any,
        client: Any,
        status_code: int | None,
        duration_us: int,
        error: str | None,
        request_id: str | None,
        made_here: bool,
    ) -> bool:
        """Write the line of a context holding the middleware's four keys only from a template.

        For the lines the formatted string leaves (an error, an odd status or
        duration, an id the application bound) when the values are known
        clean; False, writing nothing, when they are not.
        """
        clean = self.redactor._clean
        old = self.redactor._clean_old
        if not (
            (method in clean or method in old)
            and (path in clean or path in old)
            and (client is None or client in clean or client in old)
            and (
                (
                    request_id is not None
                    and rid is request_id
                    and (made_here or "eyJ" not in request_id)
                )
                or rid in clean
                or rid in old
            )
        ):
            return False
        event_dict = (self._access_template if error is None else self._error_template).copy()
        event_dict["request_id"] = rid
        event_dict["method"] = method
        event_dict["path"] = path
        event_dict["client"] = client
        event_dict["status_code"] = status_code
        event_dict["duration_ms"] = duration_us / 1000
        event_dict["timestamp"] = iso_timestamp(time.time())
        if error is not None:
            event_dict["error"] = error
        try:
            line = orjson.dumps(event_dict, None, orjson.OPT_APPEND_NEWLINE)
        except TypeError:  # a surrogate in the path, an odd status
            line = dumps(event_dict, self._json_default, orjson.OPT_APPEND_NEWLINE)
        self.output.write_line(line)
        return True

    def _bound_json_text(self, context: Mapping[str, Any], keys: tuple[Any, ...]) -> str | None:
        """The keys bound after the middleware's, as the line's JSON text (``,"user_id":"u-1"``).

        None when one of them takes more than being written as it is: a key
        the redactor masks or the line sets itself, or a value other than
        None, a bool, an int orjson writes (64 bits) or a str the redactor
        leaves as it is.
        """
        key_texts = self._key_texts
        texts = self._json_texts
        parts = []
        for key in keys[4:]:
            # Only a str itself: the table is looked up by equality, and a str
            # subclass (a StrEnum member) equal to a key in it is not that key
            # to orjson, nor need its text be the same.
            key_text = key_texts.get(key) if type(key) is str else ""
            if key_text is None:
                key_text = self._learn_key_text(key)
            if not key_text:
                return None
            value = context[key]
            kind = type(value)
            if kind is str or value is None:
                # Not by equality for the others: True == 1 == 1.0.
                if value not in texts and not self._learn_json_text(value):
                    return None
                parts.append(f",{key_text}{texts[value]}")
            elif kind is int and _INT64_MIN <= value <= _UINT64_MAX:  # an integer id
                parts.append(f",{key_text}{value}")
            elif kind is bool:
                parts.append(f",{key_text}{'true' if value else 'false'}")
            else:
                return None
        return "".join(parts)

    def _learn_key_text(self, key: str) -> str:
        """``"key":`` for a key bound after the middleware's that is written as it is, else ""."""
        text = ""
        if (
            key not in _LINE_KEYS
            and key not in self._static_keys
            and not self.redactor.is_secret_key(key)
        ):
            with suppress(TypeError):  # a lone surrogate: the chain writes it its own way
                text = orjson.dumps(key).decode() + ":"
        key_texts = self._key_texts
        if len(key_texts) > _JSON_TEXTS_SIZE:
            key_texts.clear()
        key_texts[key] = text
        return text

    def _learn_json_text(self, value: object) -> bool:
        """Whether ``value`` goes on the access line as it is; if so its JSON text joins the table.

        True for a str the redactor leaves as it is (one a path may carry, a
        new one on every request when it holds an id) that has a JSON text (no
        lone surrogate), no longer than the strings the redactor's own cache
        keeps. Anything else takes the template or the chain.
        """
        if type(value) is not str or len(value) > _MAX_CLEAN_LENGTH:
            return False
        redactor = self.redactor
        if (
            value not in redactor._clean
            and value not in redactor._clean_old
            and redactor.scrub(value) != value
        ):
            return False
        try:
            text = orjson.dumps(value).decode()
        except TypeError:
            return False
        texts = self._json_texts
        if len(texts) > _JSON_TEXTS_SIZE:
            texts.clear()
            texts[None] = "null"
        texts[value] = text
        return True

    def emit(self, level: int, event_dict: dict[str, Any]) -> None:
        """Write ``event_dict``, which already holds the request context, without a bound logger.

        The same processors and output as a structlog call, minus the bound
        logger's per-call work and the context merge: for the line the
        library writes on every request (the middleware's access line), whose
        caller holds the context. Never raises.
        """
        if level < self.level:
            return
        method_name = LEVEL_NAMES[level]
        line: Any = event_dict
        try:
            if _STRUCTLOG_VARS is None or _STRUCTLOG_VARS:
                line = merge_structlog_context(None, method_name, line)
            for processor in self._after_merge:
                line = processor(None, method_name, line)
        except DropEvent:
            return
        except Exception as exc:
            self.report_failure(event_dict.get("logger"), method_name, event_dict.get("event"), exc)
            return
        self.output.write(line)

    def render_record(self, record: logging.LogRecord) -> str | bytes | None:
        """A stdlib record through the chain; None when a processor dropped it.

        The server's report of an exception the library already logged with
        its request ("Exception in ASGI application") is dropped too.
        """
        exc_info = record.exc_info
        if (
            exc_info
            and record.name.startswith(_SERVER_LOGGER)
            and type(exc_info) is tuple
            and was_logged(exc_info[1])
        ):
            return None
        if record.name == _SERVER_ACCESS_LOGGER:
            record = without_query_string(record)
        event_dict: Any = record_event(record)
        method_name = record.levelname.lower()
        try:
            for processor in self.processors:
                event_dict = processor(None, method_name, event_dict)
        except DropEvent:
            return None
        return cast("str | bytes", event_dict)

    def report_failure(
        self, logger_name: object, level: str, event: object, exc: BaseException
    ) -> None:
        """Write a minimal JSON line saying a log call failed (never raises)."""
        try:
            line = {
                "event": "Log call failed",
                "failed_logger": None if logger_name is None else str(logger_name),
                "failed_level": level,
                "failed_event": self.redactor.scrub(safe_repr(event))[:1000],
                "error_type": type(exc).__name__,
                "logger": "heygen_conventions.logging",
                "level": "error",
                "timestamp": iso_timestamp(time.time()),
            }
            self.output.write(orjson.dumps(json_safe(line, str, 0)))
        except Exception:  # pragma: no cover - the last resort must not raise either
            return


class Handler(logging.Handler):
    """The root handler: stdlib records rendered by the shared processors."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__()
        setattr(self, HANDLER_MARK, True)
        self.pipeline = pipeline

    def format(self, record: logging.LogRecord) -> str:
        line = self.pipeline.render_record(record)
        if line is None:
            return ""
        return line.decode("utf-8") if isinstance(line, bytes) else line

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: Output serialises whole lines itself.
        result = self.filter(record) if self.filters else True
        if result:
            self.emit(result if isinstance(result, logging.LogRecord) else record)
        return bool(result)

    def emit(self, record: logging.LogRecord) -> None:
        pipeline = self.pipeline
        try:
            line = pipeline.render_record(record)
        except Exception as exc:
            pipeline.report_failure(record.name, record.levelname.lower(), record.msg, exc)
            return
        if line is not None:
            pipeline.output.write(line)
