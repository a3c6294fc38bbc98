"""Proving failover: scenarios that break the cluster on purpose while probes write and
read through the front door, then check that no acknowledged write was lost."""
