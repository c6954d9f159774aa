"""Provider catalogs: parse them (``formats``), publish them as provider-sync events (``sync``)."""

from worker.catalog.formats import (
    Catalog,
    CatalogError,
    CatalogFormat,
    CatalogModel,
    Skipped,
    detect_format,
    load_catalog,
    parse_catalog,
)

__all__ = [
    "Catalog",
    "CatalogError",
    "CatalogFormat",
    "CatalogModel",
    "Skipped",
    "detect_format",
    "load_catalog",
    "parse_catalog",
]
