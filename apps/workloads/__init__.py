"""Workloads (issue 13): what traffic a load test sends. See docs/design/0013-workloads.md."""
