"""MLflow tracking: sweep and trial runs, retries, params, summary page, UI links."""
