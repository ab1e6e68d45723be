//! Provider logins shared across instances: one login per token lifetime
//! per provider, however many Lambda instances run.
//!
//! Each client keeps its login (QPay's tokens, DirectPay's session,
//! the Payment Engine's tokens, epayment.kz's `webapi` token) in a
//! [`SharedLogin`]. A call takes this instance's copy while it is valid;
//! a cold instance reads the one in the table (`store::sessions`); only
//! when none is valid does one instance log in, under a conditional lease,
//! and store what it got, while the others wait a moment and read it. A
//! login the provider refuses (401) is replaced once: the refused one is
//! named by its digest, so an instance that finds another login already
//! stored takes that one instead of logging in again. Without a table
//! (clients built on their own in unit tests) the login is this
//! instance's only, as before.

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Digest;
use time::OffsetDateTime;

use super::transport::{ProviderHttp, Reply, Retry};
use super::ProviderError;
use crate::secrets::SecretString;
use crate::store::{Store, StoredSession};

/// How long a login may take before another instance may try.
const LEASE: Duration = Duration::from_secs(10);
/// How long an instance that did not get the lease waits for the other's
/// login before logging in itself (a payer is never kept waiting on a peer
/// that died).
const WAIT: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(150);

/// A login in use, with what tells it apart from another.
#[derive(Debug, Clone)]
pub struct Held<T> {
    value: T,
    digest: String,
    until: OffsetDateTime,
}

impl<T> Held<T> {
    pub fn value(&self) -> &T {
        &self.value
    }
}

/// One provider login, shared through the table where there is one.
#[derive(Debug)]
pub struct SharedLogin<T> {
    name: &'static str,
    provider: &'static str,
    store: Option<Store>,
    local: tokio::sync::Mutex<Option<Held<T>>>,
}

fn digest_of(json: &str) -> String {
    hex::encode(&sha2::Sha256::digest(json.as_bytes())[..16])
}

impl<T> SharedLogin<T>
where
    T: Serialize + DeserializeOwned + Clone + Send,
{
    /// `name` keys the stored login (a provider, or a provider and scope).
    pub fn new(name: &'static str, provider: &'static str, store: Option<Store>) -> Self {
        SharedLogin {
            name,
            provider,
            store,
            local: tokio::sync::Mutex::new(None),
        }
    }

    fn usable(held: &Held<T>, refused: Option<&Held<T>>, now: OffsetDateTime) -> bool {
        held.until > now && refused.is_none_or(|r| r.digest != held.digest)
    }

    fn read_stored(&self, stored: StoredSession) -> Option<Held<T>> {
        match serde_json::from_str::<T>(stored.value.expose()) {
            Ok(value) => Some(Held {
                value,
                digest: stored.digest,
                until: stored.until,
            }),
            Err(_) => {
                tracing::warn!(
                    login = self.name,
                    "stored provider login unreadable; logging in"
                );
                None
            }
        }
    }

    async fn stored(&self, store: &Store) -> Option<Held<T>> {
        match store.session(self.name).await {
            Ok(found) => found.and_then(|s| self.read_stored(s)),
            Err(e) => {
                tracing::warn!(login = self.name, error = %e, "could not read the shared provider login");
                None
            }
        }
    }

    /// The login to use: this instance's, the table's, or a new one from
    /// `login` (given the previous one, for a refresh token). `refused`:
    /// the login the provider just refused, never handed out again.
    pub async fn get<F, Fut>(
        &self,
        refused: Option<&Held<T>>,
        login: F,
    ) -> Result<Held<T>, ProviderError>
    where
        F: FnOnce(Option<T>) -> Fut,
        Fut: Future<Output = Result<(T, OffsetDateTime), ProviderError>>,
    {
        // One login at a time within the instance, too.
        let mut local = self.local.lock().await;
        let now = OffsetDateTime::now_utc();
        if let Some(held) = local.as_ref().filter(|h| Self::usable(h, refused, now)) {
            return Ok(held.clone());
        }
        let previous = local.take().map(|h| h.value);
        let fresh = match &self.store {
            None => self.log_in(login, previous, None).await?,
            Some(store) => self.shared(store, refused, login, previous).await?,
        };
        *local = Some(fresh.clone());
        Ok(fresh)
    }

    async fn shared<F, Fut>(
        &self,
        store: &Store,
        refused: Option<&Held<T>>,
        login: F,
        previous: Option<T>,
    ) -> Result<Held<T>, ProviderError>
    where
        F: FnOnce(Option<T>) -> Fut,
        Fut: Future<Output = Result<(T, OffsetDateTime), ProviderError>>,
    {
        let now = OffsetDateTime::now_utc();
        let stored = self.stored(store).await;
        if let Some(held) = stored.as_ref().filter(|h| Self::usable(h, refused, now)) {
            return Ok(held.clone());
        }
        // The stored one (even expired) may carry a refresh token.
        let seen = stored.as_ref().map(|h| h.digest.clone());
        let previous = previous.or(stored.map(|h| h.value));
        match store
            .claim_session_login(self.name, seen.as_deref(), now, LEASE)
            .await
        {
            Ok(true) => return self.log_in(login, previous, Some(store)).await,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(login = self.name, error = %e, "could not take the provider login lease");
                return self.log_in(login, previous, Some(store)).await;
            }
        }
        // Another instance is logging in, or has just stored a login: take
        // it when it lands.
        let waited = tokio::time::Instant::now();
        while waited.elapsed() < WAIT {
            tokio::time::sleep(POLL).await;
            let now = OffsetDateTime::now_utc();
            if let Some(held) = self
                .stored(store)
                .await
                .filter(|h| Self::usable(h, refused, now))
            {
                return Ok(held);
            }
        }
        self.log_in(login, previous, Some(store)).await
    }

    async fn log_in<F, Fut>(
        &self,
        login: F,
        previous: Option<T>,
        store: Option<&Store>,
    ) -> Result<Held<T>, ProviderError>
    where
        F: FnOnce(Option<T>) -> Fut,
        Fut: Future<Output = Result<(T, OffsetDateTime), ProviderError>>,
    {
        let (value, until) = login(previous).await?;
        let json = serde_json::to_string(&value).map_err(|e| ProviderError::Decode {
            provider: self.provider,
            reason: format!("login not storable: {e}"),
        })?;
        let held = Held {
            digest: digest_of(&json),
            value,
            until,
        };
        if let Some(store) = store {
            let stored = StoredSession {
                value: SecretString::from(json),
                digest: held.digest.clone(),
                until,
            };
            if let Err(e) = store.put_session(self.name, &stored).await {
                tracing::warn!(login = self.name, error = %e, "could not share the provider login");
            }
        }
        Ok(held)
    }
}

