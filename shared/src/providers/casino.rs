//! The 747 Casino: player lookup through the operator's bridge, and
//! transfers into a player's account. Transfers carry a nonce derived from
//! our payment id, the same on every attempt. Whether the bridge answers a
//! repeated nonce with the first result is the operator's to confirm
//! (`nonce_dedup`, off by default, PROVIDERS.md): only then is a transfer
//! whose answer was lost sent again.
//!
//! Tokens are per top manager, kept in one secret as a map from manager to
//! token; the token is chosen by the player's top manager. Lookups are
//! cached briefly.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::ids::CasinoUsername;
use crate::money::{Currency, MajorAmount, Money};
use crate::providers::transport::{HttpPolicy, ProviderHttp, Reply, Retry};
use crate::providers::{excerpt, ProviderError};
use crate::secrets::Secret;

const PROVIDER: &str = "casino";

/// How long a player lookup is reused.
const LOOKUP_TTL: Duration = Duration::from_secs(30);

/// The casino's settings, as stored in Secrets Manager.
#[derive(Debug, Clone, Deserialize)]
pub struct CasinoConfig {
    /// The operator's player-lookup bridge (`GET {lookup_url}?username=`).
    pub lookup_url: String,
    /// The casino bridge (`POST {base_url}/Default/Transfer`).
    pub base_url: String,
    /// Top manager name to its token.
    pub tokens: Secret<HashMap<String, String>>,
    #[serde(default = "platform")]
    pub platform: u32,
    /// The operator confirms that the bridge deduplicates transfers by
    /// nonce. Off (the default), a transfer whose outcome is unknown is
    /// never sent again.
    #[serde(default)]
    pub nonce_dedup: bool,
}

fn platform() -> u32 {
    1
}

/// A casino player.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Player {
    pub username: String,
    pub client_id: String,
    pub user_type: Option<String>,
    pub top_manager: String,
    pub immediate_manager: Option<String>,
    pub balance: Money,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LookupReply {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    client_id: Option<serde_json::Value>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    balance: Option<MajorAmount>,
    #[serde(default)]
    user_type: Option<serde_json::Value>,
    #[serde(default)]
    top_manager: Option<String>,
    #[serde(default)]
    immediate_manager: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TransferRequest<'a> {
    auth_token: &'a str,
    platform: u32,
    amount: &'a serde_json::value::RawValue,
    to_agent: bool,
    currency: &'a str,
    nonce: &'a str,
    /// A number on the bridge (public integration code); sent as one.
    client_id: serde_json::Value,
    username: &'a str,
    comment: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransferReply {
    status: i64,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    transaction_id: Option<serde_json::Value>,
}

/// A transfer the casino accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The casino's id for it, or our nonce when the casino gives none.
    pub transaction_id: String,
}

#[derive(Debug)]
pub struct CasinoClient {
    http: ProviderHttp,
    config: CasinoConfig,
    players: Mutex<HashMap<String, (Instant, Player)>>,
}

