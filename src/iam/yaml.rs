//! The policy as YAML lines for the CloudFormation templates.

use serde_json::Value;

/// Appends `lines` as one YAML list item at `indent`.
pub(super) fn push_item(out: &mut String, indent: usize, lines: &[String]) {
    for (n, line) in lines.iter().enumerate() {
        let lead = if n == 0 { "- " } else { "  " };
        out.push_str(&format!("{}{lead}{line}\n", " ".repeat(indent + 2)));
    }
}

/// A string of a condition, as the template writes it: an ARN in the stack's partition.
fn yaml_text(text: &str) -> String {
    match text.strip_prefix("arn:aws:") {
        Some(rest) => format!("!Sub \"arn:${{AWS::Partition}}:{rest}\""),
        None => format!("\"{text}\""),
    }
}

/// A JSON object of strings and string lists as YAML lines, `depth` levels in.
pub(super) fn yaml_lines(value: &Value, depth: usize) -> Vec<String> {
    let pad = "  ".repeat(depth);
    let mut lines = Vec::new();
    if let Value::Object(map) = value {
        for (key, value) in map {
            match value {
                Value::String(text) => lines.push(format!("{pad}\"{key}\": {}", yaml_text(text))),
                Value::Array(items) => {
                    lines.push(format!("{pad}\"{key}\":"));
                    for item in items {
                        lines.push(format!(
                            "{pad}  - {}",
                            yaml_text(item.as_str().unwrap_or_default())
                        ));
                    }
                }
                Value::Object(_) => {
                    lines.push(format!("{pad}\"{key}\":"));
                    lines.extend(yaml_lines(value, depth + 1));
                }
                other => lines.push(format!("{pad}{key}: {other}")),
            }
        }
    }
    lines
}