/// A client whose calls carry a shared login.
pub(crate) trait LoggedIn: Sync {
    type Login: Send + Sync;

    /// The login every instance shares; `refused`: the one the provider
    /// just refused, to be replaced.
    fn login<'a>(
        &'a self,
        refused: Option<&'a Held<Self::Login>>,
    ) -> impl Future<Output = Result<Held<Self::Login>, ProviderError>> + Send + 'a;

    /// Its outbound HTTP.
    fn transport(&self) -> &ProviderHttp;
}

/// Implements [`LoggedIn`] for a client with an `http` transport and a
/// method that gets its shared login.
macro_rules! logged_in {
    ($client:ty, $login:ty, $method:ident) => {
        impl $crate::providers::session::LoggedIn for $client {
            type Login = $login;

            fn login<'a>(
                &'a self,
                refused: Option<&'a $crate::providers::session::Held<$login>>,
            ) -> impl std::future::Future<
                Output = Result<
                    $crate::providers::session::Held<$login>,
                    $crate::providers::ProviderError,
                >,
            > + Send
                   + 'a {
                self.$method(refused)
            }

            fn transport(&self) -> &$crate::providers::transport::ProviderHttp {
                &self.http
            }
        }
    };
}
pub(crate) use logged_in;

/// A call under the shared login; a 401 renews the login once and sends
/// the call again with the new one.
pub(crate) async fn authed<C: LoggedIn>(
    client: &C,
    retry: Retry,
    build: impl Fn(&reqwest::Client, &C::Login) -> reqwest::RequestBuilder,
) -> Result<Reply, ProviderError> {
    let held = client.login(None).await?;
    let reply = client
        .transport()
        .send(retry, |c| build(c, held.value()))
        .await?;
    if reply.status != reqwest::StatusCode::UNAUTHORIZED {
        return Ok(reply);
    }
    let fresh = client.login(Some(&held)).await?;
    client
        .transport()
        .send(retry, |c| build(c, fresh.value()))
        .await
}
