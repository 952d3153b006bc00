"""Build hook (hatchling): the wheel carries the family manifests, ``manifests/mobilenet_*.json`` (the
source of truth, at the top level of the checkout), as ``convert/manifests/``, where an installed
:mod:`convert.env` reads them. Only the standard wheel: an editable install reads the checkout's
``manifests/`` itself. The local trust-on-first-use lock (``manifests/checksums.lock.json``) never ships."""
from __future__ import annotations

from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class ManifestsHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or version != "standard":
            return
        manifests = sorted((Path(self.root) / "manifests").glob("mobilenet_*.json"))
        if not manifests:
            raise RuntimeError(f"no family manifests (manifests/mobilenet_*.json) under {self.root}")
        for path in manifests:
            build_data["force_include"][str(path)] = f"convert/manifests/{path.name}"
