//! `scopegate-broker render`: the proxy configuration for a gateway document, per target.
//!
//! Every target embeds the document as JSON text (or a JSON object the mesh turns into JSON
//! text), after renaming its clusters the way the target spells them; the embedded document is
//! validated with the core's rules before anything is printed.

mod access_log;
mod clusters;
mod envoy;
mod gateway;
mod istio;
mod options;
mod output;
mod plugin;
mod ratelimit;
mod workload;

pub use options::{
    CommonOptions, EnvoyOptions, Format, GatewayOptions, IstioContext, IstioOptions, MeshOptions,
    RateLimitOptions, Target, DEFAULT_RATELIMIT_IMAGE,
};
use scopegate_core::policy::{Policy, ProxyNeeds};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::ExitCode;

/// Where `make wasm` leaves the filter, relative to the repository root.
pub const DEFAULT_WASM_PATH: &str = "target/wasm32-wasip1/release/scopegate_filter.wasm";

/// Why nothing was rendered.
#[derive(Debug)]
pub enum RenderError {
    /// Bad options or an unreadable file (exit 2).
    Usage(String),
    /// The document (as given, or as embedded for the target) fails validation (exit 1): the
    /// report `check` prints.
    Invalid(String),
}

/// One rendered output: objects (YAML documents or a JSON list) with an optional comment each.
pub struct Rendered {
    /// Lines printed first in YAML (a `#` is added), e.g. how the output was made.
    pub header: Vec<String>,
    pub objects: Vec<(Option<String>, Value)>,
    /// The YAML as written, where key order matters to a reader (the objects as JSON sort them).
    pub text: Option<String>,
}

/// A `HOST:PORT` an upstream cluster resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("`{text}` is not HOST:PORT"))?;
        let port = port
            .parse()
            .map_err(|_| format!("`{text}`: `{port}` is not a port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }
}

/// The document, parsed and validated, with the options every target shares.
pub struct Input {
    /// The document as a JSON value (YAML input included), the form clusters are renamed in.
    pub doc: Value,
    pub policy: Policy,
    /// `--upstream CLUSTER=HOST:PORT`.
    pub upstreams: BTreeMap<String, Endpoint>,
    pub body_flag_forced: bool,
    /// The command line, for the output's header.
    pub command: String,
}

impl Input {
    pub fn load(common: &CommonOptions, command: String) -> Result<Input, RenderError> {
        let text = std::fs::read_to_string(&common.doc)
            .map_err(|e| RenderError::Usage(format!("cannot read {}: {e}", common.doc)))?;
        let policy = validated(&text)?;
        // The raw value keeps fields this build does not model yet; validation above already
        // refused unknown ones.
        let doc: Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(&text).map_err(|e| RenderError::Usage(e.to_string()))?
        } else {
            serde_norway::from_str(&text).map_err(|e| RenderError::Usage(e.to_string()))?
        };
        let mut upstreams = BTreeMap::new();
        for u in &common.upstreams {
            let (name, addr) = u.split_once('=').ok_or_else(|| {
                RenderError::Usage(format!("--upstream `{u}` is not CLUSTER=HOST:PORT"))
            })?;
            let ep = Endpoint::parse(addr)
                .map_err(|e| RenderError::Usage(format!("--upstream {name}: {e}")))?;
            upstreams.insert(name.to_string(), ep);
        }
        Ok(Input {
            doc,
            policy,
            upstreams,
            body_flag_forced: common.body_flag,
            command,
        })
    }

    /// What the document needs from the proxy (the core's [`Policy::proxy_needs`]), with
    /// `--body-flag` forcing the flag.
    pub fn needs(&self) -> ProxyNeeds {
        let mut needs = self.policy.proxy_needs();
        needs.body_flag |= self.body_flag_forced;
        needs
    }

    /// Whether `allow_on_headers_stop_iteration` is set (and so the `EnvoyFilter`/
    /// `EnvoyPatchPolicy` form chosen).
    pub fn body_flag(&self) -> bool {
        self.needs().body_flag
    }

    /// Whether Envoy's native `envoy.filters.http.mcp` must run before scopegate.
    pub fn native_mcp(&self) -> bool {
        self.needs().native_mcp_filter
    }
}

/// Validates `text` as the filter will; the error carries `check`'s report.
pub fn validated(text: &str) -> Result<Policy, RenderError> {
    let (report, ok) = crate::check::run(text);
    if !ok {
        return Err(RenderError::Invalid(report));
    }
    scopegate_core::validate::load(text).map_err(|e| RenderError::Invalid(e.to_string()))
}

/// The document as the filter receives it: JSON text, validated once more after the target's
/// renames.
pub fn embedded(doc: &Value) -> Result<String, RenderError> {
    let text = serde_json::to_string_pretty(doc).map_err(|e| RenderError::Usage(e.to_string()))?;
    validated(&text).map_err(|e| match e {
        RenderError::Invalid(report) => RenderError::Invalid(format!(
            "the document as embedded for this target is invalid:\n{report}"
        )),
        other => other,
    })?;
    Ok(text)
}

