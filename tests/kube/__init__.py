"""A small, faithful Kubernetes API server for tests (no kube-apiserver can be installed here)."""
