//! A minimal Streamable HTTP MCP client over plain HTTP, so tests see every status and header.

use reqwest::blocking::{Client as Http, Response};
use serde_json::{json, Value};
use std::time::Duration;

pub const PROTOCOL_VERSION: &str = "2025-06-18";

/// One HTTP exchange, with the JSON-RPC messages of its body (plain JSON or SSE `data:` lines).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub messages: Vec<Value>,
}

impl Reply {
    fn read(r: Response) -> Reply {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().unwrap_or_default();
        let messages = parse_messages(&body);
        Reply {
            status,
            headers,
            body,
            messages,
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The JSON-RPC `result` answering a request, if any.
    pub fn result(&self) -> Option<&Value> {
        self.messages.iter().rev().find_map(|m| m.get("result"))
    }

    /// The JSON a tool reported (first text content, parsed).
    pub fn tool_json(&self) -> Value {
        let text = self
            .result()
            .and_then(|r| r["content"][0]["text"].as_str())
            .unwrap_or_else(|| panic!("no tool result in: {} {}", self.status, self.body));
        serde_json::from_str(text).unwrap_or_else(|_| json!(text))
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// JSON-RPC messages in a body: one JSON document, or the `data:` lines of an SSE stream.
pub fn parse_messages(body: &str) -> Vec<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        return vec![v];
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

pub struct Client {
    pub url: String,
    pub token: Option<String>,
    pub session: Option<String>,
    http: Http,
    next_id: u64,
}

impl Client {
    pub fn new(url: &str, token: Option<&str>) -> Client {
        Client {
            url: url.to_string(),
            token: token.map(str::to_string),
            session: None,
            http: Http::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            next_id: 1,
        }
    }

    /// POSTs one JSON-RPC message with optional extra headers.
    pub fn post(&mut self, msg: &Value, extra: &[(&str, &str)]) -> Reply {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL_VERSION);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        Reply::read(req.body(msg.to_string()).send().expect("HTTP request"))
    }

    pub fn request(&mut self, method: &str, params: Value, extra: &[(&str, &str)]) -> Reply {
        let id = self.next_id;
        self.next_id += 1;
        self.post(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
            extra,
        )
    }

    /// `initialize` + `notifications/initialized`; keeps the session id.
    pub fn initialize(&mut self) -> Reply {
        let r = self.request(
            "initialize",
            json!({"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                   "clientInfo": {"name": "scopegate-tests", "version": "0"}}),
            &[],
        );
        if r.status == 200 {
            self.session = r.header("mcp-session-id");
            let n = self.post(
                &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                &[],
            );
            assert!(
                n.status == 202 || n.status == 200,
                "initialized: {} {}",
                n.status,
                n.body
            );
        }
        r
    }

    pub fn call_tool(&mut self, name: &str, args: Value) -> Reply {
        self.request("tools/call", json!({"name": name, "arguments": args}), &[])
    }

    /// A GET without MCP framing (metadata documents, ungoverned routes).
    pub fn get(url: &str, token: Option<&str>) -> Reply {
        let http = Http::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut req = http.get(url);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        Reply::read(req.send().expect("HTTP request"))
    }
}
