"""Connection options shared by every Kafka client the worker makes, built from the settings.

One place, so the consumer, the relay's producer and the admin client never disagree about
TLS or SASL.
"""

from __future__ import annotations

import ssl
from typing import Any

from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from worker.settings import ConfigError, Settings


def kafka_security(settings: Settings) -> BaseSecurity | None:
    """FastStream's security object for the configured protocol, or None for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    use_ssl = protocol in ("SSL", "SASL_SSL")
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile) if use_ssl else None
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    username = settings.kafka_sasl_username
    password = settings.kafka_sasl_password
    if not username or password is None:
        raise ConfigError(
            f"MODELREG_KAFKA_SECURITY_PROTOCOL={protocol} needs MODELREG_KAFKA_SASL_USERNAME"
            " and MODELREG_KAFKA_SASL_PASSWORD"
        )
    sasl = {
        None: SASLPlaintext,
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }[settings.kafka_sasl_mechanism]
    return sasl(username, password.get_secret_value(), ssl_context=context, use_ssl=use_ssl)


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka clients (producer, admin): servers plus security."""
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        **parse_security(kafka_security(settings)),
    }
