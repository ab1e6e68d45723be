//! The 747 Casino bridge: player lookup (`GET /casino/lookup?username=`),
//! transfers (`POST /casino/Default/Transfer`) that honour the nonce, and
//! balances (`POST /casino/account/get-balances`). Players sit under top
//! managers; each top manager has its own token.
//!
//! Controls under `/_sandbox/casino/`: `GET transfers` (the history),
//! `GET players/{username}`.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::kit::lock;

/// Handlers share this provider's state only.
type Shared = std::sync::Arc<State>;

/// Top manager -> token, as the operator's secret holds them.
pub const TOKENS: [(&str, &str); 2] = [
    ("TM_ALPHA", "tok-alpha-sandbox"),
    ("TM_BETA", "tok-beta-sandbox"),
];

#[derive(Debug, Clone, Serialize)]
pub struct Player {
    pub username: String,
    pub client_id: u64,
    pub user_type: String,
    pub top_manager: String,
    pub immediate_manager: String,
    /// Centavos: the sandbox keeps exact integers too.
    pub balance_centavos: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransferRecord {
    pub transaction_id: String,
    pub nonce: String,
    pub username: String,
    pub amount: String,
}

pub struct State {
    pub players: Mutex<HashMap<String, Player>>,
    /// nonce -> the first answer for it.
    pub transfers: Mutex<Vec<TransferRecord>>,
    /// Whether a repeated nonce is answered with the first result (on by
    /// default). Off, the bridge behaves as the public client suggests the
    /// real one may: every call moves money.
    pub dedup: Mutex<bool>,
    /// The answer the next booked transfer gets instead of the documented
    /// success (`/_sandbox/casino/answer`).
    pub next_answer: Mutex<Option<Value>>,
}

impl Default for State {
    fn default() -> State {
        // The top managers are agents with a float of their own (what
        // get-balances reports for them); TM_BETA's is running low.
        let players = [
            ("player1", 1001, "player", "TM_ALPHA", "IM_ALPHA_1", 0),
            ("player2", 1002, "player", "TM_BETA", "IM_BETA_1", 0),
            ("player3", 1003, "player", "TM_ALPHA", "IM_ALPHA_2", 0),
            ("TM_ALPHA", 9001, "agent", "TM_ALPHA", "TM_ALPHA", 5_000_000),
            ("TM_BETA", 9002, "agent", "TM_BETA", "TM_BETA", 120_050),
        ]
        .into_iter()
        .map(|(name, id, kind, top, immediate, float)| {
            (
                name.to_string(),
                Player {
                    username: name.to_string(),
                    client_id: id,
                    user_type: kind.into(),
                    top_manager: top.into(),
                    immediate_manager: immediate.into(),
                    balance_centavos: float,
                },
            )
        })
        .collect();
        State {
            players: Mutex::new(players),
            transfers: Mutex::new(Vec::new()),
            dedup: Mutex::new(true),
            next_answer: Mutex::new(None),
        }
    }
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/lookup", get(lookup))
        .route("/api/Bridge/get-user/{username}", get(bridge_user))
        .route("/Default/Transfer", post(transfer))
        .route("/account/get-balances", post(balances))
}

pub fn controls() -> Router<Shared> {
    Router::new()
        .route("/transfers", get(history))
        .route("/dedup", post(set_dedup))
        .route("/answer", post(set_answer))
        .route("/players/{username}", get(player))
}

fn centavos_text(c: i64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

#[derive(Deserialize)]
struct LookupQuery {
    #[serde(default)]
    username: String,
}

async fn lookup(AxState(s): AxState<Shared>, Query(q): Query<LookupQuery>) -> Response {
    let Some(p) = lock(&s.players).get(&q.username).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"success": false, "message": "user not found"})),
        )
            .into_response();
    };
    Json(json!({
        "success": true,
        "clientId": p.client_id,
        "username": p.username,
        "balance": centavos_text(p.balance_centavos),
        "userType": p.user_type,
        "topManager": p.top_manager,
        "immediateManager": p.immediate_manager,
    }))
    .into_response()
}

/// The public bridge's lookup (`GET /api/Bridge/get-user/{username}`), in
/// its shape: no `success`, no balance, a numeric clientId
/// (shared/tests/fixtures/casino/lookup.reply.json).
async fn bridge_user(AxState(s): AxState<Shared>, Path(username): Path<String>) -> Response {
    let Some(p) = lock(&s.players).get(&username).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "user not found"})),
        )
            .into_response();
    };
    Json(json!({
        "clientId": p.client_id,
        "isAgent": false,
        "userType": p.user_type,
        "username": p.username,
        "topManager": p.top_manager,
        "immediateManager": p.immediate_manager,
    }))
    .into_response()
}

fn token_ok(token: &str, top_manager: &str) -> bool {
    TOKENS.iter().any(|(m, t)| *m == top_manager && *t == token)
}

/// Parses a peso amount with at most two decimals into centavos.
fn centavos(v: &Value) -> Option<i64> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    if frac.len() > 2 || int.starts_with('-') {
        return None;
    }
    let int: i64 = int.parse().ok()?;
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    int.checked_mul(100)?.checked_add(frac)
}

