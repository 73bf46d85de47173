"""The autoscaler sidecar: scales agent workers from the backlog in Redis streams."""
