"""Site adapters, by the name a target's TOML gives in ``adapter = "..."``."""

from __future__ import annotations

import importlib

from scraper.errors import UserError
from scraper.settings import TargetSettings
from scraper.targets.base import AdapterContext, PageResult, SiteAdapter

# name -> "module:class". A second API shape is one module plus one line here.
ADAPTERS = {
    "bilibili": "scraper.targets.bilibili:BilibiliAdapter",
}


def load_adapter(target: TargetSettings, context: AdapterContext | None = None) -> SiteAdapter:
    """The target's adapter; ``context`` (workers only) lends it Redis and the HTTP session."""
    spec = ADAPTERS.get(target.adapter)
    if spec is None:
        raise UserError(f"target {target.name!r}: unknown adapter {target.adapter!r} (known: {', '.join(ADAPTERS)})")
    module_name, _, class_name = spec.partition(":")
    adapter_class = getattr(importlib.import_module(module_name), class_name)
    adapter: SiteAdapter = adapter_class(target, context)
    return adapter


__all__ = ["ADAPTERS", "AdapterContext", "PageResult", "SiteAdapter", "load_adapter"]
