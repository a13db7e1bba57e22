"""Production figures derived from committed readings: machine states, part counts, the plant calendar, downtimes and OEE."""
