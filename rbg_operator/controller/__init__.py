"""The reconcile machinery: watches feed a store and a work queue; workers reconcile groups."""
