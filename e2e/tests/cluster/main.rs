//! End-to-end tests on the real environment: kube-apiserver, etcd, kube-controller-manager, NATS and
//! the process-kubelet. One test binary, so that `cargo test -p weft-e2e` starts one environment.

mod crds;
mod deletion;
mod failover;
mod helm;
mod kubelet;
mod lifecycle;
mod metrics;
mod rbac;
mod ssa;
mod support;
mod system;
mod whole_workloads;
mod workloads;