/// A refusal in the bridge's shape. Its `status` is an enum of 0..=4 with
/// no published names (the bridge's OpenAPI file, fixtures/casino); no
/// source shows a transfer's error body, so every refusal here is `2` with
/// a message, inside the declared enum, never an HTTP-like code.
pub const REFUSED: u8 = 2;

fn refused(message: &str) -> Response {
    Json(json!({"status": REFUSED, "message": message})).into_response()
}

async fn transfer(AxState(s): AxState<Shared>, Json(body): Json<Value>) -> Response {
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (username, nonce, token) = (text("username"), text("nonce"), text("authToken"));
    let mut players = lock(&s.players);
    let Some(player) = players.get_mut(&username) else {
        return refused("user not found");
    };
    if !token_ok(&token, &player.top_manager) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"status": REFUSED, "message": "invalid token"})),
        )
            .into_response();
    }
    // The bridge's clientId is a number (public integration code).
    if body.get("clientId").and_then(Value::as_u64) != Some(player.client_id) {
        return refused("invalid clientId");
    }
    let Some(amount) = body.get("amount").and_then(centavos).filter(|a| *a > 0) else {
        return refused("invalid amount");
    };
    // A transfer without a nonce is accepted, as documented examples send
    // it (fixtures/casino/transfer.request.no_nonce.json); it is never
    // deduplicated.
    let mut transfers = lock(&s.transfers);
    let dedup = *lock(&s.dedup);
    if transfers
        .iter()
        .any(|t| dedup && !nonce.is_empty() && t.nonce == nonce)
    {
        // A repeated nonce gets the first answer and moves nothing.
        return Json(json!({"status": 0, "message": "ok"})).into_response();
    }
    player.balance_centavos += amount;
    transfers.push(TransferRecord {
        transaction_id: format!("C{}", ulid::Ulid::new()),
        nonce,
        username,
        amount: centavos_text(amount),
    });
    if let Some(answer) = lock(&s.next_answer).take() {
        return Json(answer).into_response();
    }
    // The documented reply: nothing but status and message (no source
    // shows a transaction id in it).
    Json(json!({"status": 0, "message": "ok"})).into_response()
}

/// `POST /_sandbox/casino/answer` `{"status": 3, "message": "..."}`: the
/// next transfer is booked and answered with this body. The bridge's
/// OpenAPI file declares statuses 0 to 4 without naming them; this plays a
/// bridge that moved the chips and said so in one of the others.
async fn set_answer(AxState(s): AxState<Shared>, Json(body): Json<Value>) -> Json<Value> {
    *lock(&s.next_answer) = Some(body.clone());
    Json(json!({"next_answer": body}))
}

#[derive(Deserialize)]
struct Dedup {
    enabled: bool,
}

/// `POST /_sandbox/casino/dedup` `{"enabled": false}`: a bridge that does
/// not deduplicate nonces.
async fn set_dedup(AxState(s): AxState<Shared>, Json(body): Json<Dedup>) -> Json<Value> {
    *lock(&s.dedup) = body.enabled;
    Json(json!({"dedup": body.enabled}))
}

/// The properties of the bridge's `GetClientBalancesRequest`, which
/// allows no others (`additionalProperties: false`, fixtures/casino C1).
const BALANCES_REQUEST: [&str; 5] = [
    "authToken",
    "platform",
    "clientId",
    "username",
    "balanceTypeId",
];

async fn balances(AxState(s): AxState<Shared>, Json(body): Json<Value>) -> Response {
    let unknown: Vec<&String> = body
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| !BALANCES_REQUEST.contains(&k.as_str()))
                .collect()
        })
        .unwrap_or_default();
    if !unknown.is_empty() {
        // An ASP.NET bridge's validation answer (ProblemDetails, C1).
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"title": "One or more validation errors occurred.", "status": 400,
                        "detail": format!("GetClientBalancesRequest has no property {}", unknown[0])})),
        )
            .into_response();
    }
    let username = body
        .get("username")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let token = body
        .get("authToken")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(p) = lock(&s.players).get(username).cloned() else {
        return refused("user not found");
    };
    if !token_ok(token, &p.top_manager) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"status": REFUSED, "message": "invalid token"})),
        )
            .into_response();
    }
    // The documented reply (fixtures/casino/get_balances.reply.json): a list
    // of balances, each a JSON number.
    let balance: serde_json::Number = centavos_text(p.balance_centavos)
        .parse()
        .unwrap_or_else(|_| 0.into());
    Json(json!({"status": 1, "message": "Success", "balances": [
        {"balanceTypeId": "main", "currencyId": "PHP", "balance": balance}
    ]}))
    .into_response()
}

async fn history(AxState(s): AxState<Shared>) -> Json<Vec<TransferRecord>> {
    Json(lock(&s.transfers).clone())
}

async fn player(AxState(s): AxState<Shared>, Path(username): Path<String>) -> Response {
    match lock(&s.players).get(&username).cloned() {
        Some(p) => Json(p).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Its API and its `/_sandbox/casino` controls, on its state.
pub fn router(state: Shared) -> Router {
    Router::new()
        .nest("/casino", routes())
        .nest("/_sandbox/casino", controls())
        .with_state(state)
}
