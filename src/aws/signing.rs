//! The credentials that sign a cluster's token, kept while they are fresh: a member account's
//! come from AssumeRole, and asking the provider for every reading (each incident, each poll of a
//! verification) would assume the role each time.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

/// Credentials are renewed this long before they expire: a token signed with them must outlive
/// the reading it authorizes.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// Clones share one cache.
#[derive(Clone)]
pub struct SigningCredentials {
    provider: Option<SharedCredentialsProvider>,
    cached: std::sync::Arc<tokio::sync::Mutex<Option<Credentials>>>,
}

impl SigningCredentials {
    pub fn new(provider: Option<SharedCredentialsProvider>) -> Self {
        Self {
            provider,
            cached: std::sync::Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// Fresh credentials, from the cache or the provider; `None` when there are none.
    pub async fn get(&self) -> Option<Credentials> {
        let mut cached = self.cached.lock().await;
        if let Some(credentials) = cached.as_ref().filter(|c| fresh(c, SystemTime::now())) {
            return Some(credentials.clone());
        }
        let provided = self.provider.as_ref()?.provide_credentials().await.ok()?;
        *cached = Some(provided.clone());
        Some(provided)
    }
}

impl std::fmt::Debug for SigningCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCredentials").finish_non_exhaustive()
    }
}

fn fresh(credentials: &Credentials, now: SystemTime) -> bool {
    credentials.expiry().is_none_or(|expiry| {
        now.checked_add(RENEW_BEFORE)
            .is_some_and(|soon| expiry > soon)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        lifetime: Duration,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.calls.fetch_add(1, Ordering::SeqCst);
            aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
                "AKID",
                "secret",
                Some("session".into()),
                Some(SystemTime::now() + self.lifetime),
                "counting",
            )))
        }
    }

    async fn calls_for(lifetime: Duration) -> usize {
        let calls = Arc::new(AtomicUsize::new(0));
        let signing = SigningCredentials::new(Some(SharedCredentialsProvider::new(Counting {
            calls: calls.clone(),
            lifetime,
        })));
        for _ in 0..3 {
            assert!(signing.get().await.is_some());
        }
        calls.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn fresh_credentials_are_reused_and_expiring_ones_renewed() {
        assert_eq!(
            calls_for(Duration::from_secs(3600)).await,
            1,
            "an hour: one AssumeRole"
        );
        assert_eq!(
            calls_for(Duration::from_secs(60)).await,
            3,
            "within five minutes of expiry"
        );
        assert!(SigningCredentials::new(None).get().await.is_none());
    }
}
