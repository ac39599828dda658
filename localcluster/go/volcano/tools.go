//go:build tools

// Records what this module builds (controller-gen) and reads (Volcano's API types).
package tools

import (
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
	_ "volcano.sh/apis/pkg/apis/scheduling/v1beta1"
)
