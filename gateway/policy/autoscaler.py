"""Schema of the ``autoscaler`` policy section (filled in with the autoscaler)."""

from __future__ import annotations

from gateway.policy.core import Section


class AutoscalerConfig(Section):
    pass
