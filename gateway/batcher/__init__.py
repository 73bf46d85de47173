"""Micro-batching: grouping, the batch prompt, and splitting the answer back per caller."""

from gateway.batcher.batcher import Batcher

__all__ = ["Batcher"]
