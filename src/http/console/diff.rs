//! Line diffs for the console: a key policy before and after, as a reviewer reads it.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Same(String),
    Removed(String),
    Added(String),
}

/// A policy document as text a diff can line up: pretty JSON when it parses (so that a compact
/// policy and its pretty successor differ only where their meaning does), else the text itself.
pub fn policy_lines(text: &str) -> Vec<String> {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => serde_json::to_string_pretty(&value)
            .unwrap_or_else(|_| text.to_string())
            .lines()
            .map(str::to_string)
            .collect(),
        Err(_) => text.lines().map(str::to_string).collect(),
    }
}

/// The line diff of two line lists (Myers, through `similar`), bounded in time: a diff that
/// takes longer than [`DIFF_DEADLINE`] is coarser, never wrong.
pub fn diff(before: &[String], after: &[String]) -> Vec<Line> {
    let before: Vec<&str> = before.iter().map(String::as_str).collect();
    let after: Vec<&str> = after.iter().map(String::as_str).collect();
    similar::TextDiff::configure()
        .algorithm(similar::Algorithm::Myers)
        .timeout(DIFF_DEADLINE)
        .diff_slices(&before, &after)
        .iter_all_changes()
        .map(|change| {
            let text = change.value().to_string();
            match change.tag() {
                similar::ChangeTag::Equal => Line::Same(text),
                similar::ChangeTag::Delete => Line::Removed(text),
                similar::ChangeTag::Insert => Line::Added(text),
            }
        })
        .collect()
}

/// How long a console diff may take.
const DIFF_DEADLINE: std::time::Duration = std::time::Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn the_diff_keeps_common_lines_and_marks_the_rest() {
        let got = diff(&lines("a\nb\nc\nd"), &lines("a\nc\nx\nd"));
        assert_eq!(
            got,
            vec![
                Line::Same("a".into()),
                Line::Removed("b".into()),
                Line::Same("c".into()),
                Line::Added("x".into()),
                Line::Same("d".into()),
            ]
        );
        assert_eq!(diff(&[], &lines("a")), vec![Line::Added("a".into())]);
        assert_eq!(diff(&lines("a"), &[]), vec![Line::Removed("a".into())]);
    }

    #[test]
    fn a_compact_policy_and_its_patched_pretty_form_differ_only_by_the_new_statement() {
        let before = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}"#;
        let after = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"},
    {"Sid": "AllowAutoScalingServiceRole", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
     "Principal": {"AWS": "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"}}
  ]
}"#;
        let got = diff(&policy_lines(before), &policy_lines(after));
        // At most the old last statement's closing brace, which gains a comma.
        assert!(
            got.iter()
                .all(|l| !matches!(l, Line::Removed(text) if text.trim() != "}")),
            "{got:#?}"
        );
        let added: Vec<&String> = got
            .iter()
            .filter_map(|l| match l {
                Line::Added(text) => Some(text),
                _ => None,
            })
            .collect();
        assert!(
            added
                .iter()
                .any(|l| l.contains("AllowAutoScalingServiceRole"))
        );
        assert!(added.iter().all(|l| !l.contains("root")), "{added:#?}");
    }

    #[test]
    fn text_that_is_not_json_is_diffed_as_it_is() {
        assert_eq!(policy_lines("not\njson"), lines("not\njson"));
    }
}
