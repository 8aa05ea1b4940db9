//! The MCP tools of the two example servers, each reporting what reached it from the gateway.

use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData as McpError, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

/// Which of the two example servers this process plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Read-side tools: tickets and accounts (`tickets.read accounts.read` in the example).
    SupportAssistant,
    /// Write/admin tools (`tickets.write admin.read` in the example).
    OpsConsole,
}

impl Role {
    /// Parses the `--name` value.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "support-assistant" => Some(Self::SupportAssistant),
            "ops-console" => Some(Self::OpsConsole),
            _ => None,
        }
    }

    /// The server's name as used in paths, configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::SupportAssistant => "support-assistant",
            Self::OpsConsole => "ops-console",
        }
    }
}

/// Pause between two `slow_count` notifications: long enough that a buffering proxy would
/// visibly delay them, short enough to keep tests fast.
const SLOW_COUNT_STEP: Duration = Duration::from_millis(200);
/// Upper bound on `slow_count`'s `n`, so a typo cannot tie a session up for minutes.
const SLOW_COUNT_MAX: u32 = 50;

/// Arguments of `list_tickets`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListTicketsArgs {
    /// Only tickets with this status (`open`, `pending` or `closed`).
    #[serde(default)]
    pub status: Option<String>,
}

/// Arguments of `get_account`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetAccountArgs {
    /// Account identifier, e.g. `acct-42`.
    pub account_id: String,
}

/// Arguments of `update_ticket`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct UpdateTicketArgs {
    /// Ticket identifier, e.g. `T-1001`.
    pub ticket_id: String,
    /// New status.
    pub status: String,
}

/// Arguments of `slow_count`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct SlowCountArgs {
    /// How many progress notifications to send before the result (default 3, at most 50).
    #[serde(default)]
    pub n: Option<u32>,
}

/// One MCP server instance per session (rmcp's service factory clones it).
#[derive(Clone)]
pub struct ExampleServer {
    role: Role,
    tool_router: ToolRouter<Self>,
}

impl ExampleServer {
    /// A server exposing the tools of `role` plus the shared `slow_count`.
    pub fn new(role: Role) -> Self {
        // Each role gets only its own tools, so a `tools/list` through the gateway shows which
        // upstream answered.
        let role_tools = match role {
            Role::SupportAssistant => Self::support_tools(),
            Role::OpsConsole => Self::ops_tools(),
        };
        Self {
            role,
            tool_router: role_tools + Self::common_tools(),
        }
    }

    /// The report every tool returns: who answered, and what the gateway passed on.
    fn report(&self, tool: &str, ctx: &RequestContext<RoleServer>, data: Value) -> CallToolResult {
        // rmcp's Streamable HTTP transport puts the HTTP request parts of the POST that carried
        // this call into the request extensions; without them (another transport) all are null.
        let parts = ctx.extensions.get::<http::request::Parts>();
        let header = |name: &str| -> Value {
            parts
                .and_then(|p| p.headers.get(name))
                .map_or(Value::Null, |v| {
                    Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())
                })
        };
        CallToolResult::structured(json!({
            "server": self.role.name(),
            "tool": tool,
            "authorization": header("authorization"),
            "scopegate_subject": header("x-scopegate-subject"),
            "scopegate_client_id": header("x-scopegate-client-id"),
            "scopegate_scopes": header("x-scopegate-scopes"),
            "mcp_session_id": header("mcp-session-id"),
            "data": data,
        }))
    }
}

#[tool_router(router = support_tools)]
impl ExampleServer {
    #[tool(description = "List support tickets, optionally only those with a given status.")]
    async fn list_tickets(
        &self,
        Parameters(args): Parameters<ListTicketsArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let tickets: Vec<Value> = [
            ("T-1001", "open", "Cannot log in", "acct-42"),
            ("T-1002", "pending", "Invoice total looks wrong", "acct-7"),
            ("T-1003", "closed", "Feature request: dark mode", "acct-42"),
        ]
        .into_iter()
        .filter(|(_, status, _, _)| args.status.as_deref().is_none_or(|s| s == *status))
        .map(|(id, status, title, account)| {
            json!({ "id": id, "status": status, "title": title, "account_id": account })
        })
        .collect();
        Ok(self.report("list_tickets", &ctx, json!({ "tickets": tickets })))
    }

    #[tool(description = "Look up a customer account by id.")]
    async fn get_account(
        &self,
        Parameters(args): Parameters<GetAccountArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let account = json!({
            "account_id": args.account_id,
            "name": "Example Customer Ltd",
            "plan": "enterprise",
            "open_tickets": 1,
        });
        Ok(self.report("get_account", &ctx, json!({ "account": account })))
    }

    #[tool(description = "Bulk export of every account (the gateway example denies it).")]
    async fn export_accounts(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        Ok(self.report("export_accounts", &ctx, json!({ "accounts": 2 })))
    }
}

#[tool_router(router = ops_tools)]
impl ExampleServer {
    #[tool(description = "Change the status of a support ticket.")]
    async fn update_ticket(
        &self,
        Parameters(args): Parameters<UpdateTicketArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        // Nothing is stored: the example only needs the call to be observable.
        let ticket = json!({ "id": args.ticket_id, "status": args.status, "updated": true });
        Ok(self.report("update_ticket", &ctx, json!({ "ticket": ticket })))
    }

    #[tool(description = "Summary report for administrators.")]
    async fn admin_report(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let report = json!({
            "tickets": { "open": 1, "pending": 1, "closed": 1 },
            "accounts": 2,
            "sla_breaches": 0,
        });
        Ok(self.report("admin_report", &ctx, json!({ "report": report })))
    }
}

#[tool_router(router = common_tools)]
impl ExampleServer {
    #[tool(
        description = "Send n progress notifications about 200 ms apart, then the result. \
                       Needs params._meta.progressToken (rmcp routes progress to the POST's \
                       SSE response by that token)."
    )]
    async fn slow_count(
        &self,
        Parameters(args): Parameters<SlowCountArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let n = args.n.unwrap_or(3).min(SLOW_COUNT_MAX);
        // With sessions, rmcp sends a notification on the POST's own SSE response only when it
        // can tie it to that request, which for progress means the request's progressToken.
        // Without one the notifications would go to the session's GET stream instead, so the
        // tool refuses loudly rather than silently proving nothing about the POST stream.
        let Some(token) = ctx.meta.get_progress_token() else {
            return Ok(CallToolResult::structured_error(json!({
                "server": self.role.name(),
                "tool": "slow_count",
                "error": "slow_count needs params._meta.progressToken so that its progress \
                          notifications ride this request's SSE response",
            })));
        };
        for step in 1..=n {
            tokio::time::sleep(SLOW_COUNT_STEP).await;
            let progress = ProgressNotificationParam::new(token.clone(), f64::from(step))
                .with_total(f64::from(n))
                .with_message(format!("{} counted {step} of {n}", self.role.name()));
            // A client that went away ends the call; there is nobody left to report to.
            if ctx.peer.notify_progress(progress).await.is_err() {
                return Err(McpError::internal_error("client went away", None));
            }
        }
        Ok(self.report("slow_count", &ctx, json!({ "count": n })))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ExampleServer {
    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        crate::catalog::list_resources(request)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        crate::catalog::list_resource_templates()
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        crate::catalog::read_resource(request).map(Into::into)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        crate::catalog::list_prompts()
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        crate::catalog::get_prompt(request).map(Into::into)
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
        .with_server_info(Implementation::new(
            self.role.name(),
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(format!(
            "scopegate example server `{}`: every tool reports the identity headers \
                 the gateway forwarded.",
            self.role.name()
        ))
    }
}
