//go:build tools

// Package tools pins node-problem-detector and its health-checker, built from the published
// k8s.io/node-problem-detector module, for the side-by-side benchmarks (never shipped).
package tools

import (
	_ "k8s.io/node-problem-detector/cmd/healthchecker"
	_ "k8s.io/node-problem-detector/cmd/nodeproblemdetector"
)