fn scalar_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl CasinoClient {
    pub fn new(config: CasinoConfig, policy: HttpPolicy) -> Result<CasinoClient, ProviderError> {
        Ok(CasinoClient {
            http: ProviderHttp::new(PROVIDER, policy)?,
            config,
            players: Mutex::new(HashMap::new()),
        })
    }

    /// The player, or `None` if the casino does not know them; a lookup of
    /// the last 30 seconds is reused (enough to pick the manager's token).
    pub async fn player(&self, username: &CasinoUsername) -> Result<Option<Player>, ProviderError> {
        if let Some((at, p)) = self.players.lock().await.get(username.as_str()) {
            if at.elapsed() < LOOKUP_TTL {
                return Ok(Some(p.clone()));
            }
        }
        self.lookup(username).await
    }

    /// The player as the casino sees them now (for showing a balance).
    /// `lookup_url` is a template: `{username}` in it is replaced (public
    /// bridge: `/api/Bridge/get-user/{username}`); without it the name goes
    /// as `?username=` (the seed's bridge).
    pub async fn lookup(&self, username: &CasinoUsername) -> Result<Option<Player>, ProviderError> {
        let template = &self.config.lookup_url;
        let templated = template.contains("{username}");
        let url = template.replace("{username}", username.as_str());
        let reply = self
            .http
            .send(Retry::Safe, |c| {
                let request = c.get(&url);
                if templated {
                    request
                } else {
                    request.query(&[("username", username.as_str())])
                }
            })
            .await?;
        if reply.status == reqwest::StatusCode::NOT_FOUND {
            // "No such player" only when the bridge says so in its own
            // words; a bare 404 is a wrong URL, not a missing player.
            return match serde_json::from_slice::<LookupReply>(&reply.body) {
                Ok(r) if r.success == Some(false) || r.message.is_some() => Ok(None),
                _ => Err(ProviderError::Rejected {
                    provider: PROVIDER,
                    status: 404,
                    code: "http_404".into(),
                    message: "the lookup URL answered 404 without a bridge reply".into(),
                }),
            };
        }
        let found: LookupReply = ok_json(&reply)?;
        let Some(player) = player_from(found, username)? else {
            return Ok(None);
        };
        self.players
            .lock()
            .await
            .insert(username.to_string(), (Instant::now(), player.clone()));
        Ok(Some(player))
    }
}

/// A lookup reply as a player: the seed's bridge says `success` and gives a
/// balance; the public bridge gives neither (a reply with a clientId is a
/// player, `success: false` is none, and a missing balance is zero).
fn player_from(
    found: LookupReply,
    username: &CasinoUsername,
) -> Result<Option<Player>, ProviderError> {
    if found.success == Some(false) {
        return Ok(None);
    }
    let player = Player {
        username: found.username.unwrap_or_else(|| username.to_string()),
        client_id: found
            .client_id
            .as_ref()
            .and_then(scalar_text)
            .ok_or_else(|| decode("lookup without clientId"))?,
        user_type: found.user_type.as_ref().and_then(scalar_text),
        top_manager: found
            .top_manager
            .ok_or_else(|| decode("lookup without topManager"))?,
        immediate_manager: found.immediate_manager,
        balance: found
            .balance
            .map(|b| b.to_money(Currency::Php))
            .transpose()
            .map_err(|e| decode(&format!("balance: {e}")))?
            .unwrap_or(Money::zero(Currency::Php)),
    };
    Ok(Some(player))
}

impl CasinoClient {
    /// Whether a transfer may be sent again after an unknown outcome.
    pub fn deduplicates_nonces(&self) -> bool {
        self.config.nonce_dedup
    }

    /// Moves `amount` (PHP) into the player's account, with the same
    /// `nonce` on every attempt. Where the bridge deduplicates nonces it is
    /// retried like a safe call; otherwise only answers that say it was not
    /// processed are retried, and a timeout or a 5xx is returned as it is
    /// ([`ProviderError::outcome_unknown`]).
    pub async fn transfer(
        &self,
        player: &Player,
        amount: Money,
        nonce: &str,
        comment: &str,
    ) -> Result<Transfer, ProviderError> {
        if amount.currency() != Currency::Php {
            return Err(ProviderError::Amount {
                provider: PROVIDER,
                source: crate::money::MoneyError::CurrencyMismatch(
                    Currency::Php,
                    amount.currency(),
                ),
            });
        }
        let token = self
            .config
            .tokens
            .expose()
            .get(&player.top_manager)
            .ok_or_else(|| ProviderError::Auth {
                provider: PROVIDER,
                reason: "no token for the player's top manager".into(),
            })?;
        let amount_text = serde_json::value::RawValue::from_string(amount.to_major_string())
            .map_err(|e| ProviderError::Decode {
                provider: PROVIDER,
                reason: e.to_string(),
            })?;
        let body = TransferRequest {
            auth_token: token,
            platform: self.config.platform,
            amount: &amount_text,
            to_agent: false,
            currency: "php",
            nonce,
            client_id: client_id_on_wire(&player.client_id),
            username: &player.username,
            comment,
        };
        let url = format!(
            "{}/Default/Transfer",
            self.config.base_url.trim_end_matches('/')
        );
        let retry = if self.config.nonce_dedup {
            Retry::Safe
        } else {
            Retry::NotSent
        };
        let reply = self.http.send(retry, |c| c.post(&url).json(&body)).await?;
        transfer_reply(&reply, nonce)
    }
}

