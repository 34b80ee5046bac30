//! Console sign-in: a person signs in with their approver token once and gets a session cookie;
//! every form carries a CSRF token bound to that session. Both are HMACs keyed by the approver's
//! own token, so every replica that shares the tokens accepts them, nothing is stored, and
//! removing a token from the settings ends its sessions at once.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The session cookie's name.
pub const COOKIE: &str = "nodemedic_session";

/// How long a sign-in lasts.
pub const SESSION_SECS: i64 = 8 * 3600;

/// Why a request carries no valid session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the console is off for everyone: no approver tokens are configured (http.tokens)")]
    NoTokens,
    #[error("not signed in")]
    Missing,
    #[error("the session is not valid (signed out, expired, or its token was removed)")]
    Invalid,
    #[error("the form's CSRF token does not belong to this session")]
    BadCsrf,
}

/// A signed-in approver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub approver: String,
    pub expires: i64,
    /// The approver's sign-out count the session was issued under; signing out moves it.
    pub epoch: u64,
    /// The cookie value, to which CSRF tokens are bound.
    cookie: String,
}

fn key_of(token: &str) -> Vec<u8> {
    Sha256::new()
        .chain_update(b"nodemedic console v1\0")
        .chain_update(token.as_bytes())
        .finalize()
        .to_vec()
}

fn mac(token: &str, message: &str) -> HmacSha256 {
    // An HMAC accepts a key of any length.
    let mut mac = HmacSha256::new_from_slice(&key_of(token)).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    mac
}

/// The approver whose token this is; tokens are compared by hash so that the time taken does not
/// depend on how much of a guess was right.
pub fn approver_of(tokens: &BTreeMap<String, String>, presented: &str) -> Option<String> {
    let digest = Sha256::digest(presented.as_bytes());
    tokens
        .iter()
        .find(|(_, token)| Sha256::digest(token.as_bytes()) == digest)
        .map(|(name, _)| name.clone())
}

/// A new session for `approver`, valid until `now + SESSION_SECS` or until the approver signs
/// out (their `epoch` moves on).
pub fn issue(
    tokens: &BTreeMap<String, String>,
    approver: &str,
    epoch: u64,
    now: i64,
) -> Option<Session> {
    let token = tokens.get(approver)?;
    let expires = now.saturating_add(SESSION_SECS);
    let signed = format!("{approver}.{expires}");
    let signature = hex::encode(
        mac(token, &format!("{approver}.{epoch}.{expires}"))
            .finalize()
            .into_bytes(),
    );
    Some(Session {
        approver: approver.to_string(),
        expires,
        epoch,
        cookie: format!("{signed}.{signature}"),
    })
}

/// The approver a cookie claims to be, before anything is verified: whose sign-out epoch to read.
pub fn claimed_approver(cookie: &str) -> Option<&str> {
    let mut parts = cookie.rsplitn(3, '.');
    parts.next()?;
    parts.next()?;
    parts.next()
}

/// The session a cookie value proves at `now`.
pub fn verify(
    tokens: &BTreeMap<String, String>,
    cookie: Option<&str>,
    epoch: u64,
    now: i64,
) -> Result<Session, SessionError> {
    if tokens.is_empty() {
        return Err(SessionError::NoTokens);
    }
    let cookie = cookie.ok_or(SessionError::Missing)?;
    // The approver's name may itself contain dots: split from the right.
    let mut parts = cookie.rsplitn(3, '.');
    let (Some(signature), Some(expires), Some(approver)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(SessionError::Invalid);
    };
    let expires: i64 = expires.parse().map_err(|_| SessionError::Invalid)?;
    let token = tokens.get(approver).ok_or(SessionError::Invalid)?;
    let signature = hex::decode(signature).map_err(|_| SessionError::Invalid)?;
    mac(token, &format!("{approver}.{epoch}.{expires}"))
        .verify_slice(&signature)
        .map_err(|_| SessionError::Invalid)?;
    if expires <= now {
        return Err(SessionError::Invalid);
    }
    Ok(Session {
        approver: approver.to_string(),
        expires,
        epoch,
        cookie: cookie.to_string(),
    })
}

impl Session {
    pub fn cookie_value(&self) -> &str {
        &self.cookie
    }

    /// The token every form of this session carries.
    pub fn csrf(&self, tokens: &BTreeMap<String, String>) -> String {
        match tokens.get(&self.approver) {
            Some(token) => hex::encode(
                mac(token, &format!("csrf.{}", self.cookie))
                    .finalize()
                    .into_bytes(),
            ),
            None => String::new(),
        }
    }

    pub fn check_csrf(
        &self,
        tokens: &BTreeMap<String, String>,
        presented: &str,
    ) -> Result<(), SessionError> {
        let token = tokens.get(&self.approver).ok_or(SessionError::Invalid)?;
        let presented = hex::decode(presented).map_err(|_| SessionError::BadCsrf)?;
        mac(token, &format!("csrf.{}", self.cookie))
            .verify_slice(&presented)
            .map_err(|_| SessionError::BadCsrf)
    }
}

