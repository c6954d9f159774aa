"""model-registry: the event-driven worker that owns the registry of LLM models."""

__version__ = "0.1.0"