/// get-balances' reply (fixtures/casino/get_balances.reply.json): a status
/// (1 with "Success") and a list of balances, each a JSON number.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BalancesReply {
    status: i64,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    balances: Vec<BalanceRow>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BalanceRow {
    #[serde(default)]
    balance_type_id: Option<String>,
    currency_id: String,
    balance: MajorAmount,
}

impl CasinoClient {
    /// Every top manager's (agent's) balance, the float top-ups draw on:
    /// one result per manager in the tokens secret, by name.
    pub async fn agent_balances(&self) -> Vec<(String, Result<Money, ProviderError>)> {
        let mut managers: Vec<String> = self.config.tokens.expose().keys().cloned().collect();
        managers.sort();
        let mut out = Vec::with_capacity(managers.len());
        for manager in managers {
            let balance = self.agent_balance(&manager).await;
            out.push((manager, balance));
        }
        out
    }

    /// One agent's PHP balance: looked up for its clientId, then
    /// `POST /account/get-balances` with its own token. The body has the
    /// bridge's `GetClientBalancesRequest` properties only (no
    /// `currency`: the schema has none and allows no others; the PHP row
    /// is picked from the reply).
    async fn agent_balance(&self, manager: &str) -> Result<Money, ProviderError> {
        let token = self
            .config
            .tokens
            .expose()
            .get(manager)
            .cloned()
            .ok_or_else(|| ProviderError::Auth {
                provider: PROVIDER,
                reason: "no token for the manager".into(),
            })?;
        let username: CasinoUsername = manager
            .parse()
            .map_err(|_| decode("a manager name that is no casino username"))?;
        let agent = self
            .lookup(&username)
            .await?
            .ok_or_else(|| ProviderError::NotFound {
                provider: PROVIDER,
                reference: manager.to_string(),
            })?;
        let body = serde_json::json!({
            "authToken": token,
            "platform": self.config.platform,
            "clientId": client_id_on_wire(&agent.client_id),
            "username": agent.username,
        });
        let url = format!(
            "{}/account/get-balances",
            self.config.base_url.trim_end_matches('/')
        );
        let reply = self
            .http
            .send(Retry::Safe, |c| c.post(&url).json(&body))
            .await?;
        read_balances(ok_json(&reply)?)
    }
}

fn decode(reason: &str) -> ProviderError {
    ProviderError::Decode {
        provider: PROVIDER,
        reason: reason.to_string(),
    }
}

/// The PHP main balance in a get-balances reply.
fn read_balances(reply: BalancesReply) -> Result<Money, ProviderError> {
    if reply.status != 1 {
        return Err(ProviderError::Rejected {
            provider: PROVIDER,
            status: 200,
            code: reply.status.to_string(),
            message: reply.message.unwrap_or_default(),
        });
    }
    let php = |r: &&BalanceRow| r.currency_id.eq_ignore_ascii_case("PHP");
    let row = reply
        .balances
        .iter()
        .filter(php)
        .find(|r| r.balance_type_id.as_deref().is_none_or(|t| t == "main"))
        .or_else(|| reply.balances.iter().find(php))
        .ok_or_else(|| decode("no PHP balance in the reply"))?;
    row.balance
        .to_money(Currency::Php)
        .map_err(|e| decode(&format!("balance: {e}")))
}

