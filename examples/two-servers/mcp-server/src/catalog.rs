//! The example servers' resources, resource templates and prompts (the same on both roles),
//! with `resources/list` paginated so a gateway must keep `nextCursor` intact.

use rmcp::model::{
    GetPromptRequestParams, GetPromptResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResult,
};
use rmcp::ErrorData as McpError;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Entries per `resources/list` page: small, so the example's five resources take three pages.
pub const RESOURCES_PAGE: usize = 2;

/// `(uri, name, description)` of every concrete resource.
const RESOURCES: [(&str, &str, &str); 5] = [
    ("tickets://T-1001", "T-1001", "Cannot log in"),
    ("tickets://T-1002", "T-1002", "Invoice total looks wrong"),
    ("tickets://T-1003", "T-1003", "Feature request: dark mode"),
    (
        "accounts://acct-42/profile",
        "acct-42",
        "Example Customer Ltd",
    ),
    (
        "internal://audit-log",
        "audit-log",
        "Who changed what (operators only)",
    ),
];

/// `(uriTemplate, name)` of every resource template.
const TEMPLATES: [(&str, &str); 3] = [
    ("tickets://{ticket_id}", "ticket"),
    ("accounts://{account_id}/profile", "account profile"),
    ("internal://{log}", "internal log"),
];

/// `(name, description)` of every prompt.
const PROMPTS: [(&str, &str); 3] = [
    ("triage_ticket", "Draft a triage note for a ticket."),
    ("summarize_account", "Summarise an account for a call."),
    (
        "internal_escalation",
        "Escalate to the on-call engineer (operators only).",
    ),
];

/// rmcp's result types from their wire form: the example's lists are data, not code.
fn from_json<T: DeserializeOwned>(v: Value) -> Result<T, McpError> {
    serde_json::from_value(v).map_err(|e| McpError::internal_error(e.to_string(), None))
}

/// One page of resources; the cursor is the index of the page's first entry.
pub fn list_resources(
    request: Option<PaginatedRequestParams>,
) -> Result<ListResourcesResult, McpError> {
    let start = match request.and_then(|r| r.cursor) {
        None => 0,
        Some(c) => c
            .parse::<usize>()
            .ok()
            .filter(|i| *i < RESOURCES.len())
            .ok_or_else(|| McpError::invalid_params(format!("unknown cursor {c:?}"), None))?,
    };
    let end = (start + RESOURCES_PAGE).min(RESOURCES.len());
    let page: Vec<Value> = RESOURCES[start..end]
        .iter()
        .map(|(uri, name, description)| {
            json!({ "uri": uri, "name": name, "description": description, "mimeType": "application/json" })
        })
        .collect();
    let mut result = json!({ "resources": page });
    if end < RESOURCES.len() {
        result["nextCursor"] = json!(end.to_string());
    }
    from_json(result)
}

pub fn list_resource_templates() -> Result<ListResourceTemplatesResult, McpError> {
    let templates: Vec<Value> = TEMPLATES
        .iter()
        .map(|(t, name)| json!({ "uriTemplate": t, "name": name, "mimeType": "application/json" }))
        .collect();
    from_json(json!({ "resourceTemplates": templates }))
}

pub fn read_resource(request: ReadResourceRequestParams) -> Result<ReadResourceResult, McpError> {
    let uri = request.uri;
    let known = ["tickets://", "accounts://", "internal://"]
        .iter()
        .any(|p| uri.starts_with(p));
    if !known {
        return Err(McpError::resource_not_found(
            format!("no resource {uri}"),
            None,
        ));
    }
    let text = json!({ "uri": uri, "read": true }).to_string();
    from_json(json!({ "contents": [{ "uri": uri, "mimeType": "application/json", "text": text }] }))
}

pub fn list_prompts() -> Result<ListPromptsResult, McpError> {
    let prompts: Vec<Value> = PROMPTS
        .iter()
        .map(|(name, description)| json!({ "name": name, "description": description }))
        .collect();
    from_json(json!({ "prompts": prompts }))
}

pub fn get_prompt(request: GetPromptRequestParams) -> Result<GetPromptResult, McpError> {
    let Some((name, description)) = PROMPTS.iter().find(|(n, _)| *n == request.name) else {
        return Err(McpError::invalid_params(
            format!("no prompt {}", request.name),
            None,
        ));
    };
    from_json(json!({
        "description": description,
        "messages": [{ "role": "user", "content": { "type": "text", "text": format!("{name}: {description}") } }]
    }))
}
