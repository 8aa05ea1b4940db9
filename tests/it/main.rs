//! The integration tests, one binary with a module per area: the harness (`scopegate_tests`)
//! links once. Tests that start processes share a bounded number of slots (`procs`).

mod broker_cimd;
mod broker_crash;
mod broker_flow;
mod broker_hardening;
mod broker_metrics;
mod broker_refresh;
mod broker_registration_limits;
mod broker_replicas;
mod brokered;
mod brokered_burst;
mod brokered_cache;
mod brokered_faults;
mod config_and_keys;
mod envoy_examples;
mod example_stack;
mod fleet_budgets;
mod listings;
mod manifest_schemas;
mod mesh_body_modes;
mod mesh_rollout;
mod oci_image;
mod person_pages;
mod real_authorization_server;
mod render_envoy;
mod render_istio_ecds;
mod render_mesh;
mod render_rate_limit;
mod sdk_browser;
mod sdk_clients;
mod sdk_registration;
mod traces;
mod two_workers;
mod validate_mode;
mod walkthrough;
mod wasm_module;