/// What a transfer's reply says. Running code reads status 0 as done ("ok"
/// beside it, or alone); some examples use 1 with "Success" for success,
/// and a documented refusal carries status 0 with its reason as the
/// message (fixtures/casino). The bridge's OpenAPI file declares statuses
/// 0 to 4 and names none of them, so no status proves the transfer was
/// not made: everything but the plain success is ambiguous, and the
/// top-up waits for a person (or, where the bridge deduplicates nonces,
/// for a resend under the same nonce).
fn judge_transfer(done: TransferReply, nonce: &str) -> Result<Transfer, ProviderError> {
    let message = done.message.clone().unwrap_or_default();
    let says_ok = message.eq_ignore_ascii_case("ok") || message.eq_ignore_ascii_case("success");
    match (done.status, says_ok || message.is_empty()) {
        (0, true) => Ok(Transfer {
            transaction_id: done
                .transaction_id
                .as_ref()
                .and_then(scalar_text)
                .unwrap_or_else(|| nonce.to_string()),
        }),
        (status, _) => Err(ProviderError::Ambiguous {
            provider: PROVIDER,
            reason: format!("transfer status {status} with message {message:?}"),
        }),
    }
}

/// A transfer's HTTP answer. Only answers that say the bridge did not take
/// the request are a clean "no": a refused token (401, 403) and a rate
/// limit (429). A 5xx, or any other 4xx to a transfer that was sent, does
/// not say whether the chips moved.
fn transfer_reply(reply: &Reply, nonce: &str) -> Result<Transfer, ProviderError> {
    let status = reply.status.as_u16();
    match status {
        200..=299 => judge_transfer(reply.json(PROVIDER)?, nonce),
        401 | 403 | 429 | 500..=599 => Err(http_error(reply)),
        _ => Err(ProviderError::Ambiguous {
            provider: PROVIDER,
            reason: format!("HTTP {status} to a transfer: {}", excerpt(&reply.body)),
        }),
    }
}

/// The player's clientId as the bridge takes it: a JSON number when it is
/// one (it always is in public integration code), else the text as given.
fn client_id_on_wire(id: &str) -> serde_json::Value {
    id.parse::<u64>()
        .map(serde_json::Value::from)
        .unwrap_or_else(|_| serde_json::Value::from(id))
}

fn ok_json<T: serde::de::DeserializeOwned>(reply: &Reply) -> Result<T, ProviderError> {
    if !reply.status.is_success() {
        return Err(http_error(reply));
    }
    reply.json(PROVIDER)
}

