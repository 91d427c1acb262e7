"""Fixtures shared by the orchestration tests (S3 via a local moto server)."""

from s3_server import s3_endpoint, s3_server_url  # noqa: F401  (re-exported as fixtures)
