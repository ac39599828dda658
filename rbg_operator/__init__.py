"""rbg-operator: reconciles RoleBasedGroups (workloads.x-k8s.io) into role workloads."""

__version__ = "0.1.0"
