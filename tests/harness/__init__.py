"""Test harness: real runtimes on private sockets, and fault injectors."""
