//! What Envoy says about its memory, and what the kernel says about its wasm VMs.
//!
//! Envoy 1.40 has no per-VM memory stat: its wasm stats are `wasm.envoy.wasm.runtime.v8.active`
//! / `.created` (VM instances) and `wasm.wasm_vm_count`, and `/memory` reports tcmalloc's heap,
//! which does not include wasm linear memory (V8 maps that itself). V8 reserves 8 GiB of address
//! space per wasm32 memory and makes the first `memory.size` bytes read-write, so each VM's linear
//! memory shows in `/proc/<pid>/maps` as an anonymous `rw-p` mapping directly followed by the
//! `---p` rest of an 8 GiB reservation. We report those mappings' size (what the VM grew to) and
//! resident set (what it touched), one per VM: with `--concurrency 1` Envoy runs three (the
//! configuration VM, the main thread's and the worker's).

use serde_json::{json, Value};

const RESERVATION: u64 = 8 << 30;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub rss_kb: u64,
    pub tcmalloc_allocated: u64,
    pub tcmalloc_heap_size: u64,
    pub wasm_active: Option<u64>,
    /// (linear memory size, resident), KiB, one per wasm VM, largest first.
    pub wasm_vms_kb: Vec<(u64, u64)>,
}

impl Snapshot {
    pub fn take(pid: u32, admin_port: u16) -> Snapshot {
        let admin = |path: &str| {
            reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}{path}"))
                .ok()
                .and_then(|r| r.text().ok())
                .unwrap_or_default()
        };
        let memory: Value = serde_json::from_str(&admin("/memory")).unwrap_or(Value::Null);
        let num = |k: &str| {
            memory[k]
                .as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| memory[k].as_u64())
                .unwrap_or(0)
        };
        let wasm_active = admin("/stats?filter=^wasm\\.envoy\\.wasm\\.runtime\\.v8\\.active$")
            .lines()
            .find_map(|l| l.split_once(": ").and_then(|(_, v)| v.trim().parse().ok()));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Snapshot {
            rss_kb,
            tcmalloc_allocated: num("allocated"),
            tcmalloc_heap_size: num("heap_size"),
            wasm_active,
            wasm_vms_kb: wasm_linear_memories(pid),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "rss_kb": self.rss_kb,
            "tcmalloc_allocated_bytes": self.tcmalloc_allocated,
            "tcmalloc_heap_size_bytes": self.tcmalloc_heap_size,
            "wasm_vms_active": self.wasm_active,
            "wasm_linear_memory_kb": self.wasm_vms_kb.iter().map(|(s, r)| json!({"size_kb": s, "rss_kb": r})).collect::<Vec<_>>(),
        })
    }

    /// The largest VM's linear memory (the worker's, under load), size and resident, KiB.
    pub fn largest_vm_kb(&self) -> Option<(u64, u64)> {
        self.wasm_vms_kb.first().copied()
    }
}

/// One mapping of `/proc/<pid>/smaps`.
struct Mapping {
    start: u64,
    end: u64,
    perms: String,
    anonymous: bool,
    rss_kb: u64,
}

fn mappings(pid: u32) -> Vec<Mapping> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let perms = parts.next().unwrap_or("").to_string();
                // offset, dev, inode, then an optional path.
                let path = parts.nth(3);
                out.push(Mapping {
                    start,
                    end,
                    perms,
                    anonymous: path.is_none(),
                    rss_kb: 0,
                });
                continue;
            }
        }
        if let (Some("Rss:"), Some(kb)) = (Some(first), parts.next()) {
            if let Some(m) = out.last_mut() {
                m.rss_kb = kb.parse().unwrap_or(0);
            }
        }
    }
    out
}

/// Each wasm VM's linear memory: an anonymous read-write mapping that, with the inaccessible
/// mapping right after it, spans exactly one 8 GiB V8 reservation.
pub fn wasm_linear_memories(pid: u32) -> Vec<(u64, u64)> {
    let maps = mappings(pid);
    let mut out: Vec<(u64, u64)> = maps
        .windows(2)
        .filter(|w| {
            let (rw, rest) = (&w[0], &w[1]);
            rw.anonymous
                && rest.anonymous
                && rw.perms.starts_with("rw")
                && rest.perms.starts_with("---")
                && rw.end == rest.start
                && rest.end - rw.start == RESERVATION
        })
        .map(|w| ((w[0].end - w[0].start) / 1024, w[0].rss_kb))
        .collect();
    out.sort_unstable_by(|a, b| b.cmp(a));
    out
}
