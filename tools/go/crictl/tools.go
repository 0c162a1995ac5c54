//go:build tools

// Package tools pins crictl (NPD's containerd health check calls it), built from the published
// sigs.k8s.io/cri-tools module, for the side-by-side benchmarks (never shipped).
package tools

import _ "sigs.k8s.io/cri-tools/cmd/crictl"
