//go:build tools

// Package tools pins containerd 2.x's daemon and runc shim, built from the published
// github.com/containerd/containerd/v2 module.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
)
