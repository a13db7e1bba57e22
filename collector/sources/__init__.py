"""What every source shares, whatever its protocol: the reconnect `Backoff`, the per-tag
normaliser of raw values, and the helper that reports config problems at their own fields."""
