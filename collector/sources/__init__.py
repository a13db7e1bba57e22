"""What every source shares, whatever its protocol: the reconnect `Backoff` and the helper
that reports config problems at their own fields."""
