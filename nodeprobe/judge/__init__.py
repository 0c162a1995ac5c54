"""Judgement: turn observations into conditions and events.

Rule of this layer: pure functions of observations, state and time (always passed in). No I/O,
no clock reads, no logging that matters. Imports only `nodeprobe.model` and `nodeprobe.config`.
"""
