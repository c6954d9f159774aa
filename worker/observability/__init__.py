"""What an operator sees of a running worker: Prometheus metrics, health endpoints, logs."""

from worker.observability.http import HealthServer
from worker.observability.logs import JsonFormatter, configure_logging
from worker.observability.metrics import WorkerMetrics

__all__ = ["HealthServer", "JsonFormatter", "WorkerMetrics", "configure_logging"]