/// The value of cookie `name` in a Cookie header.
pub fn cookie_from_header(header: &str, name: &str) -> Option<String> {
    cookie::Cookie::split_parse(header)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// The Set-Cookie value of a session: only for the console's paths, never to scripts, never
/// sent cross-site; `Secure` behind HTTPS. `None` ends the session in the browser.
pub fn set_cookie(value: Option<&str>, secure: bool) -> String {
    let builder = cookie::Cookie::build((COOKIE, value.unwrap_or_default().to_string()))
        .path("/console")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(match value {
            Some(_) => SESSION_SECS,
            None => 0,
        }));
    builder.build().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> BTreeMap<String, String> {
        [
            ("alice".to_string(), "alice-token-0123456789".to_string()),
            ("bob.ops".to_string(), "bob-token-0123456789xx".to_string()),
        ]
        .into()
    }

    #[test]
    fn a_session_proves_its_approver_until_it_expires() {
        let tokens = tokens();
        let session = issue(&tokens, "alice", 0, 1000).unwrap();
        let verified = verify(&tokens, Some(session.cookie_value()), 0, 1001).unwrap();
        assert_eq!(verified.approver, "alice");
        assert_eq!(
            verify(
                &tokens,
                Some(session.cookie_value()),
                0,
                1000 + SESSION_SECS
            ),
            Err(SessionError::Invalid),
            "expired"
        );
        let dotted = issue(&tokens, "bob.ops", 0, 1000).unwrap();
        assert_eq!(
            verify(&tokens, Some(dotted.cookie_value()), 0, 1001)
                .unwrap()
                .approver,
            "bob.ops"
        );
    }

    #[test]
    fn forged_altered_or_orphaned_sessions_are_refused() {
        let tokens = tokens();
        let session = issue(&tokens, "alice", 0, 1000).unwrap();
        let cookie = session.cookie_value();
        // Another approver's name, or a later expiry, under alice's signature.
        let signature = cookie.rsplit('.').next().unwrap();
        for forged in [
            format!("bob.ops.{}.{signature}", 1000 + SESSION_SECS),
            format!("alice.{}.{signature}", 9_999_999_999i64),
            format!("alice.{}.00", 1000 + SESSION_SECS),
            "alice".to_string(),
            String::new(),
        ] {
            assert_eq!(
                verify(&tokens, Some(&forged), 0, 1001),
                Err(SessionError::Invalid),
                "{forged}"
            );
        }
        let mut without_alice = tokens.clone();
        without_alice.remove("alice");
        assert_eq!(
            verify(&without_alice, Some(cookie), 0, 1001),
            Err(SessionError::Invalid),
            "removing the token ends the session"
        );
        let mut rotated = tokens.clone();
        rotated.insert("alice".into(), "alice-new-token-0123456".into());
        assert_eq!(
            verify(&rotated, Some(cookie), 0, 1001),
            Err(SessionError::Invalid),
            "rotating the token ends the session"
        );
        assert_eq!(verify(&tokens, None, 0, 1001), Err(SessionError::Missing));
        assert_eq!(
            verify(&BTreeMap::new(), Some(cookie), 0, 1001),
            Err(SessionError::NoTokens),
            "never open by default"
        );
    }

    #[test]
    fn signing_out_moves_the_epoch_and_ends_the_session() {
        let tokens = tokens();
        let session = issue(&tokens, "alice", 0, 1000).unwrap();
        assert_eq!(claimed_approver(session.cookie_value()), Some("alice"));
        assert!(verify(&tokens, Some(session.cookie_value()), 0, 1001).is_ok());
        assert_eq!(
            verify(&tokens, Some(session.cookie_value()), 1, 1001),
            Err(SessionError::Invalid),
            "after a sign-out"
        );
        let next = issue(&tokens, "alice", 1, 1002).unwrap();
        assert!(verify(&tokens, Some(next.cookie_value()), 1, 1003).is_ok());
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let tokens = tokens();
        let first = issue(&tokens, "alice", 0, 1000).unwrap();
        let second = issue(&tokens, "alice", 0, 2000).unwrap();
        let csrf = first.csrf(&tokens);
        assert_eq!(first.check_csrf(&tokens, &csrf), Ok(()));
        assert_eq!(
            second.check_csrf(&tokens, &csrf),
            Err(SessionError::BadCsrf)
        );
        assert_eq!(first.check_csrf(&tokens, ""), Err(SessionError::BadCsrf));
        assert_eq!(first.check_csrf(&tokens, "zz"), Err(SessionError::BadCsrf));
    }

    #[test]
    fn tokens_name_their_approver() {
        let tokens = tokens();
        assert_eq!(
            approver_of(&tokens, "alice-token-0123456789").as_deref(),
            Some("alice")
        );
        assert_eq!(approver_of(&tokens, "alice-token-012345678"), None);
    }

    #[test]
    fn cookies_are_found_among_others() {
        assert_eq!(
            cookie_from_header("a=1; nodemedic_session=x.1.ab; b=2", COOKIE).as_deref(),
            Some("x.1.ab")
        );
        assert_eq!(cookie_from_header("a=1", COOKIE), None);
    }

    #[test]
    fn the_session_cookie_is_http_only_strict_and_scoped_to_the_console() {
        let set = set_cookie(Some("alice.1.sig"), true);
        let parsed = cookie::Cookie::parse(set.clone()).unwrap();
        assert_eq!(parsed.value(), "alice.1.sig");
        assert_eq!(parsed.path(), Some("/console"));
        assert_eq!(parsed.http_only(), Some(true));
        assert_eq!(parsed.secure(), Some(true));
        assert_eq!(parsed.same_site(), Some(cookie::SameSite::Strict));
        assert_eq!(
            parsed.max_age(),
            Some(cookie::time::Duration::seconds(SESSION_SECS))
        );
        let ended = cookie::Cookie::parse(set_cookie(None, false)).unwrap();
        assert_eq!(ended.max_age(), Some(cookie::time::Duration::ZERO));
        assert_eq!(ended.secure(), None);
        assert_eq!(
            cookie_from_header("theme=dark; nodemedic_session=alice.1.sig; x=y", COOKIE).as_deref(),
            Some("alice.1.sig")
        );
        assert_eq!(cookie_from_header("nodemedic_session_x=1", COOKIE), None);
    }
}
