//! The consent page: server-rendered, no script, framing forbidden, everything escaped.

/// What the user is asked to approve.
pub struct Consent<'a> {
    pub client_name: &'a str,
    pub client_id: &'a str,
    pub redirect_host: &'a str,
    pub server: &'a str,
    pub scopes: &'a [&'a str],
    pub action: &'a str,
    pub request: &'a str,
    pub csrf: &'a str,
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

pub fn render(c: &Consent) -> String {
    let scopes: String = c
        .scopes
        .iter()
        .map(|s| format!("<li><code>{}</code></li>", escape(s)))
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize {name}</title>
<style>body{{font-family:sans-serif;max-width:36em;margin:3em auto}}code{{background:#eee;padding:0 .2em}}</style></head>
<body>
<h1>Authorize <span id="client-name">{name}</span>?</h1>
<p>The application <strong>{name}</strong> (<code id="client-id">{id}</code>) asks to use the MCP server
<strong id="server">{server}</strong> on your behalf.</p>
<p>After you decide, you will be sent to <strong id="redirect-host">{host}</strong>.</p>
<p>It will be allowed to:</p>
<ul id="scopes">{scopes}</ul>
<form method="post" action="{action}">
<input type="hidden" name="request" value="{request}">
<input type="hidden" name="csrf" value="{csrf}">
<button type="submit" name="decision" value="approve">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</body></html>
"#,
        name = escape(c.client_name),
        id = escape(c.client_id),
        server = escape(c.server),
        host = escape(c.redirect_host),
        action = escape(c.action),
        request = escape(c.request),
        csrf = escape(c.csrf),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        let html = render(&Consent {
            client_name: "<script>x</script>",
            client_id: "c",
            redirect_host: "127.0.0.1:9",
            server: "support-assistant",
            scopes: &["tickets.read"],
            action: "/consent",
            request: "r",
            csrf: "t\"",
        });
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("value=\"t&quot;\""));
    }
}
