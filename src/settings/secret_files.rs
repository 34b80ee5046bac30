//! Secrets read from files, as Kubernetes Secrets and ECS secrets are mounted: approver tokens
//! from a directory of one file per approver (`http.tokens_dir`), a webhook's URL from a file
//! (`notify.webhooks[n].url_file`), and approver tokens from one JSON secret
//! (`http.tokens_json`, a Secrets Manager key/value secret). A secret's content never appears in
//! an error.

use std::path::Path;

use super::Problem;
use super::sections::RawSettings;

pub(super) fn read_secret_files(raw: &mut RawSettings) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |key: String, problem: String| problems.push(Problem { key, problem });
    if !raw.http.tokens_dir.is_empty() {
        match approver_files(Path::new(&raw.http.tokens_dir)) {
            Ok(files) => {
                for (approver, token) in files {
                    let key = format!("http.tokens.{approver}");
                    match token {
                        Ok(_) if raw.http.tokens.contains_key(&approver) => {
                            problem(key, "set both in http.tokens and in http.tokens_dir".into());
                        }
                        Ok(token) => {
                            raw.http.tokens.insert(approver, token);
                        }
                        Err(why) => problem(key, why),
                    }
                }
            }
            Err(why) => problem("http.tokens_dir".into(), why),
        }
    }
    let json = std::mem::take(&mut raw.http.tokens_json);
    if !json.trim().is_empty() {
        match serde_json::from_str::<std::collections::BTreeMap<String, String>>(&json) {
            Ok(tokens) => {
                for (approver, token) in tokens {
                    let key = format!("http.tokens.{approver}");
                    match raw.http.tokens.entry(approver) {
                        std::collections::btree_map::Entry::Occupied(_) => problem(
                            key,
                            "set twice (http.tokens, http.tokens_dir or http.tokens_json)".into(),
                        ),
                        std::collections::btree_map::Entry::Vacant(slot) => {
                            slot.insert(token);
                        }
                    }
                }
            }
            Err(error) => problem(
                "http.tokens_json".into(),
                format!(
                    "not a JSON object of approver names to tokens (line {}, column {})",
                    error.line(),
                    error.column()
                ),
            ),
        }
    }
    for (n, hook) in raw.notify.webhooks.iter_mut().enumerate() {
        if hook.url_file.is_empty() {
            continue;
        }
        let key = format!("notify.webhooks[{n}].url_file");
        if !hook.url.is_empty() {
            problem(key, "set either url or url_file, not both".into());
            continue;
        }
        match read_secret(Path::new(&hook.url_file)) {
            Ok(url) => hook.url = url,
            Err(why) => problem(key, why),
        }
    }
    problems
}

/// The approvers of a directory: each file's name is an approver, its content the token.
/// Entries starting with a dot are skipped: a Kubernetes Secret volume keeps its versions in
/// `..data` and `..<timestamp>` and links every key to them.
/// An approver's name and its token, or why the token could not be read.
type ApproverFile = (String, Result<String, String>);

fn approver_files(dir: &Path) -> Result<Vec<ApproverFile>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // An optional Secret that does not exist: no approver, and the settings' warnings say
        // that the API then refuses every request.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(format!("{} cannot be read: {error}", dir.display())),
    };
    let mut files: Vec<ApproverFile> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            let path = entry.path();
            (!name.starts_with('.') && path.is_file()).then(|| (name, read_secret(&path)))
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// A secret file's content without its trailing newline; the error names the file, never the
/// content.
fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{} cannot be read: {}", path.display(), e.kind()))?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(secret)
}
