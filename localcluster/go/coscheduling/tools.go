//go:build tools

// Records the command this module builds so `go mod tidy` keeps its dependencies.
package tools

import _ "sigs.k8s.io/scheduler-plugins/cmd/scheduler"
