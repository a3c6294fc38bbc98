"""Health facts about a running cluster, and the verdict they add up to (`hakube status`)."""
