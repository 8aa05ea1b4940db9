//! Rendered objects as text: YAML documents (with comments) or a JSON value.

use super::options::Format;
use super::Rendered;
use serde_json::Value;

pub fn format(r: &Rendered, format: Format) -> Result<String, String> {
    match format {
        Format::Json => {
            let value = match r.objects.as_slice() {
                [(_, only)] => only.clone(),
                many => Value::Array(many.iter().map(|(_, v)| v.clone()).collect()),
            };
            serde_json::to_string_pretty(&value)
                .map(|t| t + "\n")
                .map_err(|e| e.to_string())
        }
        Format::Yaml => {
            let mut out = String::new();
            for line in &r.header {
                out.push_str(&comment(line));
            }
            if let Some(text) = &r.text {
                out.push_str(text);
                return Ok(out);
            }
            for (i, (note, obj)) in r.objects.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                if let Some(note) = note {
                    for line in note.lines() {
                        out.push_str(&comment(line));
                    }
                }
                out.push_str(&serde_norway::to_string(obj).map_err(|e| e.to_string())?);
            }
            Ok(out)
        }
    }
}

fn comment(line: &str) -> String {
    if line.is_empty() {
        "#\n".to_string()
    } else {
        format!("# {line}\n")
    }
}
