//! Reading a node's console output: what bootstrap.sh, nodeadm and cloud-init printed, reduced
//! to the lines that say why a node did not register. The output is untrusted text (any bytes,
//! escape sequences, markup): every line kept is decoded lossily, stripped of control and
//! escape sequences and cut to [`MAX_LINE_BYTES`], and at most [`MAX_LINES`] are kept.

use crate::core::evidence::{BootDigest, BootErrorKind, BootLine};

/// The longest line kept, in bytes; longer lines are cut at a character boundary and marked.
pub const MAX_LINE_BYTES: usize = 300;
/// The most recognised lines kept, and the length of the excerpt of an unrecognised log.
pub const MAX_LINES: usize = 12;

/// Case-insensitive fragments and what they mean, most specific first: a line is classified by
/// its first match.
const PATTERNS: &[(&str, BootErrorKind)] = &[
    ("x509:", BootErrorKind::CertificateError),
    (
        "certificate signed by unknown authority",
        BootErrorKind::CertificateError,
    ),
    ("no such host", BootErrorKind::DnsFailure),
    ("could not resolve host", BootErrorKind::DnsFailure),
    (
        "temporary failure in name resolution",
        BootErrorKind::DnsFailure,
    ),
    ("name or service not known", BootErrorKind::DnsFailure),
    ("unauthorized", BootErrorKind::Unauthorized),
    (
        "you must be logged in to the server",
        BootErrorKind::Unauthorized,
    ),
    ("resourcenotfoundexception", BootErrorKind::ClusterNotFound),
    ("no cluster found", BootErrorKind::ClusterNotFound),
    ("could not find nodeconfig", BootErrorKind::NodeadmConfig),
    ("failed to decode node config", BootErrorKind::NodeadmConfig),
    (
        "is missing in cluster configuration",
        BootErrorKind::NodeadmConfig,
    ),
    (
        "bootstrap.sh has been removed",
        BootErrorKind::NodeadmConfig,
    ),
    ("i/o timeout", BootErrorKind::EndpointUnreachable),
    ("connection timed out", BootErrorKind::EndpointUnreachable),
    ("connection refused", BootErrorKind::EndpointUnreachable),
    ("no route to host", BootErrorKind::EndpointUnreachable),
    (
        "could not connect to the endpoint url",
        BootErrorKind::EndpointUnreachable,
    ),
    (
        "unable to connect to the server",
        BootErrorKind::EndpointUnreachable,
    ),
    (
        "context deadline exceeded",
        BootErrorKind::EndpointUnreachable,
    ),
    ("exhausted retries", BootErrorKind::EndpointUnreachable),
    ("failed to run module", BootErrorKind::BootstrapFailed),
    ("exited with error on line", BootErrorKind::BootstrapFailed),
    ("command failed", BootErrorKind::BootstrapFailed),
];

/// Classifies a console output: the recognised lines, or the tail when none is recognised.
pub fn digest(raw: &[u8]) -> BootDigest {
    let text = String::from_utf8_lossy(raw);
    let mut lines = Vec::new();
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    for line in text.split(['\n', '\r']) {
        let clean = clean_line(line);
        if clean.is_empty() {
            continue;
        }
        let lowered = clean.to_ascii_lowercase();
        if let Some(&(_, kind)) = PATTERNS
            .iter()
            .find(|(fragment, _)| lowered.contains(fragment))
        {
            if lines.len() < MAX_LINES {
                lines.push(BootLine {
                    kind,
                    text: bounded(&clean),
                });
            }
            continue;
        }
        if tail.len() == MAX_LINES {
            tail.pop_front();
        }
        tail.push_back(bounded(&clean));
    }
    BootDigest {
        bytes: raw.len(),
        excerpt: if lines.is_empty() {
            tail.into_iter().collect()
        } else {
            Vec::new()
        },
        lines,
    }
}

/// Untrusted text from the cluster or a console (a condition's message, a log line) as it may be
/// quoted: one line, without control or escape sequences, at most [`MAX_LINE_BYTES`].
pub fn quote(text: &str) -> String {
    bounded(&clean_line(&text.replace(['\n', '\r'], " ")))
}

/// The most of one line that is read for a match: the console holds 64 KiB at most, but one
/// line of it need not be read whole to be classified.
const MAX_SCANNED_BYTES: usize = 4096;

