"""Running on a cluster: Ray Jobs, Kubernetes manifests, the one-machine cluster."""
