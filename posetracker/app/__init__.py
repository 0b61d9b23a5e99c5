"""The application: Python API plumbing, pipeline, CLI commands, benchmarks, model registry."""