/// A line without escape sequences or control characters, trimmed.
fn clean_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len().min(MAX_SCANNED_BYTES));
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            skip_escape(&mut chars);
            continue;
        }
        if c == '\t' {
            out.push(' ');
        } else if !c.is_control() && c != '\u{fffd}' {
            out.push(c);
        }
        if out.len() > MAX_SCANNED_BYTES {
            break;
        }
    }
    out.trim().to_string()
}

/// A cleaned line cut to [`MAX_LINE_BYTES`] at a character boundary, marked when cut.
fn bounded(trimmed: &str) -> String {
    if trimmed.len() <= MAX_LINE_BYTES {
        return trimmed.to_string();
    }
    let mut end = MAX_LINE_BYTES;
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &trimmed[..end])
}

/// Skips one ANSI escape sequence after its ESC: CSI (`ESC [ … final`), OSC (`ESC ] … BEL or
/// ESC \`) or a two-character escape.
fn skip_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.next() {
        Some('[') => {
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        }
        Some(']') => {
            while let Some(c) = chars.next() {
                if c == '\u{7}' {
                    break;
                }
                if c == '\u{1b}' {
                    chars.next();
                    break;
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_what_bootstrap_nodeadm_and_cloud_init_print() {
        let log = b"[   12.3] cloud-init[1234]: 2026-11-30 [eks-bootstrap] INFO: starting\n\
            Could not connect to the endpoint URL: \"https://eks.us-west-2.amazonaws.com/clusters/c\"\n\
            ERROR: Exhausted retries while describing cluster!\n\
            Exited with error on line 412\n\
            cloud-init[1234]: util.py[WARNING]: Failed to run module scripts-user\n\
            fatal cli/main.go:42 Command failed {\"error\": \"could not find NodeConfig within UserData\"}\n\
            E1130 kubelet: Get \"https://ABC.gr7.us-west-2.eks.amazonaws.com/api\": dial tcp 10.0.0.1:443: i/o timeout\n\
            error: You must be logged in to the server (Unauthorized)\n\
            x509: certificate signed by unknown authority\n\
            dial tcp: lookup abc.eks.amazonaws.com: no such host\n";
        let digest = digest(log);
        let kinds: Vec<BootErrorKind> = digest.lines.iter().map(|l| l.kind).collect();
        assert_eq!(
            kinds,
            vec![
                BootErrorKind::EndpointUnreachable,
                BootErrorKind::EndpointUnreachable,
                BootErrorKind::BootstrapFailed,
                BootErrorKind::BootstrapFailed,
                BootErrorKind::NodeadmConfig,
                BootErrorKind::EndpointUnreachable,
                BootErrorKind::Unauthorized,
                BootErrorKind::CertificateError,
                BootErrorKind::DnsFailure,
            ]
        );
        assert!(digest.excerpt.is_empty());
        assert_eq!(digest.bytes, log.len());
    }

    #[test]
    fn keeps_the_tail_of_a_log_it_does_not_recognise() {
        let log: String = (0..40).map(|n| format!("line {n}\n")).collect();
        let digest = digest(log.as_bytes());
        assert!(digest.lines.is_empty());
        assert_eq!(digest.excerpt.len(), MAX_LINES);
        assert_eq!(digest.excerpt.last().map(String::as_str), Some("line 39"));
    }

    #[test]
    fn hostile_output_is_bounded_and_cleaned() {
        let mut log = Vec::new();
        while log.len() < 64 * 1024 {
            log.extend_from_slice(
                b"\x1b[31mUnauthorized\x1b[0m <script>alert(1)</script> \xff\xfe\x00\x07 ",
            );
            log.extend_from_slice(&[b'A'; 500]);
            log.extend_from_slice(b"\x1b]0;title\x07\r\n");
        }
        let digest = digest(&log);
        assert_eq!(digest.lines.len(), MAX_LINES);
        for line in &digest.lines {
            assert!(
                line.text.len() <= MAX_LINE_BYTES + '…'.len_utf8(),
                "{}",
                line.text.len()
            );
            assert!(
                !line.text.chars().any(|c| c.is_control()),
                "{:?}",
                line.text
            );
            assert!(!line.text.contains('\u{fffd}'));
            assert!(line.text.starts_with("Unauthorized <script>"));
        }
    }

    #[test]
    fn a_multibyte_line_is_cut_on_a_character_boundary() {
        let line = "é".repeat(400);
        let digest = digest(format!("{line} i/o timeout").as_bytes());
        let text = &digest.lines[0].text;
        assert!(text.ends_with('…'));
        assert!(text.len() <= MAX_LINE_BYTES + '…'.len_utf8());
    }
}
