//! The end-to-end claims, one module per area, in one test binary: the crate and the AWS
//! SDK are linked once for all of them. `cargo test --test integration pool::` runs one
//! area; the driver programs the `clients` area runs live in `tests/clients/`.
//!
//! Tests of every area run at once in this one process, so each test owns what it changes:
//! its bed (PostgreSQL cluster, emulator, proxy, all on ports of their own), the cluster it
//! stops or restarts, the proxy processes it signals, its temporary files. Nothing sets an
//! environment variable of this process (children get theirs on their `Command`). What the
//! process shares on purpose:
//! - the initdb template every cluster is copied from (`local_cluster`, made once);
//! - the tracing subscriber (`testbed::init_tracing`);
//! - the proxy's event counters (`base::events`, process-wide, exposed by `admin::metrics`):
//!   a test that asserts on them reads labels only its own bed produces, or scrapes a proxy
//!   binary it started.

mod binary;
mod check;
mod clientauth;
mod clients;
mod demo;
mod differential;
mod faults;
mod iam;
mod identity;
mod kubernetes;
mod localca;
mod ops;
mod packaging;
mod pool;
mod private_session;
mod proxy;
mod redshift;
mod resume;
mod support;
mod targets;