pub fn run(target: Target) -> ExitCode {
    let mut args: Vec<String> = Vec::new();
    let mut skip_next = false;
    for a in std::env::args().skip(1) {
        // The output file is where the text goes, not how it was made.
        if std::mem::take(&mut skip_next) || a.starts_with("--output=") {
            continue;
        }
        if a == "-o" || a == "--output" {
            skip_next = true;
            continue;
        }
        args.push(a);
    }
    let command = args
        .into_iter()
        .map(|a| {
            if a.contains(' ') || a.is_empty() {
                format!("'{a}'")
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let (common, result) = match &target {
        Target::Envoy(a) => (
            &a.common,
            Input::load(&a.common, command).and_then(|i| envoy::render(&i, a)),
        ),
        Target::RateLimit(a) => (
            &a.common,
            Input::load(&a.common, command).and_then(|i| ratelimit::render(&i, a)),
        ),
        Target::Istio(a) => (
            &a.common,
            Input::load(&a.common, command).and_then(|i| istio::render(&i, a)),
        ),
        Target::EnvoyGateway(a) => (
            &a.common,
            Input::load(&a.common, command).and_then(|i| gateway::render(&i, a)),
        ),
    };
    let rendered = match result {
        Ok(r) => r,
        Err(RenderError::Usage(m)) => {
            eprintln!("error: {m}");
            return ExitCode::from(2);
        }
        Err(RenderError::Invalid(report)) => {
            eprint!("{report}");
            eprintln!("error: refusing to render an invalid document");
            return ExitCode::from(1);
        }
    };
    let text = match output::format(&rendered, common.format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match &common.output {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write {path}: {e}");
                ExitCode::from(2)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"gateways":[{"name":"g","public_url":"https://mcp.example.com","issuer":"https://idp.example.com","allowed_scopes":["a","b"],"jwks":{"cluster":"idp","path":"/jwks"},"servers":[{"name":"s","cluster":"c","path":"/s/mcp","scopes":["a"]}]}]}"#;

    fn input(doc: &str, forced: bool) -> Input {
        Input {
            doc: serde_json::from_str(doc).unwrap(),
            policy: validated(doc).unwrap(),
            upstreams: BTreeMap::new(),
            body_flag_forced: forced,
            command: String::new(),
        }
    }

    fn with_tools(mode: &str) -> String {
        DOC.replace(
            r#""scopes":["a"]}"#,
            r#""scopes":["a"],"tools":{"t":["a"]}}"#,
        )
        .replace(
            "]}]}",
            &format!(r#"]}}],"filter":{{"body_mode":"{mode}"}}}}"#),
        )
    }

    #[test]
    fn the_body_flag_follows_the_body_mode_or_is_forced() {
        assert!(!input(DOC, false).body_flag());
        assert!(input(DOC, true).body_flag());
        // Per-tool rules: only `hold_headers` holds the headers while the body is read.
        assert!(!input(&with_tools("hold_body"), false).body_flag());
        assert!(input(&with_tools("hold_headers"), false).body_flag());
        assert!(!input(&with_tools("mcp_metadata"), false).body_flag());
        assert!(input(&with_tools("hold_body"), true).body_flag());
    }

    #[test]
    fn the_native_mcp_filter_follows_mcp_metadata_even_with_the_flag_forced() {
        assert!(!input(DOC, false).native_mcp());
        assert!(!input(&with_tools("hold_body"), false).native_mcp());
        assert!(!input(&with_tools("hold_headers"), false).native_mcp());
        assert!(input(&with_tools("mcp_metadata"), false).native_mcp());
        let forced = input(&with_tools("mcp_metadata"), true);
        assert!(forced.native_mcp() && forced.body_flag());
    }

    #[test]
    fn endpoints_parse_and_name_what_is_wrong() {
        assert_eq!(
            Endpoint::parse("svc.ns.svc.cluster.local:8080").unwrap(),
            Endpoint {
                host: "svc.ns.svc.cluster.local".into(),
                port: 8080
            }
        );
        assert_eq!(Endpoint::parse("[::1]:1").unwrap().host, "::1");
        assert!(Endpoint::parse("host").unwrap_err().contains("HOST:PORT"));
        assert!(Endpoint::parse("host:http")
            .unwrap_err()
            .contains("not a port"));
    }

    #[test]
    fn an_invalid_document_is_refused_with_checks_report() {
        let bad = DOC.replace(r#""scopes":["a"]"#, r#""scopes":["z"]"#);
        match validated(&bad) {
            Err(RenderError::Invalid(report)) => {
                assert_eq!(report, crate::check::run(&bad).0);
                assert!(report.contains("`z`"), "{report}");
            }
            _ => panic!("accepted an invalid document"),
        }
    }
}
