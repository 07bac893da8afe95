"""Model-free, deterministic harness for tests, CI and client conformance."""
