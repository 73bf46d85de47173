"""The request ledger (seed section 9): one record per request, written in the background, read by
``llm-gateway report`` and ``llm-gateway replay`` (``gateway/reporting``)."""

from gateway.ledger.record import Finished, RecordBuilder
from gateway.ledger.schema import SCHEMA, LedgerRecord
from gateway.ledger.writer import RequestLedger

__all__ = ["SCHEMA", "Finished", "LedgerRecord", "RecordBuilder", "RequestLedger"]
