"""serve: an index as a long-running HTTP service (JSON API, metrics, review page)."""
