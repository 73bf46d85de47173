"""Rate limits and the runaway brake, in front of the budget: ``admit`` takes every applicable ticket
(one consume: one Redis round trip), ``settle`` gives back what the answer did not use, and the
providers' own limit headers are fed back through ``observe``."""

from gateway.limits.admission import Admission, Limiter

__all__ = ["Admission", "Limiter"]
