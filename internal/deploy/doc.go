// Package deploy tests the files that install Hodei, as docs/deploy.md
// describes them: the container image (Dockerfile, deploy/container; build
// tag docker, against the tests' Docker engine), the systemd units
// (deploy/systemd, checked by systemd-analyze) and the Kubernetes manifests
// (deploy/kubernetes; build tag kubernetes, applied to the tests' API server
// and kubelet). It holds no code of the product.
package deploy
