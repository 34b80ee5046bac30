//! Reading IAM-style policy documents (key policies, endpoint policies, trust policies): their
//! statements and how an element matches. Pure: JSON in, answers out.

use serde_json::Value;

/// The statements of a policy document; a single statement object counts as a list of one.
pub fn statements(document: &Value) -> Option<Vec<&Value>> {
    match document.get("Statement") {
        Some(Value::Array(list)) => Some(list.iter().collect()),
        Some(single @ Value::Object(_)) => Some(vec![single]),
        _ => None,
    }
}

pub fn effect(statement: &Value) -> Option<&str> {
    statement.get("Effect").and_then(Value::as_str)
}

pub fn sid(statement: &Value) -> Option<&str> {
    statement.get("Sid").and_then(Value::as_str)
}

/// An element that may be one value or a list of them, as a list.
pub fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(list) => list.iter().collect(),
        other => vec![other],
    }
}

/// The `AWS` principals named in a `Principal` or `NotPrincipal` element; the only valid bare
/// string is the wildcard `"*"`.
pub fn aws_principals(element: Option<&Value>) -> Vec<&str> {
    principals_of_kind(element, "AWS")
}

/// The principals of one kind (`AWS`, `Service`, `Federated`) an element names; a bare `"*"`
/// names everyone of every kind.
pub fn principals_of_kind<'a>(element: Option<&'a Value>, kind: &str) -> Vec<&'a str> {
    match element {
        Some(Value::String(everyone)) => vec![everyone.as_str()],
        Some(Value::Object(map)) => map
            .get(kind)
            .map(as_list)
            .unwrap_or_default()
            .into_iter()
            .filter_map(Value::as_str)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a statement's `Action` (or `NotAction`) covers `operation`.
pub fn action_matches(statement: &Value, operation: &str) -> bool {
    element_matches(statement, "Action", "NotAction", operation)
}

/// Whether a statement's `Resource` (or `NotResource`) covers `arn`; a statement without either
/// (a key or trust policy) covers everything.
pub fn resource_matches(statement: &Value, arn: &str) -> bool {
    if statement.get("Resource").is_none() && statement.get("NotResource").is_none() {
        return true;
    }
    element_matches(statement, "Resource", "NotResource", arn)
}

fn element_matches(statement: &Value, element: &str, not_element: &str, wanted: &str) -> bool {
    let any = |value: &Value| {
        as_list(value)
            .into_iter()
            .filter_map(Value::as_str)
            .any(|pattern| glob_matches(pattern, wanted))
    };
    if let Some(listed) = statement.get(element) {
        return any(listed);
    }
    if let Some(excepted) = statement.get(not_element) {
        return !any(excepted);
    }
    false
}

/// IAM matching: case-insensitive, `*` any run, `?` any one character.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let text: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            backtrack = Some((p, t));
            p += 1;
        } else if let Some((star, matched)) = backtrack {
            p = star + 1;
            t = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_match_by_glob_and_not_resource_inverts() {
        let listed = json!({"Resource": ["arn:aws:s3:::prod-us-west-2-starport-layer-bucket/*"]});
        assert!(resource_matches(
            &listed,
            "arn:aws:s3:::prod-us-west-2-starport-layer-bucket/layer"
        ));
        assert!(!resource_matches(&listed, "arn:aws:s3:::other/x"));
        let except = json!({"NotResource": "arn:aws:s3:::secret/*"});
        assert!(resource_matches(&except, "arn:aws:s3:::other/x"));
        assert!(!resource_matches(&except, "arn:aws:s3:::secret/x"));
        assert!(resource_matches(&json!({}), "anything"));
    }

    #[test]
    fn principals_of_a_kind_and_the_bare_wildcard() {
        let trust = json!({"Service": ["ec2.amazonaws.com", "eks.amazonaws.com"], "AWS": "arn:aws:iam::1:root"});
        assert_eq!(
            principals_of_kind(Some(&trust), "Service"),
            vec!["ec2.amazonaws.com", "eks.amazonaws.com"]
        );
        assert_eq!(aws_principals(Some(&trust)), vec!["arn:aws:iam::1:root"]);
        assert_eq!(principals_of_kind(Some(&json!("*")), "Service"), vec!["*"]);
    }

    #[test]
    fn a_single_statement_object_is_a_list_of_one() {
        let single = json!({"Statement": {"Effect": "Allow"}});
        assert_eq!(statements(&single).map(|s| s.len()), Some(1));
        assert_eq!(statements(&json!({})), None);
    }
}
