"""Subcommands: each wires config, probes, judgement and publishers for one entry point."""
