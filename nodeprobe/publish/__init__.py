"""Publishers: hand judged state to the outside world (Kubernetes API, Prometheus).

Rule of this layer: publishers consume `nodeprobe.model` types only (Condition, Event,
Observation); they never import probes or judgement. A publisher never raises into the agent loop
for a failed write and never blocks longer than its request timeout: it keeps the latest state and
tries again later.
"""
