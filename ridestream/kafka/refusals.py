"""Why the cluster refused a client: credentials, TLS trust, ACLs, or a protocol mismatch.

librdkafka reports a refused handshake on the client's error callback or only in its log, while
the call that waited for the cluster just times out. The clients' callbacks here keep the last
refusal and hint so that error can say why; services stop on refusals (no retry cures them).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from confluent_kafka import KafkaError, KafkaException

librdkafka_logger = logging.getLogger("ridestream.librdkafka")

# What no retry cures: the cluster refused the client's credentials or its principal's rights.
REFUSALS = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    }
)
_last_refusal: list[str] = []
# A plaintext client on a TLS listener is only ever told "transport failure"; librdkafka's log
# line is the one clue (the broker hangs up before answering the first request).
PLAINTEXT_ON_TLS_HINT = (
    "the broker closed every connection before its first answer: is this client speaking "
    "plaintext to a TLS listener? (security.protocol, RIDESTREAM_KAFKA_CONFIG_FILE)"
)
TLS_WITHOUT_SASL_HINT = (
    "the broker hung up as soon as TLS was up: does its listener expect SASL? "
    "(security.protocol=SASL_SSL, sasl.mechanism, sasl.username, sasl.password)"
)
_hints: list[str] = []
_HUNG_UP_AFTER_TLS = re.compile(r"SSL connection closed by peer \(after \d{1,3}ms in state UP")


class _LibrdkafkaLog(logging.LoggerAdapter[logging.Logger]):
    """librdkafka's log lines into ``ridestream.librdkafka``, watched for a refused handshake
    whatever the level logged."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        message = str(msg) % args if args else str(msg)
        if "in state APIVERSION_QUERY" in message:
            _hints[:] = [PLAINTEXT_ON_TLS_HINT]
        elif _HUNG_UP_AFTER_TLS.search(message):
            _hints[:] = [TLS_WITHOUT_SASL_HINT]
        self.logger.log(level, "%s", message)


librdkafka_log = _LibrdkafkaLog(librdkafka_logger)


def log_client_error(error: Any) -> None:
    """librdkafka's error callback: logged, and a refusal kept to explain a timeout."""
    # Transient by design (librdkafka retries); fatal ones also surface on the calls themselves.
    # Connection failures are already in librdkafka's own log line: don't say them twice.
    code = getattr(error, "code", lambda: None)()
    if code in REFUSALS:
        _last_refusal[:] = [str(error.str())]
    transient = code in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)
    librdkafka_logger.log(
        logging.DEBUG if transient else logging.WARNING, "kafka client error: %s", error
    )


def refusal(exc: BaseException, *, reported: bool = True) -> str | None:
    """Why the cluster refused a client, if ``exc`` says it did (or, with ``reported``, the
    client's last reported error: a handshake refused while the call only timed out)."""
    if not isinstance(exc, KafkaException):
        return None
    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError) and error.code() in REFUSALS:
        return str(error.str())
    return _last_refusal[0] if reported and _last_refusal else None


def forget() -> None:
    """Start a new wait for the cluster: earlier refusals and hints are not its."""
    _last_refusal.clear()
    _hints.clear()


def hint() -> str | None:
    """What the log suggests went wrong, if anything did."""
    return _hints[0] if _hints else None
