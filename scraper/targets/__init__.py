"""Site adapters, by the name a target's TOML gives in ``adapter = "..."``."""

from __future__ import annotations

import importlib

from scraper.errors import UserError
from scraper.settings import TargetSettings
from scraper.targets.base import PageResult, SiteAdapter

# name -> "module:class". A second API shape is one module plus one line here.
ADAPTERS = {
    "bilibili": "scraper.targets.bilibili:BilibiliAdapter",
}


def load_adapter(target: TargetSettings) -> SiteAdapter:
    spec = ADAPTERS.get(target.adapter)
    if spec is None:
        raise UserError(f"target {target.name!r}: unknown adapter {target.adapter!r} (known: {', '.join(ADAPTERS)})")
    module_name, _, class_name = spec.partition(":")
    adapter_class = getattr(importlib.import_module(module_name), class_name)
    adapter: SiteAdapter = adapter_class(target)
    return adapter


__all__ = ["ADAPTERS", "PageResult", "SiteAdapter", "load_adapter"]