/// A non-2xx answer as an error: a refused token is `Auth`, the rest the
/// bridge's rejection with its HTTP status (a 5xx reads as unknown).
fn http_error(reply: &Reply) -> ProviderError {
    let status = reply.status.as_u16();
    if matches!(status, 401 | 403) {
        return ProviderError::Auth {
            provider: PROVIDER,
            reason: format!("HTTP {status}"),
        };
    }
    ProviderError::Rejected {
        provider: PROVIDER,
        status,
        code: format!("http_{status}"),
        message: excerpt(&reply.body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> LookupReply {
        crate::providers::fixture_json("casino", name)
    }

    #[test]
    fn get_balances_replies_are_read_exactly_and_only_in_php() {
        let documented: BalancesReply =
            crate::providers::fixture_json("casino", "get_balances.reply.json");
        // The documented example is a USD balance: not the float we need.
        assert!(matches!(
            read_balances(documented),
            Err(ProviderError::Decode { .. })
        ));
        let php: BalancesReply = serde_json::from_str(
            r#"{"status": 1, "message": "Success", "balances": [
                {"balanceTypeId": "bonus", "currencyId": "PHP", "balance": 3.0},
                {"balanceTypeId": "main", "currencyId": "php", "balance": 1200.50}]}"#,
        )
        .unwrap();
        assert_eq!(read_balances(php).unwrap().minor(), 120_050);
        let refused: BalancesReply =
            serde_json::from_str(r#"{"status": 2, "message": "invalid token"}"#).unwrap();
        assert!(matches!(
            read_balances(refused),
            Err(ProviderError::Rejected { .. })
        ));
    }

    #[test]
    fn both_bridges_lookup_replies_are_players() {
        let name: CasinoUsername = "Player01".parse().unwrap();
        // The public bridge: no `success`, no balance, a numeric clientId.
        let public = player_from(fixture("lookup.reply.json"), &name)
            .unwrap()
            .expect("a reply with a clientId is a player");
        assert_eq!(public.client_id, "100000001");
        assert_eq!(public.top_manager, "TopManagerA");
        assert!(public.balance.is_zero());
        // The seed's bridge: `success` and a balance.
        let seed: LookupReply = serde_json::from_value(serde_json::json!({
            "success": true, "clientId": "1001", "username": "player1", "balance": "12.50",
            "userType": "player", "topManager": "TM", "immediateManager": "IM"}))
        .unwrap();
        let seed = player_from(seed, &name).unwrap().unwrap();
        assert_eq!(seed.balance.minor(), 1_250);
        let none: LookupReply =
            serde_json::from_value(serde_json::json!({"success": false, "message": "no user"}))
                .unwrap();
        assert_eq!(player_from(none, &name).unwrap(), None);
    }

    fn reply(name: &str) -> TransferReply {
        crate::providers::fixture_json("casino", name)
    }

    fn judged(body: serde_json::Value) -> Result<Transfer, ProviderError> {
        judge_transfer(serde_json::from_value(body).unwrap(), "n-1")
    }

    fn answered(status: u16, body: &str) -> Result<Transfer, ProviderError> {
        transfer_reply(
            &Reply {
                status: reqwest::StatusCode::from_u16(status).unwrap(),
                headers: Default::default(),
                body: body.to_string().into(),
            },
            "n-1",
        )
    }

    #[test]
    fn a_transfer_is_done_only_when_every_reading_agrees() {
        // The documented success: done, under our nonce (no id in it).
        let ok = judge_transfer(reply("transfer.reply.json"), "n-1").unwrap();
        assert_eq!(ok.transaction_id, "n-1");
        assert!(judged(serde_json::json!({"status": 0})).is_ok());
        // The documented refusal says status 0 too: not done, not refused.
        let refusal = judge_transfer(reply("withdraw.reply.rejected.json"), "n-1");
        assert!(
            matches!(&refusal, Err(e @ ProviderError::Ambiguous { .. }) if e.outcome_unknown()),
            "{refusal:?}"
        );
        // 1 with "Success" is success in other examples: unknown, too.
        let other = judged(serde_json::json!({"status": 1, "message": "Success"}));
        assert!(matches!(&other, Err(e) if e.outcome_unknown()), "{other:?}");
        // 2 to 4 are declared and never described: no proof of "not done".
        for status in 2..=4 {
            let odd = judged(serde_json::json!({"status": status, "message": "user not found"}));
            assert!(matches!(&odd, Err(e) if e.outcome_unknown()), "{odd:?}");
        }
    }

    #[test]
    fn only_a_refused_token_or_a_rate_limit_says_a_transfer_was_not_taken() {
        for status in [401, 403, 429] {
            let e = answered(status, "").unwrap_err();
            assert!(!e.outcome_unknown(), "{status}: {e:?}");
        }
        // Sent, then a 4xx or 5xx the bridge never documented: unknown.
        for status in [400, 404, 409, 422, 500, 502, 503, 504] {
            let e = answered(status, "{}").unwrap_err();
            assert!(e.outcome_unknown(), "{status}: {e:?}");
        }
        // A success we cannot read is unknown too.
        assert!(answered(200, "<html>").unwrap_err().outcome_unknown());
        assert!(answered(200, r#"{"status": 0, "message": "ok"}"#).is_ok());
    }

    #[test]
    fn client_ids_go_out_as_numbers() {
        assert_eq!(client_id_on_wire("1001"), serde_json::json!(1001));
        assert_eq!(client_id_on_wire("c-7"), serde_json::json!("c-7"));
    }
}
