"""The test kit: real peers (free ports, pymodbus devices, Mosquitto brokers, asyncua servers,
PostgreSQL) and the data-driven cases, shared by the tests in `tests/`, `adapters/*/tests` and
the benchmarks in `bench/`. Nothing here mocks a protocol."""
