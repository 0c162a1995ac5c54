//go:build tools

// Package tools pins helm's command, built from the published helm.sh/helm/v3 module.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
