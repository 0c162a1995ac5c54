"""The Python stand-in for kube-apiserver that came before the real control plane (formerly
tests/kube). No test uses it: only benchmarks/operator_bench.py and operator_budget.py still do,
until they are rerun on the real server (issue 9, branch issue9-bench); then delete this package.
"""
