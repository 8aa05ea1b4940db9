//! scopegate's proxy-wasm HTTP filter: reads what Envoy knows, asks `scopegate-core`, acts on the answer.
//!
//! Policy lives in `scopegate-core`; this crate only translates between host calls and core
//! types. A panic here traps the VM and fails every later request, so nothing may panic: every
//! host call's `Result` is handled (the SDK's own getters unwrap, so `host.rs` uses `hostcalls`).

mod audit;
mod budgets;
mod call_memo;
mod credentials;
#[cfg(test)]
mod fake_host;
mod hold_watch;
mod host;
mod http;
mod keys;
mod listing;
mod native_mcp;
mod parking;
mod phase;
mod revocations;
mod root;
mod token_cache;
mod worker;

#[cfg(test)]
mod tests;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}
