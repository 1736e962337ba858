"""Live events: what changed (builds, their logs, a branch's latest green) and who is told."""
