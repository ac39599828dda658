//go:build tools

// Records the command this module builds so `go mod tidy` keeps its dependencies.
package tools

import _ "github.com/opencontainers/runc"
