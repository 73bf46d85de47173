"""Token budgets per sprint (seed section 6): policy in ``gateway/policy/budget.py``, the stage in
``manager.py``, the atomic ledger in ``ledger.py`` (memory and Redis), alerts in ``alerts.py``."""

from gateway.budget.alerts import AlertSink
from gateway.budget.manager import HEADER, BudgetManager, Hold

__all__ = ["HEADER", "AlertSink", "BudgetManager", "Hold"]
