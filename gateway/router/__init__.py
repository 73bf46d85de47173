"""Model routing (seed section 4): aliases such as ``auto`` become the cheapest adequate model per task."""

from gateway.router.log import RoutingLog
from gateway.router.rules import Decision, RuleSet
from gateway.router.stage import PriceFn, Router

__all__ = ["Decision", "PriceFn", "Router", "RoutingLog", "RuleSet"]
