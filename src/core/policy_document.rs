//! Reading IAM-style policy documents (key policies, endpoint policies, trust policies): their
//! statements and how an element matches. Pure: JSON in, answers out.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses a policy document, refusing a key that appears twice in one object at any level.
/// serde_json keeps the last of two `"Statement"` keys, so a document read that way can lose a
/// Deny statement without a trace; IAM and KMS themselves refuse such documents.
pub fn parse_strict(text: &str) -> Result<Value, String> {
    serde_json::from_str::<Strict>(text)
        .map(|Strict(value)| value)
        .map_err(|e| e.to_string())
}

/// A JSON value whose objects have unique keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut list = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            list.push(item);
        }
        Ok(Value::Array(list))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

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

/// IAM matching of actions and resources: case-insensitive, `*` any run, `?` any one character.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    wildcard_matches(&pattern.to_ascii_lowercase(), &text.to_ascii_lowercase())
}

/// `StringLike`/`ArnLike` matching in conditions: case-sensitive, `*` any run, `?` one character.
pub fn wildcard_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
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
    fn a_key_twice_in_one_object_is_refused_at_any_depth() {
        let two_statements = r#"{"Statement": [{"Effect": "Deny"}], "Statement": []}"#;
        assert!(
            serde_json::from_str::<Value>(two_statements).is_ok(),
            "serde_json alone keeps the last"
        );
        let error = parse_strict(two_statements).unwrap_err();
        assert!(error.contains("duplicate key \"Statement\""), "{error}");
        let nested = r#"{"Statement": [{"Effect": "Allow", "Effect": "Deny"}]}"#;
        assert!(parse_strict(nested).is_err());
        let fine =
            r#"{"Statement": [{"Effect": "Allow", "Action": ["a", 1, 2.5, -3, true, null]}]}"#;
        assert_eq!(
            parse_strict(fine).unwrap(),
            serde_json::from_str::<Value>(fine).unwrap()
        );
        assert!(parse_strict("{not json").is_err());
    }

    #[test]
    fn condition_wildcards_are_case_sensitive() {
        assert!(wildcard_matches(
            "ec2.*.amazonaws.com",
            "ec2.us-west-2.amazonaws.com"
        ));
        assert!(!wildcard_matches("EC2.*", "ec2.us-west-2.amazonaws.com"));
        assert!(glob_matches("EC2.*", "ec2.us-west-2.amazonaws.com"));
    }

    #[test]
    fn a_single_statement_object_is_a_list_of_one() {
        let single = json!({"Statement": {"Effect": "Allow"}});
        assert_eq!(statements(&single).map(|s| s.len()), Some(1));
        assert_eq!(statements(&json!({})), None);
    }
}
